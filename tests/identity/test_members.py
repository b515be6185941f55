"""Members through the API: registration, masking, validation, correction and erasure."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from app.ledger.verify_runner import verify_book
from tests.conftest import Api, ScratchDatabase
from tests.identity.world import World, build_world, resident_id

VALID_ID = resident_id("11010519491231002")  # the standard's own sample body: ...002X


@pytest.fixture
async def world(api: Api) -> World:
    return await build_world(api)


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
    api: Api, world: World, fields: dict[str, Any], field: str
) -> None:
    body = member_body(world.home, **fields)
    r = await api.client.post("/v1/members", json=body)
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
        assert (await verify_book(database.app_url, world.home))["entries"] >= 1
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


async def test_an_organisation_enrols_a_member_by_volunteer_number(api: Api, world: World) -> None:
    headers = auth(world, "org")
    before = await api.client.get(f"/v1/members/{world.member_other}", headers=headers)
    assert before.status_code == 404
    r = await api.client.post(
        f"/v1/organisations/{world.org_a}/members",
        json={"volunteer_number": world.member_other_number},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    after = await api.client.get(f"/v1/members/{world.member_other}", headers=headers)
    assert after.status_code == 200 and after.json()["masked"] is True
    unknown = await api.client.post(
        f"/v1/organisations/{world.org_a}/members",
        json={"volunteer_number": "NOPE0000000000"},
        headers=headers,
    )
    assert unknown.status_code == 404
