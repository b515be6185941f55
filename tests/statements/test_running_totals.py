"""The statistics' running totals: whatever part of the journal has been folded, and in
whichever time zone, both statistics answer exactly what a read of the whole journal answers;
the monthly totals of approved records always equal the records themselves.

The stats are read over HTTP. Folding is driven by hand here, one small step at a time (the
tests' sweep never runs), so that every boundary between folded and live entries is crossed.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.exchange.accounts import purpose_account
from app.ledger import folds
from app.ledger.outcomes import IdempotencyRef
from app.ledger.posting import Draft
from app.statements import flow_totals
from app.volunteering import credit_totals
from app.volunteering.stats import split_period
from tests.conftest import Api
from tests.statements.test_exchange_stats import Town, build_town
from tests.volunteering.test_stats import DEC_2, NOV_5, NOV_20, Region, build_region

ZONE = "Asia/Shanghai"
DERIVED = ("journal_folds", "flow_day_totals", "service_credit_day_totals")


async def forget_totals(api: Api, book: str) -> None:
    """Drop the book's running totals: the next read folds every entry itself."""
    async with api.app.state.sessions() as session, session.begin():
        for table in DERIVED:
            await session.execute(text(f"DELETE FROM {table} WHERE book_code = :b"), {"b": book})


async def fold(api: Api, fold_: folds.Fold, book: str, zone: str = ZONE, chunk: int = 1) -> int:
    async with api.app.state.sessions() as session:
        return await folds.fold_step(session, fold_, book, zone, chunk)


async def position(api: Api, book: str, name: str) -> tuple[int, str] | None:
    async with api.app.state.sessions() as session:
        row = (
            await session.execute(
                text(
                    "SELECT folded_seq, timezone FROM journal_folds "
                    "WHERE book_code = :b AND name = :n"
                ),
                {"b": book, "n": name},
            )
        ).first()
    return None if row is None else (int(row.folded_seq), str(row.timezone))


async def exchange_views(t: Town) -> list[dict[str, Any]]:
    return [
        await t.read(),
        await t.read(group_by="day"),
        await t.read("charity_org"),
        await t.read("site_org", group_by="day"),
    ]


async def test_exchange_stats_are_the_same_at_every_fold_position(api: Api) -> None:
    t = await build_town(api)
    whole = await exchange_views(t)
    assert whole[0]["totals"]["exchange"]["count"] == 2  # the town's flows are there
    steps = 0
    while await fold(api, flow_totals.FOLD, t.book, chunk=2):
        steps += 1
        assert await exchange_views(t) == whole, f"after {steps} steps"
    head = await api.client.get(f"/v1/books/{t.book}")
    assert head.status_code == 200, head.text
    assert await position(api, t.book, "flows") == (head.json()["head"]["seq"], ZONE)
    assert steps > 10
    rows = len(await _rows(api, "flow_day_totals", t.book))
    assert rows > 0

    # A reversal of an entry folded long ago is posted after the position: the folded
    # exchange stays counted, the live reversal is counted once, on its own day.
    quote = await t.quote(await _member_with_hours(t), 60)
    exchange = await t.exchange(quote.json()["id"])
    assert exchange.status_code == 201, exchange.text
    await t.ok("POST", f"/v1/transactions/{exchange.json()['entry']['id']}/reversal")
    live = await exchange_views(t)
    assert live[0]["totals"]["exchange"]["count"] == 3
    assert live[0]["totals"]["reversal"]["count"] == 2
    while await fold(api, flow_totals.FOLD, t.book, chunk=1):
        assert await exchange_views(t) == live
    folded_in_steps = await _rows(api, "flow_day_totals", t.book)
    assert len(folded_in_steps) >= rows
    await forget_totals(api, t.book)
    assert await exchange_views(t) == live

    # Processes that fold at once never fold an entry twice.
    sessions = api.app.state.sessions
    await asyncio.gather(
        *(folds.fold_behind(sessions, [flow_totals.FOLD], ZONE, 5, chunk=2) for _ in range(4))
    )
    await folds.fold_behind(sessions, [flow_totals.FOLD], ZONE, max_chunks=10**6)
    assert await _rows(api, "flow_day_totals", t.book) == folded_in_steps
    await forget_totals(api, t.book)

    # Totals cut in another time zone are never read; folding in the service's zone again
    # starts over, and at once makes what folding step by step made.
    assert await fold(api, flow_totals.FOLD, t.book, "UTC", chunk=10**6) > 0
    assert await exchange_views(t) == live
    assert await fold(api, flow_totals.FOLD, t.book, ZONE, chunk=10**6) > 0
    assert await exchange_views(t) == live
    assert await _rows(api, "flow_day_totals", t.book) == folded_in_steps


async def _member_with_hours(t: Town) -> Any:
    member = await t.member()
    await t.earn(member, 120)
    return member


async def _rows(api: Api, table: str, book: str) -> list[tuple[Any, ...]]:
    async with api.app.state.sessions() as session:
        found = await session.execute(
            text(f"SELECT * FROM {table} WHERE book_code = :b ORDER BY 1, 2, 3, 4, 5"), {"b": book}
        )
    return [tuple(row) for row in found]


async def service_views(g: Region) -> list[dict[str, Any]]:
    return [
        (await g.ok())["ledger"],
        (await g.ok(from_=NOV_5.isoformat(), to=DEC_2.isoformat()))["ledger"],
        (await g.ok("team_a"))["ledger"],
        (await g.ok("team_b", from_=NOV_20.isoformat()))["ledger"],
    ]


async def test_service_ledger_figures_are_the_same_at_every_fold_position(api: Api) -> None:
    g = await build_region(api)
    whole = await service_views(g)
    assert whole[0] == {
        "service_credit_minutes": 560,
        "reversed_minutes": 200,
        "net_minutes": 360,
        "reconciled": True,
    }
    while await fold(api, credit_totals.FOLD, g.book):
        assert await service_views(g) == whole
    # A correction after the position reverses a folded credit: taken back on the credit's
    # service day and in its organisation's scope, whatever day it is posted.
    p1 = g.projects["p1"]
    record = await g.record(p1, g.members[0], 25, NOV_20)
    after = await service_views(g)
    assert after[0]["service_credit_minutes"] == 585 and after[2]["service_credit_minutes"] == 205
    assert await fold(api, credit_totals.FOLD, g.book, chunk=10) == 1
    async with api.app.state.sessions() as session:
        tx = await session.scalar(
            text("SELECT tx_id::text FROM service_records WHERE id = CAST(:r AS uuid)"),
            {"r": record},
        )
    await g.reverse(str(tx))
    reversed_ = await service_views(g)
    assert reversed_[0]["reversed_minutes"] == 225 and reversed_[1]["reversed_minutes"] == 225
    assert reversed_[3]["reversed_minutes"] == 0  # team B's scope: not its credit
    assert await fold(api, credit_totals.FOLD, g.book, chunk=10) == 1
    assert await service_views(g) == reversed_
    await forget_totals(api, g.book)
    assert await service_views(g) == reversed_

    # A correction (docs/volunteering.md §6.1) of a folded credit takes back the whole credit
    # on its day and scopes, though it took only part of it from the member.
    while await fold(api, credit_totals.FOLD, g.book):
        pass
    corrected = await g.record(p1, g.members[0], 40, NOV_20)
    assert await fold(api, credit_totals.FOLD, g.book, chunk=10) == 1
    await correct(g, corrected, taken_back=15)
    after_correction = await service_views(g)
    assert after_correction[0]["service_credit_minutes"] == 625
    assert after_correction[0]["reversed_minutes"] == 265
    assert after_correction[2]["reversed_minutes"] == reversed_[2]["reversed_minutes"] + 40
    assert after_correction[3] == reversed_[3]  # team B's scope: not its credit
    # The correction moved both sides by the record's 40 minutes (the reversal above left its
    # record approved, so whether they agree is what it was).
    assert [v["reconciled"] for v in after_correction] == [v["reconciled"] for v in reversed_]
    assert await fold(api, credit_totals.FOLD, g.book, chunk=10) == 1
    assert await service_views(g) == after_correction
    await forget_totals(api, g.book)
    assert await service_views(g) == after_correction


async def correct(g: Region, record: str, taken_back: int) -> None:
    """A `service_correction` of the record's credit, as corrections.reverse posts it, and the
    record reversed."""
    async with g.api.app.state.sessions() as session:
        row = (
            await session.execute(
                text(
                    "SELECT tx_id::text AS tx, organisation_id::text AS org, member_id::text AS m, "
                    "project_id::text AS p, credited_minutes AS minutes FROM service_records "
                    "WHERE id = CAST(:r AS uuid)"
                ),
                {"r": record},
            )
        ).one()
    write_off = await purpose_account(
        g.api.app.state.sessions, g.book, f"org:{row.org}", "write_off", "HOUR", 10**9
    )
    rest = row.minutes - taken_back
    draft = Draft(
        g.book,
        "post",
        "service_correction",
        [(g.issuance[row.org], row.minutes), (g.hours[row.m], -taken_back), (write_off, -rest)],
        "",
        {
            "record": record,
            "project": row.p,
            "credit": row.tx,
            "taken_back": taken_back,
            "owed": 0,
            "written_off": rest,
        },
    )
    ref = IdempotencyRef(g.api.credential, f"test-correction:{record}", record)
    outcome = await g.api.app.state.sequencer.submit(draft, ref)
    assert outcome.status_code == 201, outcome.body
    async with g.api.app.state.sessions() as session, session.begin():
        await session.execute(
            text(
                "UPDATE service_records SET status = 'reversed', "
                "reversal_tx_id = CAST(:tx AS uuid) WHERE id = CAST(:r AS uuid)"
            ),
            {"tx": outcome.body["id"], "r": record},
        )


MONTHS_AGAIN = """
SELECT book_code, organisation_id, project_id, member_id,
       CAST(date_trunc('month', service_day) AS date) AS month, count(*) AS records,
       sum(credited_minutes) AS minutes,
       coalesce(sum(credited_minutes) FILTER (WHERE evidence = 'checkin'), 0) AS checkin,
       coalesce(sum(credited_minutes) FILTER (WHERE evidence = 'manual'), 0) AS manual
  FROM service_records WHERE status = 'approved' GROUP BY 1, 2, 3, 4, 5
"""
MEMBERS_AGAIN = """
SELECT book_code, organisation_id, project_id, member_id, count(*) AS records,
       sum(credited_minutes) AS minutes,
       coalesce(sum(credited_minutes) FILTER (WHERE evidence = 'checkin'), 0) AS checkin,
       coalesce(sum(credited_minutes) FILTER (WHERE evidence = 'manual'), 0) AS manual
  FROM service_records WHERE status = 'approved' GROUP BY 1, 2, 3, 4
"""
MEMBERS = """
SELECT book_code, organisation_id, project_id, member_id, records, minutes,
       checkin_minutes, manual_minutes FROM service_record_members
"""
MONTHS = """
SELECT book_code, organisation_id, project_id, member_id, month, records, minutes,
       checkin_minutes, manual_minutes FROM service_record_months
"""

RECORD_CHANGES = {
    "approve": [
        "UPDATE service_records SET status = 'approved', "
        "tx_id = coalesce(tx_id, gen_random_uuid()) WHERE id = :r"
    ],
    "reverse": ["UPDATE service_records SET status = 'reversed' WHERE id = :r"],
    "reject": ["UPDATE service_records SET status = 'rejected' WHERE id = :r"],
    "minutes": ["UPDATE service_records SET credited_minutes = CAST(:v AS integer) WHERE id = :r"],
    "day": [
        "UPDATE service_records SET service_day = service_day + CAST(:v AS integer) WHERE id = :r"
    ],
    "evidence": [
        "UPDATE service_records SET evidence = 'manual', attested_by = '陈站长' WHERE id = :r"
    ],
}
CHANGES = st.lists(
    st.tuples(
        st.sampled_from(sorted(RECORD_CHANGES)),
        st.integers(min_value=0, max_value=5),
        st.integers(min_value=0, max_value=90),
    ),
    max_size=12,
)


@pytest.fixture
async def region_for_records(api: Api) -> Region:
    return await build_region(api)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(changes=CHANGES)
async def test_record_months_follow_every_change(
    region_for_records: Region, changes: list[tuple[str, int, int]]
) -> None:
    g = region_for_records
    async with g.api.app.state.sessions() as session, session.begin():
        ids = list(
            await session.scalars(
                text(
                    "SELECT id FROM service_records WHERE book_code = :b AND status <> 'open' "
                    "ORDER BY id"
                ),
                {"b": g.book},
            )
        )
        for change, index, value in changes:
            record = ids[index % len(ids)]
            params: dict[str, Any] = {"r": record, "v": value}
            async with session.begin_nested() as step:
                try:
                    for statement in RECORD_CHANGES[change]:
                        await session.execute(text(statement), params)
                except DBAPIError as exc:  # a change the records' own constraints refuse
                    assert "violates" in str(exc) and '"service_records' in str(exc), exc
                    await step.rollback()
            for kept_sql, again_sql in ((MONTHS, MONTHS_AGAIN), (MEMBERS, MEMBERS_AGAIN)):
                again = sorted(tuple(r) for r in await session.execute(text(again_sql)))
                kept = sorted(tuple(r) for r in await session.execute(text(kept_sql)))
                assert kept == again, change
        await session.rollback()


@given(
    start=st.dates(date(2025, 12, 1), date(2027, 2, 28)),
    length=st.integers(min_value=-3, max_value=120),
    open_start=st.booleans(),
    open_end=st.booleans(),
)
def test_a_period_splits_into_its_whole_months_and_the_days_around_them(
    start: date, length: int, open_start: bool, open_end: bool
) -> None:
    end = start + timedelta(days=length)
    day_from, day_to = (None if open_start else start), (None if open_end else end)
    split = split_period(day_from, day_to)
    lo, hi = date(2025, 9, 1), date(2027, 6, 30)
    wanted = {
        lo + timedelta(days=i)
        for i in range((hi - lo).days + 1)
        if (day_from is None or lo + timedelta(days=i) >= day_from)
        and (day_to is None or lo + timedelta(days=i) <= day_to)
    }
    covered: list[date] = []
    for i in range((hi - lo).days + 1):
        day = lo + timedelta(days=i)
        month = day.replace(day=1)
        in_months = split.months is not None and (
            (split.months[0] is None or month >= split.months[0])
            and (split.months[1] is None or month < split.months[1])
        )
        in_days = [first <= day <= last for first, last in split.days].count(True)
        covered.extend([day] * (int(in_months) + in_days))
    assert sorted(covered) == sorted(wanted)  # each day once, no day outside
    assert len(split.days) <= 2
    assert all((last - first).days < 62 for first, last in split.days)


# The records' side as it was read before the running totals, from every approved record: the
# oracle the totals must agree with.
RECORDS_ORACLE = """
SELECT {key} AS key, sum(r.credited_minutes) AS minutes, count(*) AS records,
       count(DISTINCT r.member_id) AS volunteers
  FROM service_records r {joins}
 WHERE r.book_code = :book AND r.status = 'approved'
   AND (CAST(:day_from AS date) IS NULL OR r.service_day >= :day_from)
   AND (CAST(:day_to AS date) IS NULL OR r.service_day <= :day_to)
 GROUP BY 1
"""
ORACLE_GROUPS = {
    "category": ("JOIN projects p ON p.id = r.project_id", "p.category"),
    "organisation": ("", "CAST(r.organisation_id AS text)"),
    "month": ("", "to_char(r.service_day, 'YYYY-MM')"),
}
DAYS = st.one_of(st.none(), st.dates(date(2026, 10, 25), date(2027, 1, 5)))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(day_from=DAYS, day_to=DAYS, group_by=st.sampled_from(sorted(ORACLE_GROUPS)))
async def test_record_figures_equal_the_records_themselves_for_any_period(
    region_for_records: Region, day_from: date | None, day_to: date | None, group_by: str
) -> None:
    g = region_for_records
    if day_from is not None and day_to is not None and day_to < day_from:
        day_from, day_to = day_to, day_from
    query = {"group_by": group_by}
    if day_from is not None:
        query["from_"] = day_from.isoformat()
    if day_to is not None:
        query["to"] = day_to.isoformat()
    data = await g.ok(**query)
    joins, key = ORACLE_GROUPS[group_by]
    async with g.api.app.state.sessions() as session:
        rows = await session.execute(
            text(RECORDS_ORACLE.format(key=key, joins=joins)),
            {"book": g.book, "day_from": day_from, "day_to": day_to},
        )
        expected = {row.key: (row.records, row.minutes, row.volunteers) for row in rows}
    found = {x["key"]: (x["records"], x["minutes"], x["volunteers"]) for x in data["groups"]}
    assert found == expected
    assert data["totals"]["minutes"] == sum(v[1] for v in expected.values())
