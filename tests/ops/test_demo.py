"""`timebank demo`: a small district seeded in-process on the test database."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections import defaultdict
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import asyncpg

from app.config import Settings
from app.ledger.verify_runner import verify_book
from app.ops.demo.district import DEMO_BOOK, NEED_TEMPLATES, PROJECT_TEMPLATES
from app.ops.demo.plan import build_plan
from app.ops.demo.seeder import seed_demo
from tests.conftest import ScratchDatabase

# The catalogue as the migration lists it (what GET /v1/service-catalog answers).
CATEGORIES = {t[1] for pool in PROJECT_TEMPLATES.values() for t in pool} | {"other"}
GROUPS = {t[1] for t in NEED_TEMPLATES}
SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_the_plan_is_reproducible_and_keeps_the_rules() -> None:
    now = datetime(2026, 11, 27, 10, 30, tzinfo=UTC)
    plan = build_plan(300, 30, now, SHANGHAI, 720, CATEGORIES, GROUPS)
    again = build_plan(300, 30, now, SHANGHAI, 720, CATEGORIES, GROUPS)
    assert [(m.name, m.phone, m.birth_date) for m in plan.members] == [
        (m.name, m.phone, m.birth_date) for m in again.members
    ]
    assert [(s.kind, s.member, s.project, s.at, s.leave) for s in plan.steps] == [
        (s.kind, s.member, s.project, s.at, s.leave) for s in again.steps
    ]
    phones = [m.phone for m in plan.members]
    assert len(set(phones)) == 300
    assert all(re.fullmatch(r"1[3-9]\d{9}", p) for p in phones)
    assert all(re.fullmatch(r"[\u4e00-\u9fff]{2,3}", m.name) for m in plan.members)
    assert 28 <= len(plan.projects) <= 34 and 15 <= len(plan.needs) <= 25
    assert {p.kind for p in plan.projects} == {"single", "fixed", "shift", "manual"}
    # Service is planned in the past, inside windows, without overlaps or busting the cap.
    busy: dict[int, list[tuple[datetime, datetime]]] = defaultdict(list)
    per_day: dict[tuple[int, date], float] = defaultdict(float)
    for step in plan.steps:
        if step.kind not in ("visit", "manual"):
            continue
        assert step.leave is not None and step.at < step.leave < now
        project = plan.projects[step.project]
        assert step.at < project.ends and step.leave > project.starts
        for start, end in busy[step.member]:
            assert step.leave <= start or end <= step.at
        busy[step.member].append((step.at, step.leave))
        per_day[(step.member, step.at.astimezone(SHANGHAI).date())] += (
            step.leave - step.at
        ).total_seconds() / 60
    assert max(per_day.values()) <= 720
    assert sum(1 for s in plan.steps if s.reject) >= 1
    assert plan.corrected is not None and plan.dismissed is not None


# The plan's digest for fixed arguments: the planner may be reorganised, never its output (a
# change here changes every demo district; pin the new digests only on purpose).
PLAN_DIGESTS = {
    (300, 30): "efe705046cb20e512db24d44482708301a08ac8f265d3d7ca491c85a83fc9de6",
    (30, 5): "fa5059ef331b7116d2c73ca4d17debaf82c2321bd542c4727dee91086b07201c",
    (1000, 60): "f1cbffc4097496f2dc28a796e72a7f255a14ccd57acf1ffaf1abea0cb09724a1",
}


def test_the_plan_for_fixed_arguments_is_pinned() -> None:
    now = datetime(2026, 11, 27, 10, 30, tzinfo=UTC)
    for (members, days), digest in PLAN_DIGESTS.items():
        plan = build_plan(members, days, now, SHANGHAI, 720, sorted(CATEGORIES), sorted(GROUPS))
        document = json.dumps(
            dataclasses.asdict(plan), default=str, ensure_ascii=False, sort_keys=True
        )
        assert hashlib.sha256(document.encode()).hexdigest() == digest, (members, days)


async def test_demo_seeds_a_district_that_balances_and_verifies(
    test_settings: Settings, database: ScratchDatabase
) -> None:
    summary = (await seed_demo(test_settings, members=30, days=5)).document()
    assert summary["created"] is True
    assert summary["book"]["code"] == DEMO_BOOK
    assert summary["organisations"] == {
        "charity": 1,
        "community": 4,
        "kiosk_site": 1,
        "social_org": 2,
        "social_work_station": 1,
        "volunteer_team": 2,
    }
    assert summary["members"] == 30
    assert summary["projects"] == 8
    assert sum(summary["needs"].values()) == 6 and summary["needs"].get("met", 0) >= 1
    records = summary["records"]
    assert set(records) == {"approved", "rejected", "reversed"}  # nothing left waiting
    assert records["approved"] >= 20 and records["rejected"] >= 1 and records["reversed"] == 1
    assert summary["disputes"] == {"dismissed": 1, "upheld": 1}
    assert summary["head_seq"] == summary["book"]["head"]["seq"] > 0

    conn = await asyncpg.connect(database.app_url)
    try:
        # Every approved record has its service_credit, crediting its minutes to the member.
        credits = await conn.fetch(
            "SELECT r.id, r.credited_minutes, j.kind, l.amount, a.owner, r.member_id "
            "FROM service_records r LEFT JOIN journal_entries j ON j.tx_id = r.tx_id "
            "LEFT JOIN journal_legs l ON l.book_code = j.book_code AND l.seq = j.seq "
            "AND l.amount > 0 LEFT JOIN accounts a ON a.id = l.account_id "
            "WHERE r.book_code = $1 AND r.status = 'approved'",
            DEMO_BOOK,
        )
        assert len(credits) == records["approved"]
        for row in credits:
            assert row["kind"] == "service_credit", row
            assert row["amount"] == row["credited_minutes"]
            assert row["owner"] == f"member:{row['member_id']}"
        # What members hold in HOUR is what service_credit entries credited less reversals,
        # which is the minutes of the approved records.
        net = await conn.fetchval(
            "SELECT sum(l.amount) FROM journal_entries j JOIN journal_legs l "
            "ON l.book_code = j.book_code AND l.seq = j.seq JOIN accounts a ON a.id = l.account_id "
            "WHERE j.book_code = $1 AND j.kind IN ('service_credit', 'reversal') "
            "AND l.asset = 'HOUR' AND a.owner LIKE 'member:%'",
            DEMO_BOOK,
        )
        approved_minutes = await conn.fetchval(
            "SELECT sum(credited_minutes) FROM service_records "
            "WHERE book_code = $1 AND status = 'approved'",
            DEMO_BOOK,
        )
        held = await conn.fetchval(
            "SELECT sum(posted) FROM accounts WHERE book_code = $1 AND asset = 'HOUR' "
            "AND owner LIKE 'member:%'",
            DEMO_BOOK,
        )
        issued = await conn.fetchval(
            "SELECT sum(posted) FROM accounts WHERE book_code = $1 AND asset = 'HOUR' "
            "AND owner LIKE 'org:%'",
            DEMO_BOOK,
        )
        assert net == approved_minutes == held == -issued == summary["certified_minutes"]
        # The reversed record's credit is reversed, and a new approved record replaces it.
        reversed_ = await conn.fetchrow(
            "SELECT r.id, j.kind FROM service_records r "
            "JOIN journal_entries j ON j.reverses = r.tx_id AND j.tx_id = r.reversal_tx_id "
            "WHERE r.book_code = $1 AND r.status = 'reversed'",
            DEMO_BOOK,
        )
        assert reversed_ is not None and reversed_["kind"] == "reversal"
        replacement = await conn.fetchval(
            "SELECT status FROM service_records WHERE corrects_record_id = $1", reversed_["id"]
        )
        assert replacement == "approved"
        evidence = dict(
            await conn.fetch(
                "SELECT evidence, count(*) FROM service_records WHERE book_code = $1 "
                "GROUP BY evidence",
                DEMO_BOOK,
            )
        )
        assert evidence["checkin"] > evidence["manual"] > 0
        checked_out = await conn.fetchval(
            "SELECT count(*) FROM service_record_events WHERE event = 'checked_out'"
        )
        assert checked_out == evidence["checkin"]
        # The chain and every balance verify from the journal.
        verified = await verify_book(database.app_url, DEMO_BOOK)
        assert verified.entries == summary["head_seq"]

        before = await conn.fetchval("SELECT count(*) FROM credentials")
        again = (await seed_demo(test_settings, members=30, days=5)).document()
        assert again["created"] is False
        unchanged = {k: v for k, v in summary.items() if k not in ("created", "seconds")}
        assert {k: v for k, v in again.items() if k != "created"} == unchanged
        assert await conn.fetchval("SELECT count(*) FROM credentials") == before
        # The seeding's own platform credential was revoked at the end.
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM credentials WHERE book_code IS NULL AND revoked_at IS NULL"
            )
            == 0
        )
    finally:
        await conn.close()
