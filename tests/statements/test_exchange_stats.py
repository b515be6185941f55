"""Exchange statistics (GET /v1/stats/exchange): each flow's figures equal what the test
posted through the API, placed by period, seen whole by admins and auditors and through its
own accounts by an organisation, reconciled with the exchange and kiosk tables until a row in
one of them is forged."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from app.exchange.expiry.service import expire_lapsed
from tests.conftest import Api, PgServer, ScratchDatabase, superuser_of
from tests.exchange.market import Market
from tests.kiosk.shop import Shop
from tests.volunteering.district import MORNING, build_district

STATS = "/v1/stats/exchange"
ZONE = ZoneInfo("Asia/Shanghai")
# Each flow's kind in the journal (a kiosk redemption is a hold.post, a reversal a reversal).
FLOW_KINDS = {
    "exchange": "exchange",
    "gift": "gift",
    "recognition.out": "recognition_out",
    "recognition.in": "recognition_in",
    "public_pool.grant": "public_pool_grant",
    "expiry": "expiry",
    "hold.post": "kiosk_redemption",
    "reversal": "reversal",
}
EMPTY = {"count": 0, "members_gave": {}, "members_received": {}}


class Town(Market, Shop):
    """A district with a charity whose pools pay exchanges and a kiosk site, another book that
    accepts its hours, and one of each flow posted through the API."""

    other_book: str = ""

    async def stats(self, who: str = "admin", **query: Any) -> httpx.Response:
        params = {"book": self.book} | {k.rstrip("_"): v for k, v in query.items()}
        params = {k: v for k, v in params.items() if v is not None}
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return await self.api.client.get(STATS, params=params, headers=headers)

    async def read(self, who: str = "admin", **query: Any) -> dict[str, Any]:
        r = await self.stats(who, **query)
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data


async def build_town(api: Api) -> Town:
    district = await build_district(api)
    t = Town(api)
    t.__dict__.update(district.__dict__)
    t.charity = (await t.organisation("charity"))["id"]
    for asset in ("HOUR", "POINT"):
        await t.ok("POST", f"/v1/organisations/{t.charity}/pools", body={"asset": asset})
    body = {"asset": "POINT", "amount": 10_000, "donor": {"name": "王善人"}}
    await t.ok("POST", f"/v1/organisations/{t.charity}/donations", body=body)
    t.site = (await t.organisation("kiosk_site"))["id"]
    for name, role, organisation in (
        ("kiosk", "kiosk", t.site),
        ("site_org", "org", t.site),
        ("charity_org", "org", t.charity),
    ):
        body = {"role": role, "book": t.book, "organisation_id": organisation}
        t.tokens[name] = (await t.ok("POST", "/v1/credentials", body=body))["token"]
    t.other_book = await api.book()
    t.at(MORNING)
    await _post_every_flow(t)
    return t


async def _post_every_flow(t: Town) -> None:
    """Two exchanges (180 minutes for 30 points), a gift of 30 minutes and its reversal, a
    redemption of 10 points (and one cancelled), a grant of 5 minutes from the public pool
    (after a donation of 20), a transfer of 10 minutes to the other book, 20 points lapsed;
    and what is none of them: an ordinary transfer and its reversal, a hold posted by hand."""
    a, b = await t.member(), await t.member()
    await t.earn(a, 600)
    # Neither a reversal of an ordinary transfer nor a hold posted by hand is a flow.
    r = await t.api.transfer(t.book, t.team_issuance, b["hours"], 7)
    await t.ok("POST", f"/v1/transactions/{r.json()['id']}/reversal")
    body = {"from_account_id": t.team_issuance, "to_account_id": b["hours"], "amount": 3}
    hold = await t.ok("POST", f"/v1/books/{t.book}/holds", body={**body, "expires_in": 600})
    await t.ok("POST", f"/v1/holds/{hold['id']}/post", body={})
    await t.rule()
    for minutes in (120, 60):
        quote = await t.quote(a, minutes)
        assert quote.status_code == 201, quote.text
        assert (await t.exchange(quote.json()["id"])).status_code == 201
    gift = await t.ok(
        "POST", "/v1/gifts", body={"from_member_id": a["id"], "to_member_id": b["id"], "amount": 30}
    )
    await t.ok("POST", f"/v1/transactions/{gift['entry']['tx_id']}/reversal")
    rice = await t.item("大米", 5, stock=None)
    kept = await t.redeem(await t.code(a), [(rice, 2)])
    assert (await t.confirm(kept.json()["id"])).status_code == 200
    dropped = await t.redeem(await t.code(a), [(rice, 1)])
    assert (await t.cancel(dropped.json()["id"])).status_code == 200
    pool = f"/v1/books/{t.book}/public-pool"
    await t.ok("POST", f"{pool}/donations", body={"member_id": a["id"], "amount": 20})
    grant = {"member_id": b["id"], "amount": 5, "reason": "困难老人"}
    await t.ok("POST", f"{pool}/grants", body=grant)
    body = {"from_book": t.book, "to_book": t.other_book}
    agreement = await t.ok("POST", "/v1/recognition/agreements", "platform", body=body)
    body = {"agreement_id": agreement["id"], "member_id": a["id"], "amount": 10}
    await t.ok("POST", "/v1/recognition/transfers", body=body)
    # Points lapse a year after they are earned; a run for next new year takes the 20 left.
    await t.ok("PATCH", "/v1/assets/POINT", "platform", body={"expires_after_years": 0})
    state = t.api.app.state
    summary = await expire_lapsed(state.sessions, state.sequencer, _next_new_year(), ZONE)
    assert summary.as_json()["units_expired_by_asset"] == {"POINT": 20}


def _next_new_year() -> date:
    return date(datetime.now(ZONE).year + 1, 1, 1)


@pytest.fixture(scope="module")
async def town(module_api: Api) -> Town:
    return await build_town(module_api)


def flows_of(entries: list[dict[str, Any]], key: str) -> dict[str, Counter[str]]:
    """How many entries of each flow the export holds per period (`key`: a strftime format): a
    hold.post counts when its hold's meta names a redemption, a reversal when it undid an entry
    of a flow (in this town, the gift and not the ordinary transfer)."""
    kinds = {entry["tx_id"]: entry["kind"] for entry in entries}
    holds = {e["tx_id"] for e in entries if e["kind"] == "hold" and "redemption" in e["meta"]}
    found: dict[str, Counter[str]] = {}
    for entry in entries:
        flow = FLOW_KINDS.get(entry["kind"])
        meta = entry["meta"]
        if entry["kind"] == "hold.post" and meta["hold"] not in holds:
            continue
        if entry["kind"] == "reversal" and kinds[meta["reverses"]] not in FLOW_KINDS:
            continue
        if flow is None:
            continue
        posted = datetime.fromisoformat(entry["posted_at"].replace("Z", "+00:00"))
        period = posted.astimezone(ZONE).strftime(key)
        found.setdefault(period, Counter())[flow] += 1
    return found


async def test_each_flow_is_what_was_posted(town: Town) -> None:
    data = await town.read()
    assert data["totals"] == {
        "exchange": {
            "count": 2,
            "members_gave": {"HOUR": 180},
            "members_received": {"POINT": 30},
        },
        "kiosk_redemption": {"count": 1, "members_gave": {"POINT": 10}, "members_received": {}},
        "gift": {"count": 1, "members_gave": {"HOUR": 30}, "members_received": {"HOUR": 30}},
        "recognition_out": {"count": 1, "members_gave": {"HOUR": 10}, "members_received": {}},
        "recognition_in": EMPTY,
        "public_pool_grant": {"count": 1, "members_gave": {}, "members_received": {"HOUR": 5}},
        "expiry": {"count": 1, "members_gave": {"POINT": 20}, "members_received": {}},
        "reversal": {"count": 1, "members_gave": {"HOUR": 30}, "members_received": {"HOUR": 30}},
    }
    assert data["reconciliation"] == {
        "exchanges": {
            "journal": {"count": 2, "given": {"HOUR": 180}, "paid": {"POINT": 30}},
            "recorded": {"count": 2, "given": {"HOUR": 180}, "paid": {"POINT": 30}},
            "unmatched": 0,
            "reconciled": True,
        },
        "kiosk_redemptions": {
            "journal": {"count": 1, "spent": {"POINT": 10}},
            "recorded": {"count": 1, "spent": {"POINT": 10}},
            "unmatched": 0,
            "reconciled": True,
        },
        "reconciled": True,
    }
    assert (data["book"], data["group_by"], data["timezone"]) == (
        town.book,
        "month",
        "Asia/Shanghai",
    )
    assert data["organisation_id"] is None and data["from"] is None and data["to"] is None
    # The other book received the transfer.
    other = await town.read("platform", book=town.other_book)
    assert other["totals"]["recognition_in"] == {
        "count": 1,
        "members_gave": {},
        "members_received": {"HOUR": 10},
    }
    assert other["totals"]["exchange"] == EMPTY and other["reconciliation"]["reconciled"]


@pytest.mark.parametrize(("group_by", "key"), [("month", "%Y-%m"), ("day", "%Y-%m-%d")])
async def test_entries_are_placed_by_the_service_day_they_were_posted(
    town: Town, group_by: str, key: str
) -> None:
    data = await town.read(group_by=group_by)
    expected = flows_of(await town.entries(), key)
    assert [p["period"] for p in data["periods"]] == sorted(expected)
    for period in data["periods"]:
        counts = {flow: f["count"] for flow, f in period["flows"].items() if f["count"]}
        assert counts == dict(expected[period["period"]]), period["period"]
    # The periods add up to the totals.
    for flow, total in data["totals"].items():
        assert sum(p["flows"][flow]["count"] for p in data["periods"]) == total["count"]


async def test_a_period_counts_its_days_only(town: Town) -> None:
    first = (await town.read(group_by="day"))["periods"][0]
    day = first["period"]
    only = await town.read(from_=day, to=day, group_by="day")
    assert only["periods"] == [first] and only["totals"] == first["flows"]
    assert (only["from"], only["to"]) == (day, day)
    before = await town.read(from_="2001-01-01", to="2001-12-31")
    assert before["periods"] == []
    assert all(f == EMPTY for f in before["totals"].values())
    assert before["reconciliation"]["reconciled"] is True
    assert before["reconciliation"]["exchanges"]["recorded"]["count"] == 0


async def test_an_organisation_sees_the_flows_through_its_own_accounts(town: Town) -> None:
    charity = await town.read("charity_org")
    assert charity["organisation_id"] == town.charity
    assert charity["totals"]["exchange"]["count"] == 2
    assert all(f == EMPTY for name, f in charity["totals"].items() if name != "exchange")
    assert charity["reconciliation"]["exchanges"]["recorded"]["count"] == 2
    assert charity["reconciliation"]["kiosk_redemptions"]["recorded"]["count"] == 0
    assert charity["reconciliation"]["reconciled"] is True
    site = await town.read("site_org")
    assert site["totals"]["kiosk_redemption"]["members_gave"] == {"POINT": 10}
    assert all(f == EMPTY for name, f in site["totals"].items() if name != "kiosk_redemption")
    assert site["reconciliation"]["reconciled"] is True
    # A team whose accounts no flow moves sees nothing; its `book` is its own anyway.
    team = await town.read("team", book=None)
    assert all(f == EMPTY for f in team["totals"].values()) and team["periods"] == []


async def test_who_may_read(town: Town) -> None:
    assert (await town.read("auditor"))["totals"] == (await town.read())["totals"]
    assert (await town.read("platform"))["totals"] == (await town.read())["totals"]
    for who in ("mini", "kiosk"):
        r = await town.stats(who)
        assert r.status_code == 403 and r.json()["type"] == "urn:timebank:problem:forbidden"
    r = await town.stats(book=town.other_book)
    assert r.status_code == 404, r.text


async def test_hostile_queries_are_problems(town: Town) -> None:
    cases: list[tuple[str, dict[str, Any], int]] = [
        ("admin", {"from_": "2026-12-01", "to": "2026-11-01"}, 422),
        ("admin", {"group_by": "week"}, 422),
        ("admin", {"from_": "1899-12-31"}, 422),
        ("admin", {"to": "3000-01-01"}, 422),
        ("admin", {"from_": "2026-02-30"}, 422),
        ("admin", {"book": "Not a book"}, 422),
        ("admin", {"group_by": "month\x00"}, 422),
        ("platform", {"book": "nosuchbook"}, 404),
    ]
    for who, query, status in cases:
        r = await town.stats(who, **query)
        assert r.status_code == status, (query, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    r = await town.api.client.get(STATS)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query/book"
    # The last day a date may name still works (its end is the next day's midnight).
    r = await town.stats(from_="2999-12-31", to="2999-12-31", group_by="day")
    assert r.status_code == 200 and r.json()["periods"] == []


async def test_a_forged_row_in_a_feature_table_does_not_reconcile(
    api: Api, pg_server: PgServer, database: ScratchDatabase
) -> None:
    town = await build_town(api)
    assert (await town.read())["reconciliation"]["reconciled"] is True
    conn = await asyncpg.connect(superuser_of(pg_server, database))
    first_quote = "(SELECT id FROM exchange_quotes WHERE tx_id IS NOT NULL ORDER BY id LIMIT 1)"
    try:
        # A quote that says its pool paid one point more than its entry shows.
        await conn.execute(
            f"UPDATE exchange_quotes SET to_amount = to_amount + 1 WHERE id = {first_quote}"
        )
        data = (await town.read())["reconciliation"]
        assert data["exchanges"]["journal"]["paid"] == {"POINT": 30}
        assert data["exchanges"]["recorded"]["paid"] == {"POINT": 31}
        assert data["exchanges"]["unmatched"] == 0
        assert data["exchanges"]["reconciled"] is False and data["reconciled"] is False
        assert data["kiosk_redemptions"]["reconciled"] is True
        # The same figures, but the quote names an entry the journal never had.
        await conn.execute(
            f"UPDATE exchange_quotes SET to_amount = to_amount - 1, tx_id = $1 "
            f"WHERE id = {first_quote}",
            uuid.uuid4(),
        )
        data = (await town.read())["reconciliation"]["exchanges"]
        assert data["journal"] == data["recorded"] and data["unmatched"] == 1
        assert data["reconciled"] is False
        # The cancelled redemption made out to be confirmed: no hold.post took its points.
        await conn.execute(
            "UPDATE kiosk_redemptions SET status = 'confirmed' WHERE status = 'cancelled'"
        )
        data = (await town.read())["reconciliation"]["kiosk_redemptions"]
        assert data["journal"] == {"count": 1, "spent": {"POINT": 10}}
        assert data["recorded"] == {"count": 2, "spent": {"POINT": 15}}
        assert data["unmatched"] == 1 and data["reconciled"] is False
        # The kiosk site's own view sees the same difference; the charity's, its own.
        site = (await town.read("site_org"))["reconciliation"]
        assert site["kiosk_redemptions"]["reconciled"] is False
        charity = (await town.read("charity_org"))["reconciliation"]
        assert charity["exchanges"]["unmatched"] == 1
        assert charity["kiosk_redemptions"]["reconciled"] is True
    finally:
        await conn.close()
