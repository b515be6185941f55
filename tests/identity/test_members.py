"""Members through the API: registration, masking, validation, correction and erasure."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from app.identity.enrolment import purge_enrolment_codes
from app.kit.clock import utc_now
from app.ledger.verify_runner import verify_book
from tests.conftest import Api, ScratchDatabase
from tests.identity.world import World, build_world, resident_id

VALID_ID = resident_id("11010519491231002")  # the standard's own sample body: ...002X


@pytest.fixture
async def world(api: Api) -> World:
    """The world on the test's own database, for a test that writes."""
    return await build_world(api)


@pytest.fixture(scope="module")
async def shared(module_api: Api) -> World:
    """The world built once for the module's tests that only read it and are refused."""
    return await build_world(module_api)


def member_body(book: str, subject: str | None = None, **fields: Any) -> dict[str, Any]:
    body = {
        "book": book,
        "display_name": "张三丰",
        "phone": "+86 138-1234-1234",
        "resident_id": VALID_ID,
        "identity": {"provider": "wechat", "subject": subject or f"o_{uuid.uuid4().hex}"},
    }
    return body | fields


def auth(w: World, caller: str, member: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {w.tokens[caller]}"}
    if member is not None:
        headers["X-Member-Id"] = member
    return headers


async def test_registration_opens_accounts_and_is_idempotent_on_the_identity(
    api: Api, world: World
) -> None:
    body = member_body(world.home)
    body["identity"]["union_id"] = "u_family_1"
    first = await api.client.post("/v1/members", json=body, headers=auth(world, "mini"))
    assert first.status_code == 201, first.text
    member = first.json()
    assert member["volunteer_number"].startswith(world.home.upper())
    assert member["birth_date"] == "1949-12-31"  # taken from the resident ID
    assert member["phone"] == "13812341234" and member["resident_id"] == VALID_ID
    assert sorted(a["asset"] for a in member["accounts"]) == ["HOUR", "POINT"]
    again = await api.client.post("/v1/members", json=body, headers=auth(world, "mini"))
    assert again.status_code == 200 and again.json()["id"] == member["id"]
    balances = await api.client.get(f"/v1/members/{member['id']}/balances")
    assert [(b["asset"], b["posted"]) for b in balances.json()["balances"]] == [
        ("HOUR", 0),
        ("POINT", 0),
    ]


async def test_concurrent_registrations_of_one_identity_make_one_member(
    api: Api, world: World
) -> None:
    body = member_body(world.home)
    answers = await asyncio.gather(*(api.client.post("/v1/members", json=body) for _ in range(8)))
    assert sorted(r.status_code for r in answers) == [200] * 7 + [201]
    assert len({r.json()["id"] for r in answers}) == 1


async def test_personal_fields_are_masked_except_for_admins_and_the_member(
    api: Api, world: World
) -> None:
    r = await api.client.post(
        "/v1/members", json=member_body(world.home, organisation_id=world.org_a)
    )
    member = r.json()["id"]
    full = ("张三丰", "13812341234", VALID_ID)
    masked = ("张**", "138****1234", "110***********002X")
    for caller, acting, want in [
        ("admin", None, full),
        ("mini", member, full),
        ("auditor", None, masked),
        ("org", None, masked),
    ]:
        got = (
            await api.client.get(f"/v1/members/{member}", headers=auth(world, caller, acting))
        ).json()
        assert (got["display_name"], got["phone"], got["resident_id"]) == want, caller
        assert got["masked"] is (want == masked)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"resident_id": "110105194912310021"}, "resident_id"),  # wrong check digit
        ({"resident_id": resident_id("11010519490230002")}, "resident_id"),  # 30 February
        ({"resident_id": resident_id("11010530000101002")}, "resident_id"),  # born in 3000
        ({"resident_id": "11010519491231002"}, "resident_id"),  # 17 characters
        ({"phone": "12345"}, "phone"),
        ({"resident_id": VALID_ID, "birth_date": "1950-01-01"}, "birth_date"),
    ],
)
async def test_invalid_personal_data_is_refused_without_echoing_it(
    shared: World, fields: dict[str, Any], field: str
) -> None:
    body = member_body(shared.home, **fields)
    r = await shared.api.client.post("/v1/members", json=body)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["type"] == "urn:timebank:problem:invalid-personal-data"
    assert problem["errors"][0]["field"] == field
    for value in fields.values():
        assert str(value) not in r.text


async def test_one_resident_id_registers_once(api: Api, world: World) -> None:
    assert (await api.client.post("/v1/members", json=member_body(world.home))).status_code == 201
    r = await api.client.post("/v1/members", json=member_body(world.home))
    assert r.status_code == 409 and r.json()["type"] == "urn:timebank:problem:duplicate-resident"


async def test_a_member_corrects_their_data_through_the_mini_program(
    api: Api, world: World
) -> None:
    r = await api.client.patch(
        f"/v1/members/{world.member}",
        json={"phone": "13900009999", "display_name": "王大明"},
        headers=auth(world, "mini", world.member),
    )
    assert r.status_code == 200, r.text
    assert (r.json()["phone"], r.json()["display_name"]) == ("13900009999", "王大明")
    other = await api.client.patch(
        f"/v1/members/{world.member_other}",
        json={"phone": "13900009999"},
        headers=auth(world, "mini", world.member),
    )
    assert other.status_code == 404


async def test_erasure_scrubs_the_person_and_keeps_accounts_entries_and_chain(
    api: Api, world: World, database: ScratchDatabase
) -> None:
    body = member_body(world.home, organisation_id=world.org_a)
    member = (await api.client.post("/v1/members", json=body)).json()
    hours = next(a["account_id"] for a in member["accounts"] if a["asset"] == "HOUR")
    legs = [{"account_id": world.org_a_hours, "amount": -90}, {"account_id": hours, "amount": 90}]
    posted = await api.client.post(
        f"/v1/books/{world.home}/transactions",
        json={"kind": "grant", "legs": legs},
        headers={"Idempotency-Key": "credit-1"},
    )
    assert posted.status_code == 201
    erased = await api.client.post(
        f"/v1/members/{member['id']}/erase", headers=auth(world, "mini", member["id"])
    )
    assert erased.status_code == 200, erased.text
    view = erased.json()
    assert view["status"] == "erased" and view["erased_at"] is not None
    assert (view["display_name"], view["phone"], view["resident_id"]) == (None, None, None)
    assert view["volunteer_number"] == member["volunteer_number"]
    conn = await asyncpg.connect(database.app_url)
    try:
        row = await conn.fetchrow("SELECT * FROM members WHERE id = $1", uuid.UUID(member["id"]))
        assert all(
            row[c] is None
            for c in (
                "display_name_enc",
                "phone_enc",
                "phone_hash",
                "resident_id_enc",
                "resident_id_hash",
                "birth_date_enc",
            )
        )
        identities = await conn.fetchval(
            "SELECT count(*) FROM member_identities WHERE member_id = $1", row["id"]
        )
        assert identities == 0
        assert (await verify_book(database.app_url, world.home)).entries >= 1
    finally:
        await conn.close()
    assert (await api.balance(hours))["posted"] == 90
    entries = (await api.client.get(f"/v1/members/{member['id']}/entries")).json()["items"]
    assert [e["amount"] for e in entries] == [90]
    # The same resident may register again after erasure: nothing identifies them any more.
    again = await api.client.post("/v1/members", json=member_body(world.home))
    assert again.status_code == 201 and again.json()["id"] != member["id"]
    refused = await api.client.patch(f"/v1/members/{member['id']}", json={"phone": "13812341234"})
    assert refused.status_code == 409


async def _enrolment_code(api: Api, w: World, member: str) -> str:
    r = await api.client.post(
        f"/v1/members/{member}/enrolment-codes", headers=auth(w, "mini", member)
    )
    assert r.status_code == 201, r.text
    code = str(r.json()["code"])
    assert len(code) == 10 and set(code) <= set("23456789ABCDEFGHJKMNPQRSTUVWXYZ")
    return code


async def _enrol(api: Api, w: World, body: dict[str, Any], org: str = "org") -> Any:
    organisation = w.org_a if org == "org" else w.org_b
    return await api.client.post(
        f"/v1/organisations/{organisation}/members", json=body, headers=auth(w, org)
    )


async def test_a_volunteer_number_alone_enrols_no_one(shared: World) -> None:
    r = await _enrol(shared.api, shared, {"volunteer_number": shared.member_other_number})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "enrolment_code"
    read = await shared.api.client.get(
        f"/v1/members/{shared.member_other}", headers=auth(shared, "org")
    )
    assert read.status_code == 404


async def test_an_organisation_enrols_a_member_with_their_enrolment_code(
    api: Api, world: World
) -> None:
    headers = auth(world, "org")
    before = await api.client.get(f"/v1/members/{world.member_other}", headers=headers)
    assert before.status_code == 404
    code = await _enrolment_code(api, world, world.member_other)
    r = await _enrol(api, world, {"enrolment_code": code.lower()})
    assert r.status_code == 200, r.text
    membership = r.json()
    assert (membership["member_id"], membership["volunteer_number"]) == (
        world.member_other,
        world.member_other_number,
    )
    after = await api.client.get(f"/v1/members/{world.member_other}", headers=headers)
    assert after.status_code == 200 and after.json()["masked"] is True
    # A retry by the same organisation answers the same membership; the code is spent for
    # any other.
    again = await _enrol(api, world, {"enrolment_code": code})
    assert again.status_code == 200 and again.json() == membership
    taken = await _enrol(api, world, {"enrolment_code": code}, org="org_other")
    assert taken.status_code == 422
    assert taken.json()["type"] == "urn:timebank:problem:enrolment-code-invalid"


async def test_wrong_expired_and_mismatched_codes_get_one_answer(api: Api, world: World) -> None:
    member = await world.register(world.home)
    problems = []
    # Never issued.
    problems.append(await _enrol(api, world, {"enrolment_code": "ABCDEFGHJK"}))
    # Another member's volunteer number beside the code: refused, and the code stays unused.
    code = await _enrolment_code(api, world, member["id"])
    body = {"enrolment_code": code, "volunteer_number": world.member_other_number}
    problems.append(await _enrol(api, world, body))
    # Expired: the clock moves past the code's ten minutes.
    expired = await _enrolment_code(api, world, member["id"])
    now = datetime.now(UTC)
    api.app.state.clock = lambda: now + timedelta(seconds=601)
    try:
        problems.append(await _enrol(api, world, {"enrolment_code": expired}))
    finally:
        api.app.state.clock = utc_now
    bodies = [r.json() for r in problems]
    assert [r.status_code for r in problems] == [422] * 3
    assert {(b["type"], b["detail"]) for b in bodies} == {
        (
            "urn:timebank:problem:enrolment-code-invalid",
            "the enrolment code is unknown, expired or used",
        )
    }
    ok = await _enrol(
        api, world, {"enrolment_code": code, "volunteer_number": member["volunteer_number"]}
    )
    assert ok.status_code == 200, ok.text


async def test_only_the_member_or_an_admin_asks_for_an_enrolment_code(
    api: Api, world: World
) -> None:
    path = f"/v1/members/{world.member}/enrolment-codes"
    for caller, acting, want in [
        ("mini", world.member_other, 404),  # acting for someone else
        ("mini", None, 404),  # acting for no one
        ("org", None, 403),
        ("auditor", None, 403),
        ("admin", None, 201),
    ]:
        r = await api.client.post(path, headers=auth(world, caller, acting))
        assert r.status_code == want, (caller, r.text)


async def test_the_codes_are_stored_hashed(
    api: Api, world: World, database: ScratchDatabase
) -> None:
    code = await _enrolment_code(api, world, world.member)
    conn = await asyncpg.connect(database.app_url)
    try:
        rows = await conn.fetch("SELECT * FROM enrolment_codes")
    finally:
        await conn.close()
    assert rows and all(code not in str(dict(row)) for row in rows)


async def test_an_identity_registered_with_other_personal_data_is_a_conflict(
    api: Api, world: World
) -> None:
    subject = f"o_{uuid.uuid4().hex}"
    first = await api.client.post("/v1/members", json=member_body(world.home, subject))
    assert first.status_code == 201, first.text
    other_person = member_body(
        world.home,
        subject,
        phone="13900002222",
        resident_id=resident_id("11010519800101003"),
        organisation_id=world.org_b,
    )
    for caller in ("org_other", "mini", "admin"):
        r = await api.client.post("/v1/members", json=other_person, headers=auth(world, caller))
        assert r.status_code == 409, (caller, r.text)
        problem = r.json()
        assert problem["type"] == "urn:timebank:problem:external-identity-conflict"
        assert problem["fields"] == ["phone", "resident_id", "birth_date"]
        assert "13900002222" not in r.text and first.json()["id"] not in r.text
    # Organisation B did not join them, and cannot read them.
    member = first.json()["id"]
    assert (await api.client.get(f"/v1/members/{member}")).json()["organisations"] == []
    read = await api.client.get(f"/v1/members/{member}", headers=auth(world, "org_other"))
    assert read.status_code == 404
    # The same person again is the same member (and joins the registering organisation).
    same = member_body(world.home, subject, organisation_id=world.org_b)
    again = await api.client.post("/v1/members", json=same, headers=auth(world, "org_other"))
    assert again.status_code == 200 and again.json()["id"] == member
    assert again.json()["organisations"] == [world.org_b]


async def test_codes_long_expired_are_purged(
    api: Api, world: World, database: ScratchDatabase
) -> None:
    old = await _enrolment_code(api, world, world.member)
    fresh = await _enrolment_code(api, world, world.member_other)
    conn = await asyncpg.connect(database.app_url)
    try:
        await conn.execute(
            "UPDATE enrolment_codes SET expires_at = now() - interval '2 days' "
            "WHERE member_id = $1",
            uuid.UUID(world.member),
        )
        async with api.app.state.sessions() as session, session.begin():
            assert await purge_enrolment_codes(session, 86400) >= 1
        left = await conn.fetch("SELECT member_id FROM enrolment_codes")
    finally:
        await conn.close()
    assert uuid.UUID(world.member_other) in {row["member_id"] for row in left}
    assert uuid.UUID(world.member) not in {row["member_id"] for row in left}
    r = await _enrol(api, world, {"enrolment_code": old})
    assert r.status_code == 422
    assert (await _enrol(api, world, {"enrolment_code": fresh})).status_code == 200
