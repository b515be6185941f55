"""Volunteer service proofs: what they list, who may issue them, the signature, the page."""

from __future__ import annotations

import base64
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jws
from joserfc.jwk import OKPKey
from sqlalchemy import text

from app.audit.keys import PublishedKey, SigningKey
from app.audit.keys import jwks as make_jwks
from app.kit.canonical_json import canonical_bytes
from app.volunteering import figures, proof_page, proofs
from app.volunteering.proof_schemas import ProofRecord
from tests.conftest import Api
from tests.identity.world import World

DOC = Path(__file__).resolve().parents[2] / "docs" / "service-proof.md"
NAME = "王小明"
TITLE = '<script>alert("x")</script> & 助老'
ATTESTER = "李\"四'<i>"
NUMBER = re.compile(r"^([A-Z][A-Z0-9_-]*)-(\d{8})-(\d{8})$")


@dataclass
class Region:
    """A book with two organisations, a kiosk, two members and their service records."""

    api: Api
    world: World
    book: str = ""
    org_a: str = ""
    org_b: str = ""
    member: str = ""
    volunteer_number: str = ""
    stranger: str = ""  # a member of organisation B only
    tokens: dict[str, str] = field(default_factory=dict)
    credentials: dict[str, str] = field(default_factory=dict)

    def auth(self, caller: str, member: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.tokens[caller]}"}
        if member is not None:
            headers["X-Member-Id"] = member
        return headers

    async def proof(
        self, caller: str = "admin", member: str | None = None, **params: str
    ) -> httpx.Response:
        headers = self.auth(caller, params.pop("acting", None))
        return await self.api.client.get(
            f"/v1/members/{member or self.member}/service-proof", params=params, headers=headers
        )


async def sql(api: Api, statement: str, **params: Any) -> Any:
    async with api.app.state.sessions() as session, session.begin():
        result = await session.execute(text(statement), params)
        return result.all() if result.returns_rows else None


async def project(api: Api, book: str, organisation_id: str, title: str, category: str) -> str:
    project_id = str(uuid.uuid4())
    await sql(
        api,
        "INSERT INTO projects (id, book_code, organisation_id, title, category, place, "
        "starts_at, ends_at, capacity, checkin_key, created_by) VALUES (CAST(:id AS uuid), "
        ":book, CAST(:org AS uuid), :title, :category, '社区活动室', "
        "'2026-01-01T00:00:00Z', '2026-12-31T00:00:00Z', 50, :key, CAST(:by AS uuid))",
        id=project_id,
        book=book,
        org=organisation_id,
        title=title,
        category=category,
        key=os.urandom(32),
        by=str(uuid.uuid4()),
    )
    return project_id


async def record(
    api: Api,
    region: Region,
    project_id: str,
    organisation_id: str,
    started_at: str,
    minutes: int,
    evidence: str = "checkin",
    status: str = "approved",
    attested_by: str | None = None,
) -> str:
    record_id = str(uuid.uuid4())
    start = datetime.fromisoformat(started_at)
    day = start.astimezone(ZoneInfo("Asia/Shanghai")).date()
    await sql(
        api,
        "INSERT INTO service_records (id, book_code, project_id, organisation_id, member_id, "
        "evidence, attested_by, started_at, ended_at, credited_minutes, service_day, status, "
        "entered_by, tx_id) VALUES (CAST(:id AS uuid), :book, CAST(:project AS uuid), "
        "CAST(:org AS uuid), CAST(:member AS uuid), :evidence, :attested_by, :start, "
        ":end, :minutes, :day, :status, "
        "CAST(:by AS uuid), CAST(:tx AS uuid))",
        id=record_id,
        book=region.book,
        project=project_id,
        org=organisation_id,
        member=region.member,
        evidence=evidence,
        attested_by=attested_by,
        start=start,
        end=start + timedelta(minutes=minutes),
        minutes=minutes,
        day=day,
        status=status,
        by=str(uuid.uuid4()),
        tx=str(uuid.uuid4()),
    )
    return record_id


@pytest.fixture
async def region(api: Api) -> Region:
    w = World(api)
    r = Region(api, w)
    r.book = await api.book()
    org_a = await w.organisation(r.book, "social_work_station", accounts=True)
    org_b = await w.organisation(r.book, "volunteer_team", accounts=True)
    kiosk = await w.organisation(r.book, "kiosk_site")
    r.org_a, r.org_b = org_a["id"], org_b["id"]
    await sql(
        api,
        "UPDATE organisations SET person_in_charge = '张主任' WHERE id = CAST(:id AS uuid)",
        id=r.org_a,
    )
    member = await w.register(r.book, r.org_a, display_name=NAME)
    r.member, r.volunteer_number = member["id"], member["volunteer_number"]
    r.stranger = (await w.register(r.book, r.org_b, phone="13900001111"))["id"]
    specs: dict[str, tuple[str, str | None, str]] = {
        "admin": ("admin", None, "王经办"),
        "auditor": ("auditor", None, ""),
        "org": ("org", r.org_a, ""),
        "org_other": ("org", r.org_b, ""),
        "mini": ("miniprogram", None, ""),
        "kiosk": ("kiosk", kiosk["id"], ""),
    }
    for name, (role, org, label) in specs.items():
        body: dict[str, Any] = {"role": role, "book": r.book, "name": label}
        if org is not None:
            body["organisation_id"] = org
        created = await w.post("/v1/credentials", body)
        r.tokens[name], r.credentials[name] = created["token"], created["id"]

    elder = await project(api, r.book, r.org_a, TITLE, "elder_care")
    culture = await project(api, r.book, r.org_b, "社区读书会", "culture")
    # Certified: two of organisation A (信用时 and 荣誉时), one of organisation B.
    await record(api, r, elder, r.org_a, "2026-03-01T01:00:00+00:00", 120)
    await record(
        api, r, elder, r.org_a, "2026-03-05T02:00:00+00:00", 90, "manual", attested_by=ATTESTER
    )
    await record(api, r, culture, r.org_b, "2026-04-10T06:00:00+00:00", 45)
    # Not certified: never on a proof.
    await record(api, r, elder, r.org_a, "2026-03-08T01:00:00+00:00", 60, status="pending")
    await record(api, r, elder, r.org_a, "2026-03-09T01:00:00+00:00", 30, status="rejected")
    await record(api, r, elder, r.org_a, "2026-03-10T01:00:00+00:00", 30, status="reversed")
    return r


def anonymous(api: Api) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app), base_url="http://testserver"
    )


async def served_jwks(api: Api) -> dict[str, Any]:
    r = await api.client.get("/.well-known/jwks.json")
    assert r.status_code == 200
    data: dict[str, Any] = r.json()
    return data


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_book_proof_lists_every_certified_record_with_the_split(region: Region) -> None:
    r = await region.proof("admin")
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    doc = body["document"]
    assert body["jwks_uri"] == "/.well-known/jwks.json"
    assert body["verify_url"] == f"http://127.0.0.1:8000/v1/service-proofs/{body['proof_id']}"
    assert doc["verify_url"] == body["verify_url"] and doc["proof_id"] == body["proof_id"]
    assert doc["typ"] == "timebank.service-proof" and doc["version"] == 1
    assert doc["book"] == region.book and doc["number"] == body["number"]
    assert doc["volunteer"] == {
        "member_id": region.member,
        "volunteer_number": region.volunteer_number,
        "name": NAME,
        "name_masked": False,
    }
    book_name = f"Book {region.book}"
    assert doc["issuer"] == {"kind": "book", "id": region.book, "name": book_name}
    assert doc["person_in_charge"] is None
    assert doc["handler"] == "王经办"
    assert doc["period"] == {"from": None, "to": None}
    assert doc["totals"] == {
        "records": 3,
        "minutes": 255,
        "hours": "4.25",
        "checkin_minutes": 165,
        "manual_minutes": 90,
    }
    records = doc["records"]
    assert [x["service_day"] for x in records] == ["2026-03-01", "2026-03-05", "2026-04-10"]
    assert [x["evidence"] for x in records] == ["checkin", "manual", "checkin"]
    assert [x["organisation_id"] for x in records] == [region.org_a, region.org_a, region.org_b]
    first, manual, other = records
    assert first["project_title"] == TITLE and first["category"] == "elder_care"
    assert first["category_name"] == "扶老" and first["attested_by"] is None
    assert first["started_at"] == "2026-03-01T01:00:00.000000Z"
    assert first["ended_at"] == "2026-03-01T03:00:00.000000Z" and first["minutes"] == 120
    assert manual["attested_by"] == ATTESTER
    assert other["category_name"] == "文化" and other["project_title"] == "社区读书会"
    assert all(uuid.UUID(x["tx_id"]) and uuid.UUID(x["record_id"]) for x in records)
    issued = datetime.fromisoformat(doc["issued_at"])
    assert doc["iat"] == int(issued.timestamp())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["issued_at"])


async def test_organisation_filter_and_period(region: Region) -> None:
    r = await region.proof("admin", organisation_id=region.org_a)
    doc = r.json()["document"]
    assert doc["issuer"]["kind"] == "organisation" and doc["issuer"]["id"] == region.org_a
    assert doc["person_in_charge"] == "张主任"
    assert doc["totals"] == {
        "records": 2,
        "minutes": 210,
        "hours": "3.50",
        "checkin_minutes": 120,
        "manual_minutes": 90,
    }
    r = await region.proof("admin", **{"from": "2026-03-02", "to": "2026-04-10"})
    doc = r.json()["document"]
    assert doc["period"] == {"from": "2026-03-02", "to": "2026-04-10"}
    assert [x["service_day"] for x in doc["records"]] == ["2026-03-05", "2026-04-10"]
    assert doc["totals"]["minutes"] == 135 and doc["totals"]["hours"] == "2.25"
    r = await region.proof("admin", **{"from": "2026-04-11"})
    assert r.json()["document"]["totals"] == {
        "records": 0,
        "minutes": 0,
        "hours": "0.00",
        "checkin_minutes": 0,
        "manual_minutes": 0,
    }


async def test_a_reversed_period_is_a_validation_problem(region: Region) -> None:
    r = await region.proof("admin", **{"from": "2026-05-01", "to": "2026-04-01"})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"] == "urn:timebank:problem:validation"
    assert {e["field"] for e in problem["errors"]} == {"query/from", "query/to"}
    bad = await region.proof("admin", **{"from": "2026-02-30"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query/from"
    rows = await sql(region.api, "SELECT count(*) FROM service_proofs")
    assert rows[0][0] == 0


async def test_the_token_verifies_with_the_jwks_and_a_tampered_one_does_not(
    region: Region,
) -> None:
    body = (await region.proof("admin")).json()
    token = body["token"]
    jwks = await served_jwks(region.api)
    assert proofs.verify_proof_token(token, jwks) == body["document"]
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=="))
    assert list(header) == ["alg", "kid", "typ"]
    assert header["alg"] == "Ed25519" and header["typ"] == "timebank-service-proof+jws"
    assert header["kid"] in {k["kid"] for k in jwks["keys"]}
    payload = base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4))
    assert payload == canonical_bytes(body["document"])
    # Independently, with joserfc and the served key.
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    opened = jws.deserialize_compact(token, OKPKey.import_key(jwk), algorithms=["Ed25519"])
    assert json.loads(opened.payload) == body["document"]

    forged = dict(body["document"], totals=dict(body["document"]["totals"], minutes=6000))
    tampered = f"{header_b64}.{b64url(canonical_bytes(forged))}.{signature_b64}"
    with pytest.raises(proofs.ProofTokenError, match="signature"):
        proofs.verify_proof_token(tampered, jwks)
    flipped = signature_b64[:10] + ("A" if signature_b64[10] != "A" else "B") + signature_b64[11:]
    with pytest.raises(proofs.ProofTokenError):
        proofs.verify_proof_token(f"{header_b64}.{payload_b64}.{flipped}", jwks)
    stranger = SigningKey(Ed25519PrivateKey.generate())
    other_key = make_jwks([PublishedKey(stranger.public_key, datetime(2020, 1, 1, tzinfo=UTC))])
    with pytest.raises(proofs.ProofTokenError, match="kid"):
        proofs.verify_proof_token(token, other_key)


async def test_an_organisation_proves_its_own_records_with_a_masked_name(
    region: Region,
) -> None:
    r = await region.proof("org")
    assert r.status_code == 200, r.text
    doc = r.json()["document"]
    assert doc["volunteer"]["name"] == "王**" and doc["volunteer"]["name_masked"] is True
    assert doc["issuer"]["kind"] == "organisation" and doc["issuer"]["id"] == region.org_a
    assert {x["organisation_id"] for x in doc["records"]} == {region.org_a}
    assert doc["totals"]["minutes"] == 210
    # The credential has no name: the organisation's person in charge handled it, never an id.
    assert doc["handler"] == "张主任"
    same = await region.proof("org", organisation_id=region.org_a)
    assert same.status_code == 200
    other = await region.proof("org", organisation_id=region.org_b)
    assert other.status_code == 403
    assert other.json()["type"] == "urn:timebank:problem:forbidden"
    auditor = (await region.proof("auditor")).json()["document"]
    assert auditor["volunteer"]["name"] == "王**"


async def test_who_may_not_issue(region: Region) -> None:
    kiosk = await region.proof("kiosk")
    assert kiosk.status_code == 403
    # Organisation B does not reach a member of A only: as if the member did not exist.
    hidden = await region.proof("org_other")
    assert hidden.status_code == 404
    assert hidden.json()["type"] == "urn:timebank:problem:member-not-found"
    missing = await region.proof("admin", member=str(uuid.uuid4()))
    assert missing.json()["type"] == "urn:timebank:problem:member-not-found"
    # The mini-program acting for another member.
    other = await region.proof("mini", acting=region.stranger)
    assert other.status_code == 404
    assert other.json()["type"] == "urn:timebank:problem:member-not-found"
    mine = await region.proof("mini", acting=region.member)
    assert mine.status_code == 200 and mine.json()["document"]["volunteer"]["name"] == NAME
    # The member asked for it themselves: the 经办人 says so, not the app's credential name.
    assert mine.json()["document"]["handler"] == "本人自助申请"
    unknown_org = await region.proof("admin", organisation_id=str(uuid.uuid4()))
    assert unknown_org.status_code == 404
    assert unknown_org.json()["type"] == "urn:timebank:problem:organisation-not-found"
    away = await region.api.book()
    foreign = await region.world.organisation(away, "volunteer_team")
    elsewhere = await region.proof("admin", organisation_id=foreign["id"])
    assert elsewhere.json()["type"] == "urn:timebank:problem:organisation-not-found"
    async with anonymous(region.api) as client:
        r = await client.get(f"/v1/members/{region.member}/service-proof")
    assert r.status_code == 401


async def test_anyone_checks_a_proof_by_its_id(region: Region) -> None:
    issued = (await region.proof("org")).json()
    async with anonymous(region.api) as client:
        r = await client.get(f"/v1/service-proofs/{issued['proof_id']}")
        assert r.status_code == 200, r.text
        checked = r.json()
        assert checked.pop("checked_at")[:19] >= issued["document"]["issued_at"][:19]
        assert checked == {
            "proof_id": issued["proof_id"],
            "number": issued["number"],
            "issued_at": issued["document"]["issued_at"],
            "token": issued["token"],
            "document": issued["document"],
            "signature_valid": True,
            "jwks_uri": "/.well-known/jwks.json",
            "records_stand": True,
            "changed_records": [],
            "standing_totals": issued["document"]["totals"],
            "verdict": "valid",
        }
        unknown = await client.get(f"/v1/service-proofs/{uuid.uuid4()}")
        assert unknown.status_code == 404
        assert unknown.headers["content-type"] == "application/problem+json"
        assert unknown.json()["type"] == "urn:timebank:problem:service-proof-not-found"
        malformed = await client.get("/v1/service-proofs/not-a-uuid")
        assert malformed.status_code == 422
        # A browser following the printed link gets a page in Chinese, not JSON.
        page = await client.get(
            f"/v1/service-proofs/{issued['proof_id']}", headers={"Accept": "text/html"}
        )
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        text = page.text
        assert "核验通过" in text and issued["number"] in text
        volunteer = issued["document"]["volunteer"]["volunteer_number"]
        assert volunteer in text and f"{issued['document']['totals']['hours']} 小时" in text
        program = await client.get(
            f"/v1/service-proofs/{issued['proof_id']}?format=json",
            headers={"Accept": "text/html"},
        )
        assert program.json()["signature_valid"] is True
        # A proof whose signature does not verify says so, plainly.
        forged = proofs.StoredProof(
            **{**program.json(), "signature_valid": False, "verdict": "invalid"}
        )
        refused = proof_page.render_check_html(forged, "Asia/Shanghai")
        assert "核验未通过" in refused and "核验通过" not in refused.replace("核验未通过", "")


async def test_the_check_of_a_proof_says_which_records_were_reversed_since(
    region: Region,
) -> None:
    issued = (await region.proof()).json()
    first, second, third = issued["document"]["records"]
    # The region's records were written straight into the table (their credits are not in
    # the journal): the reversal is too. Corrections through the API: test_corrections.py.
    reversal = str(uuid.uuid4())
    await sql(
        region.api,
        "UPDATE service_records SET status = 'reversed', reversed_at = "
        "'2026-05-01T02:03:04.5Z', reversal_tx_id = CAST(:tx AS uuid), reversal_reason = '录错' "
        "WHERE id = CAST(:id AS uuid)",
        tx=reversal,
        id=second["record_id"],
    )
    async with anonymous(region.api) as client:
        checked = (await client.get(f"/v1/service-proofs/{issued['proof_id']}")).json()
        # The signature still proves what was issued; the records say what stands now.
        assert checked["signature_valid"] is True and checked["document"] == issued["document"]
        assert checked["records_stand"] is False and checked["verdict"] == "changed"
        assert checked["changed_records"] == [
            {
                "record_id": second["record_id"],
                "status": "reversed",
                "change": "reversed",
                "at": "2026-05-01T02:03:04.500000Z",
                "tx_id": reversal,
                "minutes": 90,
            }
        ]
        standing = checked["standing_totals"]
        assert (standing["records"], standing["minutes"], standing["manual_minutes"]) == (
            2,
            first["minutes"] + third["minutes"],
            0,
        )
        page = await client.get(f"/v1/service-proofs/{issued['proof_id']}?format=html")
        assert "已冲正" in page.text and "核验通过" not in page.text
        assert f"现仍成立的记录 2 条，共 {standing['hours']} 小时" in page.text


async def test_the_printable_page(region: Region) -> None:
    r = await region.proof("admin", organisation_id=region.org_a, format="html")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    number = (await sql(region.api, "SELECT number FROM service_proofs"))[0][0]
    assert number in page
    for words in ("志愿服务记录证明", "证明编号", "志愿者姓名", "志愿者编号", "出具单位"):
        assert words in page
    for words in ("负责人", "经办人", "出具日期", "合计", "信用时", "荣誉时", "证明人"):
        assert words in page
    assert NAME in page and region.volunteer_number in page and "张主任" in page
    assert "3.50" in page and "2.00" in page and "1.50" in page
    assert "<svg" in page and "http://127.0.0.1:8000/v1/service-proofs/" in page
    assert "<script" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; 助老" in page
    assert "李&quot;四&#x27;&lt;i&gt;" in page
    assert "http://" not in page.replace("http://127.0.0.1:8000/v1/service-proofs/", "").replace(
        "http://www.w3.org/2000/svg", ""
    )
    negotiated = await region.api.client.get(
        f"/v1/members/{region.member}/service-proof", headers={"Accept": "text/html"}
    )
    assert negotiated.headers["content-type"].startswith("text/html")
    assert "<svg" in negotiated.text


async def test_proofs_are_stored_with_unique_numbers(region: Region) -> None:
    answers = [(await region.proof(caller)).json() for caller in ("admin", "org", "admin")]
    rows = await sql(
        region.api,
        "SELECT id::text, number, book_code, member_id::text, organisation_id::text, "
        "period_from, period_to, total_minutes, token, issued_by::text, issued_at "
        "FROM service_proofs ORDER BY number",
    )
    assert len(rows) == 3 and len({row.number for row in rows}) == 3
    by_id = {row.id: row for row in rows}
    cipher = region.api.app.state.personal_data
    sequence = []
    for answer in answers:
        row = by_id[answer["proof_id"]]
        match = NUMBER.fullmatch(row.number)
        assert match is not None and row.number == answer["number"]
        assert match.group(1) == region.book.upper()
        local = row.issued_at.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y%m%d")
        assert match.group(2) == local
        sequence.append(int(match.group(3)))
        assert row.book_code == region.book and row.member_id == region.member
        assert row.total_minutes == answer["document"]["totals"]["minutes"]
        assert row.issued_at == datetime.fromisoformat(answer["document"]["issued_at"])
        # The token names the volunteer: stored only encrypted.
        assert row.token != answer["token"] and NAME not in row.token
        assert proofs.unseal_token(cipher, row.id, row.token) == answer["token"]
    assert sequence == sorted(sequence) and len(set(sequence)) == 3
    admin, org, _ = (by_id[a["proof_id"]] for a in answers)
    assert admin.organisation_id is None and org.organisation_id == region.org_a
    assert admin.issued_by == region.credentials["admin"]
    assert org.issued_by == region.credentials["org"]


async def test_an_erased_member_still_gets_a_proof_without_a_name(region: Region) -> None:
    r = await region.api.client.post(f"/v1/members/{region.member}/erase")
    assert r.status_code == 200, r.text
    doc = (await region.proof("admin")).json()["document"]
    assert doc["volunteer"]["name"] is None and doc["totals"]["minutes"] == 255
    page = (await region.proof("admin", format="html")).text
    assert "个人信息已删除" in page


def test_hours_round_half_up() -> None:
    assert [figures.hours(m) for m in (0, 1, 10, 30, 750, 755)] == [
        "0.00",
        "0.02",
        "0.17",
        "0.50",
        "12.50",
        "12.58",
    ]


def _blocks(text_: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)\n```", text_, flags=re.S)


def test_the_worked_example_of_the_spec_verifies() -> None:
    example = DOC.read_text().split("## 10. Worked example", 1)[1]
    jwks = json.loads(_blocks(example, "json")[0])
    payload_line, token = _blocks(example, "text")
    document = proofs.verify_proof_token(token, jwks)
    assert canonical_bytes(document).decode() == payload_line
    records = [ProofRecord.model_validate(record) for record in document["records"]]
    assert document["totals"] == proofs.totals(records).model_dump()
    # Signed with RFC 8032's published test key: Ed25519 is deterministic.
    secret = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    key = SigningKey(Ed25519PrivateKey.from_private_bytes(secret))
    assert proofs.sign_document(document, key) == token
    assert jwks == make_jwks(
        [
            PublishedKey(
                key.public_key, datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
            )
        ]
    )


async def test_the_key_must_be_valid_at_iat_and_the_header_strict(region: Region) -> None:
    body = (await region.proof("admin")).json()
    token, iat = body["token"], body["document"]["iat"]
    jwks = await served_jwks(region.api)

    def moved(**window: str) -> dict[str, Any]:
        return {"keys": [dict(k, **window) for k in jwks["keys"]]}

    def stamp(seconds: int) -> str:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    # A rotated key stays in the set with its end: what it signed before still verifies.
    assert proofs.verify_proof_token(token, moved(valid_until=stamp(iat + 1)))
    for window in ({"valid_until": stamp(iat)}, {"valid_from": stamp(iat + 1)}):
        with pytest.raises(proofs.ProofTokenError, match="validity"):
            proofs.verify_proof_token(token, moved(**window))
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
    for changed in ({**header, "alg": "EdDSA"}, {**header, "typ": "JWT"}, {**header, "crit": []}):
        forged = b64url(json.dumps(changed, separators=(",", ":")).encode())
        with pytest.raises(proofs.ProofTokenError):
            proofs.verify_proof_token(f"{forged}.{payload_b64}.{signature_b64}", jwks)
