"""Service-day semantics: units earned for a day of service count from that day (lapse dates,
daily caps, statistics by month), whenever the record is imported or approved."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.exchange.expiry.service import expire_lapsed
from app.ledger.verify_runner import verify_book
from tests.conftest import Api
from tests.volunteering.district import CST, MORNING, District, build_district
from tests.volunteering.test_import import HEADER, send

ZONE = ZoneInfo("Asia/Shanghai")


@pytest.fixture
async def district(api: Api) -> District:
    d = await build_district(api)
    r = await api.client.patch(
        "/v1/assets/HOUR",
        json={"expires_after_years": 2},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 200, r.text
    return d


async def hour_expiries(d: District, member: str) -> list[dict[str, Any]]:
    balances = (await d.ok("GET", f"/v1/members/{member}/balances"))["balances"]
    return next(b["expiries"] for b in balances if b["asset"] == "HOUR" and b["book"] == d.book)


async def test_records_of_2025_imported_in_2026_count_from_their_service_days(
    district: District,
) -> None:
    d = district
    old = await d.project(
        starts_at=datetime(2025, 11, 20, 6, 0, tzinfo=CST).isoformat(),
        ends_at=datetime(2025, 11, 21, 23, 0, tzinfo=CST).isoformat(),
    )
    member = await d.member()
    number, pid = member["volunteer_number"], old["id"]
    rows = [
        f"s-1,{number},{pid},2025-11-20 06:00,2025-11-20 14:00,陈站长",
        # 480 + 360 minutes on 2025-11-20: beyond the daily cap of 720 of that day.
        f"s-2,{number},{pid},2025-11-20 14:00,2025-11-20 20:00,陈站长",
        # The same 360 minutes on the next day fit.
        f"s-3,{number},{pid},2025-11-21 08:00,2025-11-21 14:00,陈站长",
    ]
    report = (await send(d, HEADER + "\n".join(rows) + "\n", dry_run=False)).json()
    assert report["accepted"] == 2 and report["refused"] == 1, report
    [refused] = report["problems"]
    assert refused["external_id"] == "s-2"
    [problem] = refused["problems"]
    assert problem["code"] == "urn:timebank:problem:daily-cap-exceeded"
    assert "on 2025-11-20" in problem["message"] and "840 minutes" in problem["message"]

    pending = (await d.ok("GET", "/v1/service-records?status=pending", "team"))["items"]
    assert sorted(r["service_day"] for r in pending) == ["2025-11-20", "2025-11-21"]
    txs = []
    for record in pending:
        approved = await d.ok("POST", f"/v1/service-records/{record['id']}/approve", "team")
        tx = await d.ok("GET", f"/v1/transactions/{approved['tx_id']}")
        # Posted now (2026 or later), long after the day of service.
        assert int(tx["entry"]["posted_at"][:4]) >= 2026
        assert tx["entry"]["meta"]["service_day"] == record["service_day"]
        txs.append(tx)
    # A record of 2026, approved the same day, for comparison.
    current = await d.project()
    r = await d.manual(current["id"], member["id"], MORNING, 60)
    assert r.status_code == 201, r.text
    await d.ok("POST", f"/v1/service-records/{r.json()['id']}/approve", "team")

    # Two years of validity: 2025's units lapse on 2028-01-01, 2026's on 2029-01-01.
    assert await hour_expiries(d, member["id"]) == [
        {"lapses_on": "2028-01-01", "amount": 840},
        {"lapses_on": "2029-01-01", "amount": 60},
    ]
    state = d.api.app.state
    before = await expire_lapsed(state.sessions, state.sequencer, date(2027, 12, 31), ZONE)
    assert before.entries_posted == 0
    on = await expire_lapsed(state.sessions, state.sequencer, date(2028, 1, 1), ZONE)
    assert on.entries_posted == 1 and on.units_expired_by_asset == {"HOUR": 840}
    assert await d.balance(member["hours"]) == 60
    assert await hour_expiries(d, member["id"]) == [{"lapses_on": "2029-01-01", "amount": 60}]

    # Statistics by month place the records on their service days.
    stats = await d.ok("GET", f"/v1/stats/service?book={d.book}&group_by=month")
    assert [(g["key"], g["minutes"]) for g in stats["groups"]] == [
        ("2025-11", 840),
        ("2026-11", 60),
    ]
    assert stats["ledger"]["reconciled"] is True
    november = await d.ok("GET", f"/v1/stats/service?book={d.book}&from=2025-11-01&to=2025-11-30")
    assert november["totals"]["minutes"] == 840
    assert november["ledger"]["net_minutes"] == 840
    # The entries with their service days are valid for the project's verifier.
    await verify_book(state.settings.database_url, d.book)


async def test_a_record_approved_later_keeps_its_service_days_daily_cap(
    district: District,
) -> None:
    """The cap is counted on the day of service, not the day a record is approved."""
    d = district
    project = await d.project(
        starts_at=datetime(2025, 11, 20, 6, 0, tzinfo=CST).isoformat(),
        ends_at=datetime(2025, 11, 20, 23, 0, tzinfo=CST).isoformat(),
    )
    member = await d.member()
    first = await d.manual(project["id"], member["id"], datetime(2025, 11, 20, 6, tzinfo=CST), 700)
    assert first.status_code == 201, first.text
    await d.ok("POST", f"/v1/service-records/{first.json()['id']}/approve", "team")
    # Approved today; 2025-11-20 still holds its 700 minutes, today holds none.
    late = await d.manual(project["id"], member["id"], datetime(2025, 11, 20, 18, tzinfo=CST), 30)
    assert late.status_code == 422, late.text
    assert late.json()["type"] == "urn:timebank:problem:daily-cap-exceeded"
    assert late.json()["credited_minutes"] == 700
    today = await d.manual(
        (await d.project())["id"], member["id"], MORNING + timedelta(minutes=5), 30
    )
    assert today.status_code == 201, today.text
