"""The public time pool (公益时间池): members donate, organisations grant to members in need
with a reason, everyone of the book can see the pool; and each refusal."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import Api
from tests.exchange.test_gifts import PROBLEM, exchange_district, fund, problem
from tests.volunteering.district import District


@pytest.fixture
async def district(api: Api) -> District:
    return await exchange_district(api)


async def donate(
    d: District, amount: int, who: str = "mini", member: str | None = None, **body: Any
) -> httpx.Response:
    path = f"/v1/books/{d.book}/public-pool/donations"
    header = member if who == "mini" else None
    if who != "mini" and member is not None:
        body["member_id"] = member
    return await d.call("POST", path, who, body={"amount": amount, **body}, member=header)


async def grant(
    d: District,
    member: str,
    amount: int,
    who: str = "team",
    reason: str = "独居老人冬季助餐",
    **body: Any,
) -> httpx.Response:
    path = f"/v1/books/{d.book}/public-pool/grants"
    payload = {"member_id": member, "amount": amount, "reason": reason, **body}
    return await d.call("POST", path, who, body=payload)


async def test_members_donate_and_organisations_grant_to_members_in_need(
    district: District,
) -> None:
    d = district
    donor, needy = await d.member(), await d.member()
    await fund(d, donor["hours"], 500)
    empty = await d.ok("GET", f"/v1/books/{d.book}/public-pool", "kiosk")
    assert empty == {"book": d.book, "pools": []}

    key = uuid.uuid4().hex
    r = await d.call(
        "POST",
        f"/v1/books/{d.book}/public-pool/donations",
        "mini",
        body={"amount": 300},
        member=donor["id"],
        key=key,
    )
    assert r.status_code == 201, r.text
    donation = r.json()
    assert donation["donation"] == {
        "id": donation["donation"]["id"],
        "book": d.book,
        "member_id": donor["id"],
        "asset": "HOUR",
        "amount": 300,
    }
    pool = (await d.ok("GET", f"/v1/books/{d.book}/public-pool"))["pools"][0]["account_id"]
    assert donation["entry"]["kind"] == "public_pool.donation"
    assert donation["entry"]["legs"] == [
        {"account_id": donor["hours"], "asset": "HOUR", "amount": -300},
        {"account_id": pool, "asset": "HOUR", "amount": 300},
    ]
    tx = await d.ok("GET", f"/v1/transactions/{donation['entry']['tx_id']}")
    assert tx["entry"]["meta"] == {
        "actor": {"credential": d.credentials["mini"], "member": donor["id"]}
    }
    replay = await d.call(
        "POST",
        f"/v1/books/{d.book}/public-pool/donations",
        "mini",
        body={"amount": 300},
        member=donor["id"],
        key=key,
    )
    assert replay.status_code == 201 and replay.json() == donation
    assert replay.headers["Idempotent-Replayed"] == "true"
    by_admin = await donate(d, 50, "admin", donor["id"])
    assert by_admin.status_code == 201, by_admin.text
    assert await d.balance(donor["hours"]) == 150

    r = await grant(d, needy["id"], 120)
    assert r.status_code == 201, r.text
    granted = r.json()
    assert granted["grant"] == {
        "id": granted["grant"]["id"],
        "book": d.book,
        "member_id": needy["id"],
        "asset": "HOUR",
        "amount": 120,
        "received": 120,
        "overflow": 0,
        "reason": "独居老人冬季助餐",
    }
    assert granted["entry"]["kind"] == "public_pool.grant"
    assert granted["entry"]["legs"] == [
        {"account_id": pool, "asset": "HOUR", "amount": -120},
        {"account_id": needy["hours"], "asset": "HOUR", "amount": 120},
    ]
    tx = await d.ok("GET", f"/v1/transactions/{granted['entry']['tx_id']}")
    assert tx["entry"]["meta"] == {
        "reason": "独居老人冬季助餐",
        "actor": {"credential": d.credentials["team"]},
    }
    assert await d.balance(needy["hours"]) == 120
    by_admin = await grant(d, needy["id"], 10, "admin", asset="HOUR")
    assert by_admin.status_code == 201, by_admin.text

    for who in ("admin", "auditor", "team", "other_team", "mini", "kiosk"):
        seen = await d.ok("GET", f"/v1/books/{d.book}/public-pool", who)
        assert len(seen["pools"]) == 1
        hours = seen["pools"][0]
        assert (hours["asset"], hours["posted"], hours["available"]) == ("HOUR", 220, 220)
        assert [(e["kind"], e["amount"], e["posted_after"]) for e in hours["recent"]] == [
            ("public_pool.grant", -10, 220),
            ("public_pool.grant", -120, 230),
            ("public_pool.donation", 50, 350),
            ("public_pool.donation", 300, 300),
        ]
    latest = await d.ok("GET", f"/v1/books/{d.book}/public-pool?limit=1", "auditor")
    assert [e["tx_id"] for e in latest["pools"][0]["recent"]] == [by_admin.json()["entry"]["tx_id"]]


async def test_refusals_of_donations(district: District) -> None:
    d = district
    donor = await d.member()
    await fund(d, donor["hours"], 100)
    for who in ("team", "auditor", "kiosk"):
        problem(await donate(d, 10, who, donor["id"]), 403, "forbidden")
    problem(await donate(d, 101, "mini", donor["id"]), 409, "insufficient-funds")
    problem(await donate(d, 0, "mini", donor["id"]), 422, "validation")
    problem(await donate(d, 10, "admin"), 422, "validation")  # an admin names the member
    problem(await donate(d, 10, "mini", donor["id"], asset="NOPE"), 404, "asset-not-found")
    r = await d.call(
        "POST",
        "/v1/books/nosuchbook/public-pool/donations",
        "platform",
        body={"amount": 1, "member_id": donor["id"]},
    )
    problem(r, 404, "book-not-found")
    other = await d.api.book()
    r = await d.call(
        "POST",
        f"/v1/books/{other}/public-pool/donations",
        "platform",
        body={"amount": 1, "member_id": donor["id"]},
    )
    problem(r, 404, "member-not-found")  # the member is not of that book
    problem(
        await d.call(
            "POST",
            f"/v1/books/{other}/public-pool/donations",
            "admin",
            body={"amount": 1, "member_id": donor["id"]},
        ),
        404,
        "not-found",
    )  # a book admin of another book
    await d.ok("PATCH", f"/v1/accounts/{donor['hours']}", body={"status": "frozen"})
    problem(await donate(d, 10, "mini", donor["id"]), 409, "account-not-open")
    await d.ok("PATCH", f"/v1/accounts/{donor['hours']}", body={"status": "open"})
    await d.ok("POST", f"/v1/members/{donor['id']}/erase")
    problem(await donate(d, 10, "admin", donor["id"]), 409, "member-erased")
    assert await d.balance(donor["hours"]) == 100


async def test_refusals_of_grants(district: District) -> None:
    d = district
    donor, needy = await d.member(), await d.member()
    outsider = await d.member(team="other_team")  # not a member of the team
    await fund(d, donor["hours"], 100)
    problem(await grant(d, needy["id"], 10), 409, "public-pool-empty")  # no pool yet
    assert (await donate(d, 100, "mini", donor["id"])).status_code == 201

    for who in ("mini", "auditor", "kiosk"):
        problem(await grant(d, needy["id"], 10, who), 403, "forbidden")
    problem(await grant(d, outsider["id"], 10), 404, "member-not-found")
    assert (await grant(d, outsider["id"], 10, "other_team")).status_code == 201
    problem(await grant(d, str(uuid.uuid4()), 10), 404, "member-not-found")

    personal = problem(
        await grant(d, needy["id"], 10, reason="王奶奶 13912345678 需要帮助"),
        422,
        "personal-data-in-text",
    )
    assert personal["errors"][0]["field"] == "reason"
    problem(
        await grant(d, needy["id"], 10, reason="11010519491231002X 低保户"),
        422,
        "personal-data-in-text",
    )
    problem(await grant(d, needy["id"], 10, reason="帮" * 201), 422, "validation")
    problem(await grant(d, needy["id"], 10, reason="  "), 422, "validation")
    problem(await grant(d, needy["id"], 10, reason="x", memo="no"), 422, "validation")

    refused = problem(await grant(d, needy["id"], 91), 409, "public-pool-empty")
    assert refused["available"] == 90
    problem(await grant(d, needy["id"], 1, asset="POINT"), 409, "public-pool-empty")
    await d.ok("PATCH", f"/v1/accounts/{needy['hours']}", body={"status": "frozen"})
    problem(await grant(d, needy["id"], 10), 409, "account-not-open")
    await d.ok("PATCH", f"/v1/accounts/{needy['hours']}", body={"status": "open"})
    erased = await d.member()
    await d.ok("POST", f"/v1/members/{erased['id']}/erase")
    problem(await grant(d, erased["id"], 10), 409, "member-erased")
    assert await d.balance(needy["hours"]) == 0


async def test_concurrent_grants_never_overdraw_the_pool(district: District) -> None:
    d = district
    donor = await d.member()
    needy = [await d.member() for _ in range(3)]
    await fund(d, donor["hours"], 100)
    assert (await donate(d, 100, "mini", donor["id"])).status_code == 201

    answers = await asyncio.gather(*(grant(d, needy[i % 3]["id"], 30) for i in range(8)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [201] * 3 + [409] * 5
    assert {r.json()["type"] for r in answers if r.status_code == 409} == {
        PROBLEM + "public-pool-empty"
    }
    assert sum([await d.balance(m["hours"]) for m in needy]) == 90
    pool = (await d.ok("GET", f"/v1/books/{d.book}/public-pool"))["pools"][0]
    assert pool["posted"] == 10
