"""No empty effects: an action that would move nothing is refused before anything is posted,
as `nothing-to-move` (409) when the accounts' state leaves it nothing to move (a receiver at
its storage cap, legs that cancel out), as `validation` (422) for an amount of zero."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import Api
from tests.exchange.market import Market, build_market
from tests.exchange.test_gifts import fund, gift, put_policy
from tests.kiosk.shop import build_shop
from tests.volunteering.district import District

NOTHING = "urn:timebank:problem:nothing-to-move"


async def head(d: District) -> int:
    seq: int = (await d.ok("GET", f"/v1/books/{d.book}/head"))["seq"]
    return seq


def nothing_to_move(r: Any, account: str | None = None) -> dict[str, Any]:
    assert r.status_code == 409, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["type"] == NOTHING and body["title"] == "The action would move nothing"
    if account is not None:
        assert body["account_id"] == account
    return body


@pytest.fixture
async def market(api: Api) -> Market:
    return await build_market(api)


async def _pool(d: District, asset: str = "HOUR") -> int:
    pools = await d.ok("GET", f"/v1/books/{d.book}/public-pool", "auditor")
    return int(next(p["posted"] for p in pools["pools"] if p["asset"] == asset))


async def test_a_grant_to_a_member_at_the_cap_is_refused_and_posts_nothing(
    market: Market,
) -> None:
    d = market
    donor, member = await d.member(), await d.member()
    await fund(d, donor["hours"], 300)
    await fund(d, member["hours"], 100)
    donated = await d.call(
        "POST",
        f"/v1/books/{d.book}/public-pool/donations",
        "mini",
        body={"amount": 200},
        member=donor["id"],
    )
    assert donated.status_code == 201, donated.text
    assert (await put_policy(d, storage_cap=100)).status_code == 200
    before = await head(d)
    r = await d.call(
        "POST",
        f"/v1/books/{d.book}/public-pool/grants",
        "team",
        body={"member_id": member["id"], "amount": 50, "reason": "冬季助餐"},
    )
    body = nothing_to_move(r, member["hours"])
    assert body["storage_cap"] == 100 and "storage cap of 100" in body["detail"]
    assert await head(d) == before
    assert await d.balance(member["hours"]) == 100 and await _pool(d) == 200
    grants = await d.ok("GET", f"/v1/books/{d.book}/public-pool", "auditor")
    assert [e["kind"] for e in grants["pools"][0]["recent"]] == ["public_pool.donation"]


async def test_an_exchange_for_a_member_at_the_cap_is_refused_and_posts_nothing(
    market: Market,
) -> None:
    m = market
    member = await m.member()
    await m.earn(member, 600)
    await m.rule()
    assert (await put_policy(m, asset="POINT", storage_cap=20)).status_code == 200
    first = await m.quote(member, 120)
    assert first.status_code == 201, first.text
    done = await m.exchange(first.json()["id"])
    assert done.status_code == 201, done.text
    assert await m.points(member) == 20  # at the cap now
    second = await m.quote(member, 60)
    assert second.status_code == 201, second.text
    before = await head(m)
    points = await m.account_of(member, "POINT")
    nothing_to_move(await m.exchange(second.json()["id"]), points)
    assert await head(m) == before
    assert await m.balance(member["hours"]) == 600 - 120 and await m.points(member) == 20
    quote = await m.ok("GET", f"/v1/exchange/quotes/{second.json()['id']}")
    assert quote["status"] == "open"


async def test_a_transaction_whose_legs_cancel_out_is_refused(api: Api) -> None:
    book = await api.book()
    issuance, account = await api.funded(book, 50)
    before = (await api.client.get(f"/v1/books/{book}/head")).json()["seq"]
    r = await api.client.post(
        f"/v1/books/{book}/transactions",
        json={
            "legs": [
                {"account_id": account, "amount": -20},
                {"account_id": account, "amount": 20},
            ]
        },
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    body = nothing_to_move(r)
    assert "cancel out" in body["detail"] and "account_id" not in body
    assert (await api.client.get(f"/v1/books/{book}/head")).json()["seq"] == before
    # The same account on both sides with something else moving is an ordinary transaction.
    r = await api.client.post(
        f"/v1/books/{book}/transactions",
        json={
            "legs": [
                {"account_id": account, "amount": -20},
                {"account_id": account, "amount": 5},
                {"account_id": issuance, "amount": 15},
            ]
        },
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text


async def test_amounts_of_zero_are_refused_before_anything_is_looked_up(
    market: Market,
) -> None:
    m = market
    member, other = await m.member(), await m.member()
    await m.earn(member, 100)
    await m.rule()
    before = await head(m)
    refused = [
        await gift(m, other["id"], 0, giver=member["id"]),
        await m.call(
            "POST",
            f"/v1/books/{m.book}/public-pool/donations",
            "mini",
            body={"amount": 0},
            member=member["id"],
        ),
        await m.call(
            "POST",
            f"/v1/books/{m.book}/public-pool/grants",
            "team",
            body={"member_id": member["id"], "amount": 0, "reason": "助餐"},
        ),
        await m.quote(member, 0),
        await m.call(
            "POST",
            f"/v1/books/{m.book}/holds",
            "admin",
            body={"from_account_id": member["hours"], "to_account_id": other["hours"], "amount": 0},
        ),
        await m.call(
            "POST",
            f"/v1/books/{m.book}/transactions",
            "admin",
            body={
                "legs": [
                    {"account_id": member["hours"], "amount": 0},
                    {"account_id": other["hours"], "amount": 0},
                ]
            },
        ),
    ]
    for r in refused:
        assert r.status_code == 422, r.text
        assert r.json()["type"] == "urn:timebank:problem:validation"
    assert await head(m) == before


async def test_a_redemption_of_nothing_is_refused(api: Api) -> None:
    s = await build_shop(api)
    member = await s.member()
    await s.points_to(member, 40)
    milk = await s.item("牛奶", 10, stock=5)
    before = await head(s)
    for basket in ([(milk, 0)], []):
        r = await s.redeem(await s.code(member), basket)
        assert r.status_code == 422, r.text
        assert r.json()["type"] == "urn:timebank:problem:validation"
    # A price of zero cannot be set: a redemption always moves points.
    r = await s.call(
        "POST",
        f"/v1/kiosk/sites/{s.site}/items",
        "admin",
        body={"name": "免费", "asset": "POINT", "price": 0, "stock": None},
    )
    assert r.status_code == 422, r.text
    assert await head(s) == before and await s.available(s.points_account(member)) == 40
