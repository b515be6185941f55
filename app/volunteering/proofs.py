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
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from joserfc import jws
from joserfc.jwk import OKPKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.keys import SigningKey, format_time
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
from app.identity.authorization import certifying_organisation
from app.identity.errors import OrganisationNotFound
from app.identity.members import MemberRow
from app.identity.personal import PersonalDataCipher
from app.kit.canonical_json import JsonObject, canonical_bytes
from app.kit.clock import rfc3339_micro
from app.ledger.journal import KIND_SERVICE_CORRECTION
from app.volunteering.errors import ServiceProofNotFound
from app.volunteering.figures import hours
from app.volunteering.proof_schemas import ProofRecord, ProofTotals

log = structlog.get_logger("timebank.volunteering")

ALG = "Ed25519"  # RFC 9864's name, as every key of the JWKS declares (not "EdDSA")
PROOF_TYP = "timebank-service-proof+jws"  # the JWS header's typ
DOCUMENT_TYP = "timebank.service-proof"  # the payload's typ
VERSION = 1
JWKS_URI = "/.well-known/jwks.json"
VERIFY_PATH = "/v1/service-proofs/"
# Who may issue a proof (kiosks may not: they never read members).
ISSUING_ROLES = ("admin", "auditor", "org", "miniprogram")
_MAX_SAFE = 2**53 - 1

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

    def json(self) -> dict[str, str]:
        """The issuer as the document names it."""
        return {"kind": self.kind, "id": self.id, "name": self.name}


@dataclass(frozen=True)
class IssuedProof:
    """A proof just issued: its token and the signed document (JSON, as signed)."""

    proof_id: str
    number: str
    token: str
    document: dict[str, Any]
    verify_url: str


@dataclass(frozen=True)
class StoredProof:
    """A stored proof as checking it answers: the document decoded from its token (JSON, as
    signed), whether the token verifies now and names this very proof, and whether every
    record it lists still stands now (a proof is a snapshot; docs/service-proof.md §7)."""

    proof_id: str
    number: str
    issued_at: str
    token: str
    document: dict[str, Any]
    signature_valid: bool
    jwks_uri: str
    checked_at: str
    records_stand: bool
    changed_records: list[dict[str, Any]]
    standing_totals: dict[str, Any]
    verdict: str


# What became of each record a proof lists: still approved, or reversed since (by a
# `reversal` of its credit, or a `service_correction` when its minutes were spent).
RECORDS_NOW = """
SELECT r.id::text AS record_id, r.status, r.reversed_at, r.reversal_tx_id::text AS tx_id,
       e.kind
  FROM service_records r
  LEFT JOIN journal_entries e ON e.tx_id = r.reversal_tx_id
 WHERE r.id = ANY(CAST(:ids AS uuid[]))
"""


async def records_now(
    session: AsyncSession, records: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], ProofTotals]:
    """The records of a proof's document that no longer stand (in the document's order, each
    with what happened and when), and the totals of those that still do."""
    ids = [str(r.get("record_id")) for r in records]
    valid_ids = [i for i in ids if _is_uuid(i)]
    rows = await session.execute(text(RECORDS_NOW), {"ids": valid_ids})
    now = {row.record_id: row for row in rows}
    changed: list[dict[str, Any]] = []
    standing: list[ProofRecord] = []
    for record_id, record in zip(ids, records, strict=True):
        row = now.get(record_id)
        if row is not None and row.status == "approved":
            standing.append(ProofRecord.model_validate(record))
            continue
        changed.append(
            {
                "record_id": record_id,
                "status": "unknown" if row is None else row.status,
                "change": None
                if row is None or row.status != "reversed"
                else ("corrected" if row.kind == KIND_SERVICE_CORRECTION else "reversed"),
                "at": None
                if row is None or row.reversed_at is None
                else rfc3339_micro(row.reversed_at),
                "tx_id": None if row is None else row.tx_id,
                "minutes": record.get("minutes"),
            }
        )
    return changed, totals(standing)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


async def _organisation_issuer(
    session: AsyncSession, organisation_id: str, book: str
) -> Issuer | None:
    """The organisation as a proof's issuer, if it is one of `book`."""
    org = (
        await session.execute(
            text(
                "SELECT id::text AS id, book_code, name, person_in_charge FROM organisations "
                "WHERE id = CAST(:id AS uuid)"
            ),
            {"id": organisation_id},
        )
    ).one_or_none()
    if org is None or org.book_code != book:
        return None
    return Issuer("organisation", org.id, org.name, org.person_in_charge, org.id)


async def resolve_issuer(
    session: AsyncSession,
    caller: Caller,
    member: MemberRow,
    organisation_id: uuid.UUID | None,
) -> Issuer:
    """The issuer of a proof for a member within the caller's reach.

    An organisation certifies only what it recorded (谁记录谁证明): an `org` caller's proofs
    are its own (403 for another organisation). Other callers may name an organisation of
    the member's book (404 otherwise), or none: the book's time bank issues, over all records.
    """
    requested = None if organisation_id is None else str(organisation_id)
    wanted = certifying_organisation(caller, requested)
    if wanted is not None:
        issuer = await _organisation_issuer(session, wanted, member.book)
        if issuer is None:
            raise OrganisationNotFound(f"organisation {wanted} does not exist")
        return issuer
    book_name = await session.scalar(
        text("SELECT name FROM books WHERE code = :code"), {"code": member.book}
    )
    return Issuer("book", member.book, str(book_name), None, None)


async def certified_records(
    session: AsyncSession,
    member_id: str,
    book: str,
    organisation_id: str | None,
    period_from: date | None,
    period_to: date | None,
) -> list[ProofRecord]:
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
        ProofRecord(
            record_id=row.record_id,
            project_id=row.project_id,
            project_title=row.project_title,
            category=row.category,
            category_name=row.category_name,
            organisation_id=row.organisation_id,
            organisation_name=row.organisation_name,
            service_day=row.service_day.isoformat(),
            started_at=rfc3339_micro(row.started_at),
            ended_at=rfc3339_micro(row.ended_at),
            minutes=row.minutes,
            evidence=row.evidence,
            attested_by=row.attested_by,
            tx_id=row.tx_id,
        )
        for row in rows
    ]


def totals(records: Sequence[ProofRecord]) -> ProofTotals:
    """Counts and minutes of the records, 信用时 and 荣誉时 apart."""
    minutes = sum(r.minutes for r in records)
    checkin = sum(r.minutes for r in records if r.evidence == "checkin")
    return ProofTotals(
        records=len(records),
        minutes=minutes,
        hours=hours(minutes),
        checkin_minutes=checkin,
        manual_minutes=minutes - checkin,
    )


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


# 经办人 of a proof the member asked for themselves (through the mini-program).
SELF_SERVICE_HANDLER = "本人自助申请"


async def _handler(session: AsyncSession, caller: Caller, issuer: Issuer) -> str:
    """经办人: a person, never a credential's id or a system's name: the member themselves for
    the mini-program; else the name the credential was given (its holder), or failing that the
    issuer's person in charge, or the issuer."""
    if caller.role == "miniprogram":
        return SELF_SERVICE_HANDLER
    name = await session.scalar(
        text("SELECT name FROM credentials WHERE id = CAST(:id AS uuid)"),
        {"id": caller.credential.id},
    )
    return str(name) if name else issuer.person_in_charge or issuer.name


async def issue_proof(
    session: AsyncSession,
    ring: KeyRing,
    cipher: PersonalDataCipher,
    caller: Caller,
    member: MemberRow,
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
    number = f"{member.book.upper()}-{local_day:%Y%m%d}-{row.n:08d}"
    verify_url = public_url.rstrip("/") + VERIFY_PATH + proof_id
    records = await certified_records(
        session, str(member.id), member.book, issuer.organisation_id, period_from, period_to
    )
    summed = totals(records)
    document = {
        "typ": DOCUMENT_TYP,
        "version": VERSION,
        "proof_id": proof_id,
        "number": number,
        "issued_at": format_time(issued_at),
        "iat": iat,
        "book": member.book,
        "volunteer": {
            "member_id": str(member.id),
            "volunteer_number": member.volunteer_number,
            "name": volunteer_name,
            "name_masked": name_masked,
        },
        "issuer": issuer.json(),
        "person_in_charge": issuer.person_in_charge,
        "handler": await _handler(session, caller, issuer),
        "period": {
            "from": None if period_from is None else period_from.isoformat(),
            "to": None if period_to is None else period_to.isoformat(),
        },
        "records": [record.model_dump() for record in records],
        "totals": summed.model_dump(),
        "verify_url": verify_url,
    }
    _, signer = await ring.key_at(iat)
    token = sign_document(document, signer)
    await session.execute(
        text(INSERT_PROOF),
        {
            "id": uuid.UUID(proof_id),
            "number": number,
            "book": member.book,
            "member": member.id,
            "organisation": issuer.organisation_id,
            "period_from": period_from,
            "period_to": period_to,
            "total": summed.minutes,
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
        book=member.book,
        member_id=str(member.id),
        issuer=issuer.kind,
        records=len(records),
        minutes=summed.minutes,
    )
    return IssuedProof(proof_id, number, token, document, verify_url)


async def read_proof(
    session: AsyncSession,
    cipher: PersonalDataCipher,
    proof_id: uuid.UUID,
    jwks: Mapping[str, Any],
) -> StoredProof:
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
    records = document.get("records")
    changed, standing = await records_now(session, records if isinstance(records, list) else [])
    checked_at = await session.scalar(text("SELECT clock_timestamp()"))
    verdict = "invalid" if not valid else ("changed" if changed else "valid")
    return StoredProof(
        row.id,
        row.number,
        document["issued_at"],
        token,
        document,
        valid,
        JWKS_URI,
        rfc3339_micro(checked_at),
        not changed,
        changed,
        standing.model_dump(),
        verdict,
    )


# --- Verification (docs/service-proof.md §5) --------------------------------------------------


def verify_proof_token(token: str, jwks: Mapping[str, Any]) -> JsonObject:
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
