"""The storage cap: what a credit would carry beyond a member's cap goes to the book's public
time pool in the same entry (approvals, grants, gifts), and the statistics of service still
reconcile; plus the cap's arithmetic as a property of the ledger's pure posting rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.ledger.journal import BalanceState
from app.ledger.posting import AccountState, Draft, apply_draft
from tests.conftest import Api
from tests.exchange.test_gifts import exchange_district, fund, gift, put_policy
from tests.volunteering.district import MORNING, District

BOOK = "capped"


@pytest.fixture
async def district(api: Api) -> District:
    return await exchange_district(api)


async def pool_of(d: District, asset: str = "HOUR") -> dict[str, Any]:
    pools = await d.ok("GET", f"/v1/books/{d.book}/public-pool", "auditor")
    found: dict[str, Any] = next(p for p in pools["pools"] if p["asset"] == asset)
    return found


async def stats(d: District) -> dict[str, Any]:
    data: dict[str, Any] = await d.ok("GET", f"/v1/stats/service?book={d.book}", "auditor")
    return data


async def approved(d: District, project: str, member: str, start: datetime, minutes: int) -> Any:
    entered = await d.manual(project, member, start, minutes)
    assert entered.status_code == 201, entered.text
    return await d.ok("POST", f"/v1/service-records/{entered.json()['id']}/approve", "team")


async def test_an_approval_beyond_the_cap_credits_the_pool_in_the_same_entry(
    district: District,
) -> None:
    d = district
    member = await d.member()
    await fund(d, member["hours"], 60)
    assert (await put_policy(d, storage_cap=100)).status_code == 200
    project = await d.project()

    first = await approved(d, project["id"], member["id"], MORNING, 90)
    pool = await pool_of(d)
    tx = await d.ok("GET", f"/v1/transactions/{first['tx_id']}")
    assert tx["kind"] == "service_credit"
    assert tx["entry"]["legs"] == [
        {"account_id": d.team_issuance, "asset": "HOUR", "amount": -90},
        {"account_id": member["hours"], "asset": "HOUR", "amount": 40},
        {"account_id": pool["account_id"], "asset": "HOUR", "amount": 50},
    ]
    assert tx["entry"]["meta"] == {
        "record": first["id"],
        "project": project["id"],
        "evidence": "manual",
        "service_day": first["service_day"],
        "actor": {"credential": d.credentials["team"]},
        "overflow": [{"account": member["hours"], "amount": 50, "cap": 100}],
    }
    assert await d.balance(member["hours"]) == 100
    assert (pool["posted"], pool["available"]) == (50, 50)
    assert [(e["kind"], e["amount"], e["posted_after"], e["tx_id"]) for e in pool["recent"]] == [
        ("service_credit", 50, 50, first["tx_id"])
    ]
    # The record certifies its 90 minutes; the journal's figure counts the overflow too.
    figures = await stats(d)
    assert figures["totals"]["minutes"] == 90
    assert figures["ledger"] == {
        "service_credit_minutes": 90,
        "reversed_minutes": 0,
        "net_minutes": 90,
        "reconciled": True,
    }

    # At the cap already: the whole credit goes to the pool.
    second = await approved(d, project["id"], member["id"], MORNING + timedelta(hours=2), 30)
    tx = await d.ok("GET", f"/v1/transactions/{second['tx_id']}")
    assert tx["entry"]["legs"] == [
        {"account_id": d.team_issuance, "asset": "HOUR", "amount": -30},
        {"account_id": pool["account_id"], "asset": "HOUR", "amount": 30},
    ]
    assert tx["entry"]["meta"]["overflow"] == [
        {"account": member["hours"], "amount": 30, "cap": 100}
    ]
    assert await d.balance(member["hours"]) == 100
    assert (await pool_of(d))["posted"] == 80
    figures = await stats(d)
    assert figures["totals"]["minutes"] == figures["ledger"]["net_minutes"] == 120
    assert figures["ledger"]["reconciled"] is True

    # Correcting the first record reverses its legs, the pool's included.
    await d.ok(
        "POST", f"/v1/service-records/{first['id']}/reverse", "team", body={"reason": "录错"}
    )
    assert await d.balance(member["hours"]) == 60
    assert (await pool_of(d))["posted"] == 30
    figures = await stats(d)
    assert figures["totals"]["minutes"] == 30
    assert figures["ledger"] == {
        "service_credit_minutes": 120,
        "reversed_minutes": 90,
        "net_minutes": 30,
        "reconciled": True,
    }


async def test_a_grant_beyond_the_cap_leaves_the_rest_in_the_pool(district: District) -> None:
    d = district
    donor, member = await d.member(), await d.member()
    await fund(d, donor["hours"], 300)
    await fund(d, member["hours"], 80)
    donated = await d.call(
        "POST",
        f"/v1/books/{d.book}/public-pool/donations",
        "mini",
        body={"amount": 200},
        member=donor["id"],
    )
    assert donated.status_code == 201, donated.text
    assert (await put_policy(d, storage_cap=100)).status_code == 200
    pool = (await pool_of(d))["account_id"]

    r = await d.call(
        "POST",
        f"/v1/books/{d.book}/public-pool/grants",
        "team",
        body={"member_id": member["id"], "amount": 50, "reason": "独居老人冬季助餐"},
    )
    assert r.status_code == 201, r.text
    answer = r.json()
    assert (answer["grant"]["received"], answer["grant"]["overflow"]) == (20, 30)
    assert answer["entry"]["legs"] == [
        {"account_id": pool, "asset": "HOUR", "amount": -50},
        {"account_id": member["hours"], "asset": "HOUR", "amount": 20},
        {"account_id": pool, "asset": "HOUR", "amount": 30},
    ]
    assert answer["entry"]["overflow"] == [{"account": member["hours"], "amount": 30, "cap": 100}]
    tx = await d.ok("GET", f"/v1/transactions/{answer['entry']['tx_id']}")
    assert tx["entry"]["meta"]["overflow"] == answer["entry"]["overflow"]
    assert await d.balance(member["hours"]) == 100
    assert (await pool_of(d))["posted"] == 200 - 20


async def test_a_gift_beyond_the_cap_sends_the_rest_to_the_pool(district: District) -> None:
    d = district
    giver, receiver = await d.member(), await d.member()
    await fund(d, giver["hours"], 100)
    await fund(d, receiver["hours"], 90)
    assert (await put_policy(d, storage_cap=100)).status_code == 200

    r = await gift(d, receiver["id"], 30, giver=giver["id"])
    assert r.status_code == 201, r.text
    pool = (await pool_of(d))["account_id"]
    assert (r.json()["gift"]["received"], r.json()["gift"]["overflow"]) == (10, 20)
    assert r.json()["entry"]["legs"] == [
        {"account_id": giver["hours"], "asset": "HOUR", "amount": -30},
        {"account_id": receiver["hours"], "asset": "HOUR", "amount": 10},
        {"account_id": pool, "asset": "HOUR", "amount": 20},
    ]
    # At the cap: the receiver would get nothing, so the gift is refused and nothing posted.
    head = (await d.ok("GET", f"/v1/books/{d.book}/head"))["seq"]
    r = await gift(d, receiver["id"], 25, giver=giver["id"])
    assert r.status_code == 409, r.text
    refused = r.json()
    assert refused["type"] == "urn:timebank:problem:nothing-to-move"
    assert (refused["account_id"], refused["storage_cap"]) == (receiver["hours"], 100)
    assert (await d.ok("GET", f"/v1/books/{d.book}/head"))["seq"] == head
    assert await d.balance(giver["hours"]) == 70 and await d.balance(receiver["hours"]) == 100
    assert (await pool_of(d))["posted"] == 20
    listed = await d.ok("GET", f"/v1/members/{receiver['id']}/gifts")
    assert [
        (g["direction"], g["from_member_id"], g["to_member_id"], g["received"], g["overflow"])
        for g in listed["items"]
    ] == [("received", giver["id"], receiver["id"], 10, 20)]


def _state(account_id: str, posted: int, overdraft: int = 0) -> AccountState:
    return AccountState(account_id, BOOK, "HOUR", "open", overdraft, BalanceState(posted), 0)


@given(
    cap=st.integers(1, 10**6),
    before=st.integers(0, 2 * 10**6),
    credits=st.lists(st.integers(1, 10**6), min_size=1, max_size=3),
    pool_before=st.integers(0, 10**6),
)
def test_the_cap_splits_a_credit_without_creating_or_losing_units(
    cap: int, before: int, credits: list[int], pool_before: int
) -> None:
    accounts = {
        "issuer": _state("issuer", -(10**9), overdraft=10**12),
        "member": _state("member", before),
        "pool": _state("pool", pool_before),
    }
    total = sum(credits)
    draft = Draft(
        BOOK,
        "post",
        "service_credit",
        [("issuer", -total), *(("member", c) for c in credits)],
        storage_caps={"member": cap},
        overflow_to="pool",
    )
    applied = apply_draft(draft, accounts, {}, datetime.now(UTC))
    after = {a: applied.touched.get(a, s).balance.posted for a, s in accounts.items()}

    expected = min(cap, before + total) if before <= cap else before
    assert after["member"] == expected
    assert after["pool"] == pool_before + total - (expected - before)
    assert after["issuer"] == -(10**9) - total
    assert sum(after.values()) == sum(s.balance.posted for s in accounts.values())
    assert sum(leg.amount for leg in applied.legs) == 0
    assert all(leg.amount != 0 for leg in applied.legs)
    diverted = total - (expected - before)
    if diverted:
        assert sum(item["amount"] for item in applied.meta["overflow"]) == diverted
        assert {item["account"] for item in applied.meta["overflow"]} == {"member"}
        assert all(item["cap"] == cap for item in applied.meta["overflow"])
    else:
        assert "overflow" not in applied.meta
        assert all(leg.account_id != "pool" for leg in applied.legs)
    # The state it was given is untouched.
    assert accounts["member"].balance.posted == before
    assert accounts["pool"].balance.posted == pool_before
