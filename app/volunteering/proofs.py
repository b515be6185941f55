"""Volunteer service proofs (志愿服务记录证明): a member's certified service, signed (no HTTP).

A proof lists the member's approved service records (certified hours are a permanent record:
spending hours never lowers them, so proofs read records, never balances), with totals split
into 信用时 (checked in and out on site) and 荣誉时 (entered by the organisation). The document
is RFC 8785 JSON signed as a JWS with the audit keys, so anyone can check a printed proof
against the JWKS; its format is docs/service-proof.md.

Every proof issued is stored (append-only). Its token holds the volunteer's name, so it is
stored encrypted like the rest of the personal data; logs name proofs and members by id only.
"""

from __future__ import annotations

import base64
import html
import io
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import segno
import structlog
from joserfc import jws
from joserfc.jwk import OKPKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.keys import (
    SigningKey,
    format_time,
)
from app.audit.keystore import KeyRing
from app.audit.receipts import (
    ReceiptError,
    b64url_decode,
    json_object,
    require_canonical,
    require_key_valid,
    verified_jws,
)
from app.http.caller import Caller
from app.identity.errors import OrganisationNotFound
from app.identity.personal import PersonalDataCipher
from app.kit.canonical_json import canonical_bytes
from app.kit.clock import rfc3339_micro
from app.kit.problems import Forbidden
from app.volunteering.figures import hours
from app.volunteering.proof_errors import ServiceProofNotFound

log = structlog.get_logger("timebank.volunteering")

ALG = "Ed25519"  # RFC 9864's name, as every key of the JWKS declares (not "EdDSA")
PROOF_TYP = "timebank-service-proof+jws"  # the JWS header's typ
DOCUMENT_TYP = "timebank.service-proof"  # the payload's typ
VERSION = 1
JWKS_URI = "/.well-known/jwks.json"
VERIFY_PATH = "/v1/service-proofs/"
# Who may issue a proof (kiosks may not: they never read members).
ISSUING_ROLES = ("admin", "auditor", "org", "miniprogram")
EVIDENCE_ZH = {"checkin": "信用时", "manual": "荣誉时"}
_MAX_SAFE = 2**53 - 1
_CENT = Decimal("0.01")

RECORDS = """
SELECT r.id::text AS record_id, r.project_id::text AS project_id, p.title AS project_title,
       p.category, c.name_zh AS category_name, r.organisation_id::text AS organisation_id,
       o.name AS organisation_name, r.service_day, r.started_at, r.ended_at,
       r.credited_minutes AS minutes, r.evidence, r.attested_by, r.tx_id::text AS tx_id
  FROM service_records r
  JOIN projects p ON p.id = r.project_id
  JOIN service_categories c ON c.code = p.category
  JOIN organisations o ON o.id = r.organisation_id
 WHERE r.member_id = :member AND r.book_code = :book AND r.status = 'approved'
   AND (CAST(:organisation AS uuid) IS NULL OR r.organisation_id = CAST(:organisation AS uuid))
   AND (CAST(:period_from AS date) IS NULL OR r.service_day >= CAST(:period_from AS date))
   AND (CAST(:period_to AS date) IS NULL OR r.service_day <= CAST(:period_to AS date))
 ORDER BY r.started_at, r.id
"""
INSERT_PROOF = """
INSERT INTO service_proofs (id, number, book_code, member_id, organisation_id, period_from,
                            period_to, total_minutes, token, issued_by, issued_at)
VALUES (:id, :number, :book, :member, CAST(:organisation AS uuid), :period_from, :period_to,
        :total, :token, CAST(:issued_by AS uuid), :issued_at)
"""


class ProofTokenError(ValueError):
    """A token that is not a valid service proof (docs/service-proof.md §5)."""


@dataclass(frozen=True)
class Issuer:
    """Who issues a proof, and so whose records it lists (organisation_id None: all)."""

    kind: str  # "organisation" or "book"
    id: str  # the organisation's id, or the book's code
    name: str
    person_in_charge: str | None
    organisation_id: str | None

    def json(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "name": self.name}


@dataclass(frozen=True)
class IssuedProof:
    proof_id: str
    number: str
    token: str
    document: dict[str, Any]
    verify_url: str


async def _organisation(session: AsyncSession, organisation_id: str) -> Any:
    return (
        await session.execute(
            text(
                "SELECT id::text AS id, book_code, name, person_in_charge FROM organisations "
                "WHERE id = CAST(:id AS uuid)"
            ),
            {"id": organisation_id},
        )
    ).one_or_none()


async def resolve_issuer(
    session: AsyncSession,
    caller: Caller,
    member: Mapping[str, Any],
    organisation_id: uuid.UUID | None,
) -> Issuer:
    """The issuer of a proof for a member within the caller's reach.

    An organisation certifies only what it recorded (谁记录谁证明): an `org` caller's proofs
    are its own (403 for another organisation). Other callers may name an organisation of
    the member's book (404 otherwise), or none: the book's time bank issues, over all records.
    """
    wanted = None if organisation_id is None else str(organisation_id)
    if caller.role == "org":
        own = caller.organisation_id
        if own is None or wanted not in (None, own):
            raise Forbidden("an organisation issues proofs of the records it certified only")
        wanted = own
    if wanted is not None:
        org = await _organisation(session, wanted)
        if org is None or org.book_code != member["book"]:
            raise OrganisationNotFound(f"organisation {wanted} does not exist")
        return Issuer("organisation", org.id, org.name, org.person_in_charge, org.id)
    book_name = await session.scalar(
        text("SELECT name FROM books WHERE code = :code"), {"code": member["book"]}
    )
    return Issuer("book", member["book"], str(book_name), None, None)


async def certified_records(
    session: AsyncSession,
    member_id: str,
    book: str,
    organisation_id: str | None,
    period_from: date | None,
    period_to: date | None,
) -> list[dict[str, Any]]:
    """The member's approved records (of one organisation, within the period), in the
    document's form, ordered by started_at then record id."""
    rows = await session.execute(
        text(RECORDS),
        {
            "member": member_id,
            "book": book,
            "organisation": organisation_id,
            "period_from": period_from,
            "period_to": period_to,
        },
    )
    return [
        {
            "record_id": row.record_id,
            "project_id": row.project_id,
            "project_title": row.project_title,
            "category": row.category,
            "category_name": row.category_name,
            "organisation_id": row.organisation_id,
            "organisation_name": row.organisation_name,
            "service_day": row.service_day.isoformat(),
            "started_at": rfc3339_micro(row.started_at),
            "ended_at": rfc3339_micro(row.ended_at),
            "minutes": row.minutes,
            "evidence": row.evidence,
            "attested_by": row.attested_by,
            "tx_id": row.tx_id,
        }
        for row in rows
    ]


def totals(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and minutes of the records, 信用时 and 荣誉时 apart."""
    minutes = sum(r["minutes"] for r in records)
    checkin = sum(r["minutes"] for r in records if r["evidence"] == "checkin")
    return {
        "records": len(records),
        "minutes": minutes,
        "hours": hours(minutes),
        "checkin_minutes": checkin,
        "manual_minutes": minutes - checkin,
    }


def sign_document(document: Mapping[str, Any], key: SigningKey) -> str:
    """The proof: JWS compact, header {"alg":"Ed25519","kid":…,"typ":…}, JCS payload."""
    header = {"alg": ALG, "kid": key.kid, "typ": PROOF_TYP}
    private = OKPKey.import_key(key.private_key)
    return jws.serialize_compact(header, canonical_bytes(dict(document)), private, [ALG])


def seal_token(cipher: PersonalDataCipher, proof_id: str, token: str) -> str:
    """The token as stored: encrypted (it holds the volunteer's name), base64url."""
    blob = cipher.encrypt(token, f"service_proof:{proof_id}:token")
    return base64.urlsafe_b64encode(blob).rstrip(b"=").decode()


def unseal_token(cipher: PersonalDataCipher, proof_id: str, stored: str) -> str:
    """The token of a stored proof."""
    blob = base64.urlsafe_b64decode(stored + "=" * (-len(stored) % 4))
    return cipher.decrypt(blob, f"service_proof:{proof_id}:token")


async def _handler(session: AsyncSession, caller: Caller) -> str:
    name = await session.scalar(
        text("SELECT name FROM credentials WHERE id = CAST(:id AS uuid)"),
        {"id": caller.credential.id},
    )
    return str(name) if name else caller.credential.id


async def issue_proof(
    session: AsyncSession,
    ring: KeyRing,
    cipher: PersonalDataCipher,
    caller: Caller,
    member: Mapping[str, Any],
    volunteer_name: str | None,
    name_masked: bool,
    issuer: Issuer,
    period_from: date | None,
    period_to: date | None,
    *,
    timezone: str,
    public_url: str,
) -> IssuedProof:
    """Sign and store a new proof of the member's certified service (in the session's
    transaction: the caller commits)."""
    row = (
        await session.execute(
            text(
                "SELECT nextval('service_proof_seq') AS n, "
                "date_trunc('second', clock_timestamp()) AS now"
            )
        )
    ).one()
    issued_at: datetime = row.now.astimezone(UTC)
    iat = int(issued_at.timestamp())
    proof_id = str(uuid.uuid4())
    local_day = issued_at.astimezone(ZoneInfo(timezone)).date()
    number = f"{member['book'].upper()}-{local_day:%Y%m%d}-{row.n:08d}"
    verify_url = public_url.rstrip("/") + VERIFY_PATH + proof_id
    records = await certified_records(
        session, str(member["id"]), member["book"], issuer.organisation_id, period_from, period_to
    )
    document = {
        "typ": DOCUMENT_TYP,
        "version": VERSION,
        "proof_id": proof_id,
        "number": number,
        "issued_at": format_time(issued_at),
        "iat": iat,
        "book": member["book"],
        "volunteer": {
            "member_id": str(member["id"]),
            "volunteer_number": member["volunteer_number"],
            "name": volunteer_name,
            "name_masked": name_masked,
        },
        "issuer": issuer.json(),
        "person_in_charge": issuer.person_in_charge,
        "handler": await _handler(session, caller),
        "period": {
            "from": None if period_from is None else period_from.isoformat(),
            "to": None if period_to is None else period_to.isoformat(),
        },
        "records": records,
        "totals": totals(records),
        "verify_url": verify_url,
    }
    _, signer = await ring.key_at(iat)
    token = sign_document(document, signer)
    await session.execute(
        text(INSERT_PROOF),
        {
            "id": uuid.UUID(proof_id),
            "number": number,
            "book": member["book"],
            "member": member["id"],
            "organisation": issuer.organisation_id,
            "period_from": period_from,
            "period_to": period_to,
            "total": document["totals"]["minutes"],
            "token": seal_token(cipher, proof_id, token),
            "issued_by": caller.credential.id,
            "issued_at": issued_at,
        },
    )
    # Ids and counts only: the document's names stay out of the logs.
    log.info(
        "volunteering.proof_issued",
        proof_id=proof_id,
        number=number,
        book=member["book"],
        member_id=str(member["id"]),
        issuer=issuer.kind,
        records=len(records),
        minutes=document["totals"]["minutes"],
    )
    return IssuedProof(proof_id, number, token, document, verify_url)


async def read_proof(
    session: AsyncSession,
    cipher: PersonalDataCipher,
    proof_id: uuid.UUID,
    jwks: Mapping[str, Any],
) -> dict[str, Any]:
    """A stored proof, its decoded document and whether its token verifies now with `jwks`
    and names this very proof (404 service-proof-not-found if none has this id)."""
    row = (
        await session.execute(
            text("SELECT id::text AS id, number, token FROM service_proofs WHERE id = :id"),
            {"id": proof_id},
        )
    ).one_or_none()
    if row is None:
        raise ServiceProofNotFound(f"service proof {proof_id} does not exist")
    token = unseal_token(cipher, row.id, row.token)
    document = json_object(b64url_decode(token.split(".")[1]))
    try:
        verified = verify_proof_token(token, jwks)
        valid = verified.get("proof_id") == row.id and verified.get("number") == row.number
    except ProofTokenError:
        log.warning("volunteering.proof_signature_invalid", proof_id=row.id)
        valid = False
    return {
        "proof_id": row.id,
        "number": row.number,
        "issued_at": document["issued_at"],
        "token": token,
        "document": document,
        "signature_valid": valid,
        "jwks_uri": JWKS_URI,
    }


# --- Verification (docs/service-proof.md §5) --------------------------------------------------


def verify_proof_token(token: str, jwks: Mapping[str, Any]) -> dict[str, Any]:
    """The document of a proof verified with the JWKS key named by its kid; raises
    ProofTokenError (malformed, wrong alg or typ, unknown key, bad signature, key not valid
    at iat, payload not canonical). The JWS checks are the receipts' (same keys, own typ)."""
    try:
        payload, start, end = verified_jws(token, jwks, PROOF_TYP)
        document = json_object(payload)
        require_canonical(document, payload)
        if document.get("typ") != DOCUMENT_TYP or document.get("version") != VERSION:
            raise ProofTokenError(f"the payload is not a {DOCUMENT_TYP} version {VERSION}")
        iat = document.get("iat")
        if not isinstance(iat, int) or isinstance(iat, bool) or not 0 <= iat <= _MAX_SAFE:
            raise ProofTokenError("iat must be a non-negative integer")
        if document.get("issued_at") != format_time(datetime.fromtimestamp(iat, UTC)):
            raise ProofTokenError("issued_at is not iat")
        require_key_valid(iat, start, end)
    except ReceiptError as exc:
        raise ProofTokenError(str(exc)) from exc
    return document


# --- The printable page ------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _zh_date(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def _period_zh(period: Mapping[str, Any]) -> str:
    start, end = period.get("from"), period.get("to")
    if start and end:
        return f"{start} 至 {end}"
    if start:
        return f"{start} 起"
    if end:
        return f"截至 {end}"
    return "全部记录"


def qr_svg(data: str) -> str:
    """An inline SVG QR code (error correction level M) of `data`."""
    out = io.BytesIO()
    segno.make(data, error="m", micro=False).save(
        out, kind="svg", scale=3, border=4, xmldecl=False, svgclass="qr", title="核验二维码"
    )
    return out.getvalue().decode()


STYLE = """
@page { size: A4; margin: 18mm 16mm; }
body { font-family: "SimSun", "Songti SC", "Noto Serif CJK SC", serif; color: #000;
       max-width: 180mm; margin: 0 auto; font-size: 11pt; line-height: 1.6; }
h1 { text-align: center; font-size: 20pt; letter-spacing: 0.3em; margin: 0.5em 0; }
.number { text-align: right; }
table { border-collapse: collapse; width: 100%; margin: 0.8em 0; }
th, td { border: 1px solid #000; padding: 2px 4px; text-align: center; font-size: 10pt; }
td.text { text-align: left; }
.totals td { font-weight: bold; }
.footer { display: flex; justify-content: space-between; align-items: flex-end; margin-top: 1.5em; }
.verify { text-align: center; font-size: 8pt; word-break: break-all; max-width: 60mm; }
dl { display: grid; grid-template-columns: auto 1fr; gap: 0 0.5em; margin: 0; }
dt { font-weight: bold; } dd { margin: 0; }
"""


def render_html(document: Mapping[str, Any], timezone: str) -> str:
    """The printable proof (Chinese, A4): every value escaped, no external asset, and a QR
    code of the verify URL with the URL printed under it."""
    volunteer, issuer, total = document["volunteer"], document["issuer"], document["totals"]
    name = volunteer["name"] if volunteer["name"] is not None else "（个人信息已删除）"
    several = issuer["kind"] == "book"
    issued = datetime.fromtimestamp(document["iat"], UTC).astimezone(ZoneInfo(timezone)).date()
    rows = []
    for i, record in enumerate(document["records"], 1):
        org_cell = f'<td class="text">{_e(record["organisation_name"])}</td>' if several else ""
        rows.append(
            "<tr>"
            f"<td>{i}</td><td>{_e(record['service_day'])}</td>"
            f'<td class="text">{_e(record["project_title"])}</td>'
            f"<td>{_e(record['category_name'])}</td>{org_cell}"
            f"<td>{_e(hours(record['minutes']))}</td>"
            f"<td>{_e(EVIDENCE_ZH.get(record['evidence'], record['evidence']))}</td>"
            f"<td>{_e(record['attested_by'] or '—')}</td>"
            "</tr>"
        )
    if not rows:
        rows.append(f'<tr><td colspan="{8 if several else 7}">该期间无已认证的服务记录</td></tr>')
    org_head = "<th>服务单位</th>" if several else ""
    span = 5 if several else 4
    split = (
        f"信用时 {_e(hours(total['checkin_minutes']))} 小时；"
        f"荣誉时 {_e(hours(total['manual_minutes']))} 小时"
    )
    summary = (
        f"兹证明上述志愿者参加志愿服务，经{_e(issuer['name'])}核实，已认证服务记录 "
        f"{_e(total['records'])} 条，累计服务时长 {_e(total['hours'])} 小时，其中{split}。"
        "明细如下："
    )
    return f"""<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<title>志愿服务记录证明 {_e(document["number"])}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>志愿服务记录证明</h1>
<p class="number">证明编号：{_e(document["number"])}</p>
<dl>
<dt>志愿者姓名</dt><dd>{_e(name)}</dd>
<dt>志愿者编号</dt><dd>{_e(volunteer["volunteer_number"])}</dd>
<dt>证明期间</dt><dd>{_e(_period_zh(document["period"]))}</dd>
</dl>
<p>{summary}</p>
<table>
<thead><tr><th>序号</th><th>日期</th><th>项目</th><th>类别</th>{org_head}<th>时长(小时)</th>
<th>证据（信用时/荣誉时）</th><th>证明人</th></tr></thead>
<tbody>
{"".join(rows)}
</tbody>
<tfoot class="totals">
<tr><td colspan="{span}">合计</td><td>{_e(total["hours"])}</td>
<td colspan="2" class="text">{split}</td></tr>
</tfoot>
</table>
<p>信用时：志愿者在服务现场签到、签退记录的时长；荣誉时：由服务单位录入、经证明人证明的时长。</p>
<div class="footer">
<dl>
<dt>出具单位</dt><dd>{_e(issuer["name"])}（盖章）</dd>
<dt>负责人</dt><dd>{_e(document["person_in_charge"] or "—")}</dd>
<dt>经办人</dt><dd>{_e(document["handler"])}</dd>
<dt>出具日期</dt><dd>{_e(_zh_date(issued))}</dd>
</dl>
<div class="verify">
{qr_svg(document["verify_url"])}
<div>扫码或访问以下地址核验本证明：</div>
<div>{_e(document["verify_url"])}</div>
</div>
</div>
</body>
</html>
"""
