"""Asset policies and gifts (转赠) through the API: relationships, refusals, the yearly cap
(also under a real race of concurrent gifts) and the member's list of gifts."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text

from app.exchange.usage import debited_since, period_start
from tests.conftest import Api
from tests.volunteering.district import CST, District, build_district

PROBLEM = "urn:timebank:problem:"


async def exchange_district(api: Api) -> District:
    """The volunteering tests' district, with the book admin's credential id known."""
    d = await build_district(api)
    async with api.app.state.sessions() as session:
        admin = await session.scalar(
            text("SELECT id::text FROM credentials WHERE book_code = :b AND role = 'admin'"),
            {"b": d.book},
        )
    d.credentials["admin"] = str(admin)
    return d


@pytest.fixture
async def district(api: Api) -> District:
    return await exchange_district(api)


async def put_policy(d: District, who: str = "admin", asset: str = "HOUR", **fields: Any) -> Any:
    headers = {
        "Authorization": f"Bearer {d.tokens[who]}",
        "Idempotency-Key": uuid.uuid4().hex,
    }
    return await d.api.client.put(
        f"/v1/books/{d.book}/asset-policies/{asset}", json=fields, headers=headers
    )


async def fund(d: District, account: str, amount: int) -> None:
    """Credit an account from the team's issuance account (a plain transfer)."""
    r = await d.api.transfer(d.book, d.team_issuance, account, amount)
    assert r.status_code == 201, r.text


async def gift(
    d: District,
    to: str,
    amount: int,
    who: str = "admin",
    giver: str | None = None,
    member: str | None = None,
    key: str | None = None,
    **fields: Any,
) -> httpx.Response:
    body: dict[str, Any] = {"to_member_id": to, "amount": amount, **fields}
    if giver is not None:
        body["from_member_id"] = giver
    return await d.call("POST", "/v1/gifts", who, body=body, member=member, key=key)


def problem(r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    document: dict[str, Any] = r.json()
    assert document["type"] == PROBLEM + slug, document
    return document


async def last_entry(d: District) -> dict[str, Any]:
    async with d.api.app.state.sessions() as session:
        body = await session.scalar(
            text(
                "SELECT convert_from(body, 'UTF8') FROM journal_entries WHERE book_code = :b "
                "ORDER BY seq DESC LIMIT 1"
            ),
            {"b": d.book},
        )
    entry: dict[str, Any] = json.loads(body)
    return entry


async def test_policies_are_set_by_admins_and_recorded_in_the_journal(district: District) -> None:
    d = district
    r = await put_policy(d, storage_cap=1500 * 60, gift_relations=["parent", "child", "parent"])
    assert r.status_code == 200, r.text
    policy = r.json()
    assert policy["book"] == d.book and policy["asset"] == "HOUR"
    assert policy["storage_cap"] == 90000 and policy["gift_yearly_cap"] is None
    assert policy["gift_relations"] == ["child", "parent"]
    notice = await last_entry(d)
    assert notice["kind"] == "notice.asset_policy_changed" and notice["legs"] == []
    assert notice["meta"] == {
        "asset": "HOUR",
        "storage_cap": 90000,
        "gift_yearly_cap": None,
        "gift_relations": ["child", "parent"],
        "actor": {"credential": d.credentials["admin"]},
    }

    # A PUT replaces the whole policy: what it leaves out is no limit.
    replaced = await put_policy(d, gift_yearly_cap=600)
    assert replaced.status_code == 200, replaced.text
    for who in ("admin", "auditor", "team", "mini", "kiosk"):
        listed = await d.ok("GET", f"/v1/books/{d.book}/asset-policies", who)
        assert [
            (p["asset"], p["storage_cap"], p["gift_yearly_cap"], p["gift_relations"])
            for p in listed["items"]
        ] == [("HOUR", None, 600, None)]
    assert (await last_entry(d))["meta"]["gift_yearly_cap"] == 600

    problem(await put_policy(d, "team", storage_cap=1), 403, "forbidden")
    problem(await put_policy(d, "auditor", storage_cap=1), 403, "forbidden")
    problem(await put_policy(d, asset="NOPE"), 404, "asset-not-found")
    problem(await put_policy(d, gift_relations=["Parent"]), 422, "validation")
    problem(await put_policy(d, gift_relations=[]), 422, "validation")
    problem(await put_policy(d, storage_cap=0), 422, "validation")
    problem(await put_policy(d, storage_cap=10, colour="red"), 422, "validation")
    other = await d.api.book()
    away = await d.api.client.post(
        "/v1/credentials",
        json={"role": "admin", "book": other},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    d.tokens["admin_away"] = away.json()["token"]
    problem(await put_policy(d, "admin_away", storage_cap=1), 404, "not-found")
    missing = await d.api.client.put(
        f"/v1/books/{d.book}/asset-policies/HOUR", json={"storage_cap": 5}
    )
    problem(missing, 400, "idempotency-key-missing")


async def test_a_gift_to_a_parent_under_a_relatives_only_policy(district: District) -> None:
    d = district
    giver, parent = await d.member(), await d.member()
    await fund(d, giver["hours"], 600)
    r = await put_policy(d, gift_yearly_cap=300, gift_relations=["parent", "child", "spouse"])
    assert r.status_code == 200, r.text

    key = uuid.uuid4().hex
    mine = {"who": "mini", "member": giver["id"], "key": key}
    r = await gift(d, parent["id"], 120, relationship="parent", **mine)
    assert r.status_code == 201, r.text
    answer = r.json()
    gift_id = answer["gift"]["id"]
    assert answer["gift"] == {
        "id": gift_id,
        "book": d.book,
        "from_member_id": giver["id"],
        "to_member_id": parent["id"],
        "asset": "HOUR",
        "amount": 120,
        "received": 120,
        "overflow": 0,
        "relationship": "parent",
    }
    entry = answer["entry"]
    assert entry["kind"] == "gift" and entry["overflow"] is None
    assert entry["legs"] == [
        {"account_id": giver["hours"], "asset": "HOUR", "amount": -120},
        {"account_id": parent["hours"], "asset": "HOUR", "amount": 120},
    ]
    tx = await d.ok("GET", f"/v1/transactions/{entry['tx_id']}")
    assert tx["entry"]["seq"] == entry["seq"]
    assert tx["entry"]["meta"] == {
        "gift": gift_id,
        "relationship": "parent",
        "actor": {"credential": d.credentials["mini"], "member": giver["id"]},
    }
    assert await d.balance(giver["hours"]) == 480 and await d.balance(parent["hours"]) == 120

    # The same request again (a retry) answers the same gift and moves nothing.
    again = await gift(d, parent["id"], 120, relationship="parent", **mine)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == answer
    assert await d.balance(giver["hours"]) == 480

    # An admin gives for a member (a child, this time).
    child = await d.member()
    by_admin = await gift(d, child["id"], 30, giver=giver["id"], relationship="child")
    assert by_admin.status_code == 201, by_admin.text
    assert by_admin.json()["gift"]["from_member_id"] == giver["id"]

    given = await d.ok("GET", f"/v1/members/{giver['id']}/gifts", "mini", member=giver["id"])
    assert [
        (g["direction"], g["to_member_id"], g["amount"], g["relationship"]) for g in given["items"]
    ] == [
        ("given", child["id"], 30, "child"),
        ("given", parent["id"], 120, "parent"),
    ]
    assert given["items"][1]["id"] == gift_id and given["items"][1]["tx_id"] == entry["tx_id"]
    assert given["next_before_seq"] is None
    first = await d.ok("GET", f"/v1/members/{giver['id']}/gifts?limit=1")
    assert len(first["items"]) == 1 and first["next_before_seq"] == first["items"][0]["seq"]
    rest = await d.ok(
        "GET", f"/v1/members/{giver['id']}/gifts?limit=1&before_seq={first['next_before_seq']}"
    )
    assert [g["id"] for g in rest["items"]] == [gift_id]
    received = await d.ok("GET", f"/v1/members/{parent['id']}/gifts", "team")
    assert [(g["direction"], g["from_member_id"], g["received"]) for g in received["items"]] == [
        ("received", giver["id"], 120)
    ]
    r = await d.call("GET", f"/v1/members/{parent['id']}/gifts", "mini", member=giver["id"])
    problem(r, 404, "member-not-found")
    problem(await d.call("GET", f"/v1/members/{parent['id']}/gifts", "kiosk"), 403, "forbidden")


async def test_each_refusal_of_a_gift_has_its_own_problem(district: District) -> None:
    d = district
    giver, receiver = await d.member(), await d.member()
    await fund(d, giver["hours"], 1000)
    for who in ("team", "auditor", "kiosk"):
        problem(await gift(d, receiver["id"], 10, who, giver=giver["id"]), 403, "forbidden")

    problem(await gift(d, giver["id"], 10, giver=giver["id"]), 422, "gift-to-self")
    r = await gift(d, giver["id"], 10, "mini", member=giver["id"])
    problem(r, 422, "gift-to-self")
    r = await gift(d, receiver["id"], 10, "mini", member=receiver["id"], giver=giver["id"])
    problem(r, 404, "member-not-found")  # a mini-program gives only for its member
    problem(await gift(d, str(uuid.uuid4()), 10, giver=giver["id"]), 404, "member-not-found")
    problem(
        await gift(d, receiver["id"], 10, giver=giver["id"], asset="NOPE"), 404, "asset-not-found"
    )
    problem(await gift(d, receiver["id"], 0, giver=giver["id"]), 422, "validation")
    problem(await gift(d, receiver["id"], 5000, giver=giver["id"]), 409, "insufficient-funds")

    # A member of another book is out of reach, as if missing.
    other = await d.api.book()
    stranger = await d.api.client.post(
        "/v1/members",
        json={
            "book": other,
            "display_name": "王五",
            "phone": f"137{uuid.uuid4().int % 10**8:08d}",
            "birth_date": "1960-05-05",
            "identity": {"provider": "wechat", "subject": f"o_{uuid.uuid4().hex}"},
        },
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert stranger.status_code == 201, stranger.text
    problem(await gift(d, stranger.json()["id"], 10, giver=giver["id"]), 404, "member-not-found")

    # Relationships: once the policy lists them, a gift names one of them.
    assert (await put_policy(d, gift_relations=["parent", "grandparent"])).status_code == 200
    missing = problem(
        await gift(d, receiver["id"], 10, giver=giver["id"]), 422, "gift-relationship-required"
    )
    assert missing["allowed_relations"] == ["grandparent", "parent"]
    r = await gift(d, receiver["id"], 10, giver=giver["id"], relationship="friend")
    problem(r, 422, "gift-relationship-not-allowed")
    problem(
        await gift(d, receiver["id"], 10, giver=giver["id"], relationship="Friend!"),
        422,
        "validation",
    )
    assert (await put_policy(d)).status_code == 200  # no policy: any gift

    # Frozen accounts, on either side; the ledger would refuse too.
    for account in (giver["hours"], receiver["hours"]):
        frozen = await d.ok("PATCH", f"/v1/accounts/{account}", body={"status": "frozen"})
        assert frozen["status"] == "frozen"
        refused = problem(
            await gift(d, receiver["id"], 10, giver=giver["id"]), 409, "account-not-open"
        )
        assert refused["account_id"] == account and refused["account_status"] == "frozen"
        await d.ok("PATCH", f"/v1/accounts/{account}", body={"status": "open"})

    ok = await gift(d, receiver["id"], 10, giver=giver["id"])
    assert ok.status_code == 201, ok.text

    # Erased members neither give nor receive.
    erased = await d.member()
    await fund(d, erased["hours"], 50)
    await d.ok("POST", f"/v1/members/{erased['id']}/erase")
    r = problem(await gift(d, erased["id"], 10, giver=giver["id"]), 409, "member-erased")
    assert r["member_id"] == erased["id"]
    r = problem(await gift(d, receiver["id"], 10, giver=erased["id"]), 409, "member-erased")
    assert r["member_id"] == erased["id"]

    # Nothing refused moved anything.
    assert await d.balance(giver["hours"]) == 990 and await d.balance(receiver["hours"]) == 10
    assert await d.balance(erased["hours"]) == 50


async def test_the_yearly_cap_counts_this_calendar_year_of_the_service_zone(
    district: District,
) -> None:
    d = district
    now = datetime.now(UTC)
    d.at(now)
    giver, receiver = await d.member(), await d.member()
    await fund(d, giver["hours"], 1000)
    assert (await put_policy(d, gift_yearly_cap=300)).status_code == 200
    assert (await gift(d, receiver["id"], 200, giver=giver["id"])).status_code == 201
    refused = problem(
        await gift(d, receiver["id"], 101, giver=giver["id"]), 409, "gift-yearly-cap-exceeded"
    )
    assert (refused["cap"], refused["given"], refused["remaining"]) == (300, 200, 100)
    start = datetime.fromisoformat(refused["period_start"])
    assert start == datetime(now.astimezone(CST).year, 1, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert (await gift(d, receiver["id"], 100, giver=giver["id"])).status_code == 201
    problem(await gift(d, receiver["id"], 1, giver=giver["id"]), 409, "gift-yearly-cap-exceeded")
    # The cap is the giver's: the receiver gives on its own allowance.
    assert (await gift(d, giver["id"], 300, giver=receiver["id"])).status_code == 201

    # In the next calendar year (Asia/Shanghai) the giver may give again.
    d.at(datetime(now.astimezone(CST).year + 1, 1, 1, 0, 5, tzinfo=CST))
    assert (await gift(d, receiver["id"], 300, giver=giver["id"])).status_code == 201
    assert await d.balance(giver["hours"]) == 1000 - 600 + 300


async def test_concurrent_gifts_never_pass_the_yearly_cap(district: District) -> None:
    d = district
    d.at(datetime.now(UTC))
    giver = await d.member()
    receivers = [await d.member() for _ in range(4)]
    await fund(d, giver["hours"], 1000)
    assert (await put_policy(d, gift_yearly_cap=100)).status_code == 200

    # 20 gifts of 7 (140 together) race, from an admin and from the member's mini-program.
    requests = [
        gift(d, receivers[i % 4]["id"], 7, giver=giver["id"])
        if i % 2
        else gift(d, receivers[i % 4]["id"], 7, "mini", member=giver["id"])
        for i in range(20)
    ]
    answers = await asyncio.gather(*requests)
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [201] * 14 + [409] * 6, [r.text for r in answers if r.status_code >= 500]
    for r in answers:
        if r.status_code == 409:
            assert r.json()["type"] == PROBLEM + "gift-yearly-cap-exceeded"
            assert r.json()["given"] == 98
    assert await d.balance(giver["hours"]) == 1000 - 98
    assert sum([await d.balance(r["hours"]) for r in receivers]) == 98
    async with d.api.app.state.sessions() as session:
        since = period_start(d.api.app.state.clock(), ZoneInfo("Asia/Shanghai"), "year")
        assert await debited_since(session, giver["hours"], "gift", since) == 98
        gifts = await session.scalar(
            text("SELECT count(*) FROM journal_entries WHERE book_code = :b AND kind = 'gift'"),
            {"b": d.book},
        )
    assert gifts == 14
    listed = await d.ok("GET", f"/v1/members/{giver['id']}/gifts")
    assert len(listed["items"]) == 14 and {g["amount"] for g in listed["items"]} == {7}
    assert len({g["id"] for g in listed["items"]}) == 14
