"""Redemptions racing each other through the API, with real concurrency: each race has one
winner and one clear refusal, and the points and the stock add up afterwards."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.conftest import Api
from tests.kiosk.shop import Shop, build_shop

ROUNDS = 8


@pytest.fixture
async def shop(api: Api) -> Shop:
    return await build_shop(api)


def outcome(status: int, body: dict[str, object]) -> str:
    return "ok" if status < 300 else str(body["type"]).rsplit(":", 1)[-1]


async def test_two_kiosks_spending_a_members_last_points(shop: Shop) -> None:
    s = shop
    here = await s.item("米", 30, stock=None)
    there = await s.item("油", 30, stock=None, site=s.other_site)
    results: Counter[str] = Counter()
    for _ in range(ROUNDS):
        member = await s.member()
        await s.points_to(member, 30)
        codes = [await s.code(member), await s.code(member)]
        answers = await asyncio.gather(
            s.redeem(codes[0], [(here, 1)], kiosk="kiosk"),
            s.redeem(codes[1], [(there, 1)], kiosk="kiosk_other"),
        )
        round_results = sorted(outcome(r.status_code, r.json()) for r in answers)
        assert round_results == ["insufficient-funds", "ok"], [r.text for r in answers]
        results.update(round_results)
        winner = next(r.json() for r in answers if r.status_code == 201)
        kiosk = "kiosk" if winner["site_id"] == s.site else "kiosk_other"
        assert (await s.confirm(winner["id"], kiosk=kiosk)).status_code == 200
        points = s.points_account(member)
        assert await s.balance(points) == 0 and await s.available(points) == 0
    assert results == {"ok": ROUNDS, "insufficient-funds": ROUNDS}


async def test_two_kiosks_taking_the_last_item(shop: Shop) -> None:
    s = shop
    for _ in range(ROUNDS):
        last = await s.item("最后一箱牛奶", 10, stock=1)
        members = [await s.member(), await s.member()]
        for member in members:
            await s.points_to(member, 10)
        codes = [await s.code(m) for m in members]
        answers = await asyncio.gather(
            s.redeem(codes[0], [(last, 1)], kiosk="kiosk"),
            s.redeem(codes[1], [(last, 1)], kiosk="kiosk_2"),
        )
        assert sorted(outcome(r.status_code, r.json()) for r in answers) == ["ok", "out-of-stock"]
        winner = next(r.json() for r in answers if r.status_code == 201)
        assert (await s.confirm(winner["id"])).status_code == 200
        item = await s.get_item(last)
        assert (item["stock"], item["reserved"]) == (0, 0)
        loser = next(m for m in members if m["id"] != winner["member_id"])
        assert await s.available(s.points_account(loser)) == 10


async def test_a_confirmation_racing_a_cancellation_settles_once(shop: Shop) -> None:
    s = shop
    member = await s.member()
    await s.points_to(member, 10 * ROUNDS)
    tea = await s.item("茶", 10, stock=ROUNDS)
    confirmed = 0
    for _ in range(ROUNDS):
        pending = (await s.redeem(await s.code(member), [(tea, 1)])).json()
        answers = await asyncio.gather(s.confirm(pending["id"]), s.cancel(pending["id"]))
        kinds = sorted(outcome(r.status_code, r.json()) for r in answers)
        assert kinds == ["ok", "redemption-not-pending"], [r.text for r in answers]
        final = await s.ok("GET", f"/v1/kiosk/redemptions/{pending['id']}", "kiosk")
        confirmed += final["status"] == "confirmed"
        assert final["status"] in ("confirmed", "cancelled")
    item = await s.get_item(tea)
    assert (item["stock"], item["reserved"]) == (ROUNDS - confirmed, 0)
    points = s.points_account(member)
    assert await s.balance(points) == await s.available(points) == 10 * (ROUNDS - confirmed)
