"""Service statistics: certified service (approved records) grouped by category, organisation,
community or month, and the same figure recomputed from the journal so the two can be compared.

The records side counts `service_records` with status `approved` (whole months from their
running totals, `service_record_months`). The ledger side reads only the journal's running
totals (`app.volunteering.credit_totals`, which says how entries are counted and placed): the
HOUR minutes that `service_credit` entries credited to member accounts or, as overflow beyond a
member's storage cap, to the book's public time pool, less what `reversal` entries of those
transactions took back from the same accounts, and the whole credit of each one a
`service_correction` corrected (docs/volunteering.md §6.1). A correct service keeps the two
equal (an approval posts exactly its record's minutes, a correction reverses or corrects them
and marks the record `reversed`), so `reconciled` false means the table and the ledger
disagree.

Both sides are read in one REPEATABLE READ snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.identity.authorization import org_owner
from app.ledger import service as ledger
from app.volunteering import credit_totals
from app.volunteering.figures import hours
from app.volunteering.stats_schemas import (
    GroupBy,
    LedgerFigures,
    ServiceStats,
    StatsGroup,
    StatsTotals,
)

NO_COMMUNITY = "未指定"


@dataclass(frozen=True, slots=True)
class Scope:
    """Which certified service is counted: one book, optionally one certifying organisation,
    and service days from `day_from` to `day_to` (inclusive, each optional)."""

    book: str
    organisation_id: str | None = None
    day_from: date | None = None
    day_to: date | None = None


@dataclass(frozen=True, slots=True)
class _Grouping:
    joins: str
    key: str
    label: str


# Fixed SQL fragments, chosen by `group_by` (never built from input). `r` is a row of
# RECORDS_SQL's `rows`.
GROUPINGS: dict[str, _Grouping] = {
    "category": _Grouping(
        "JOIN projects p ON p.id = r.project_id JOIN service_categories c ON c.code = p.category",
        "p.category",
        "c.name_zh",
    ),
    "organisation": _Grouping(
        "JOIN organisations o ON o.id = r.organisation_id",
        "CAST(r.organisation_id AS text)",
        "o.name",
    ),
    "community": _Grouping(
        "JOIN projects p ON p.id = r.project_id "
        "LEFT JOIN organisations cm ON cm.id = p.community_id",
        "CAST(p.community_id AS text)",
        f"coalesce(cm.name, '{NO_COMMUNITY}')",
    ),
    "month": _Grouping("", "to_char(r.day, 'YYYY-MM')", "to_char(r.day, 'YYYY-MM')"),
}

# Approved records: the whole months of the period from their running totals per member,
# project and month (`service_record_months`, kept by a trigger), the days of its partial
# months at either end from the records themselves. Without a period, and unless grouped by
# month, the totals per member and project over all time (`service_record_members`): as many
# rows as the book has volunteers in projects, however many years it holds. Then per group
# (and member and project, so that the distinct counts below sort few rows), then one row per
# group and, from the empty grouping set, one row of totals: distinct volunteers and projects
# over every group, not a sum. `{months}`, `{days}` and `{org}` add the scope's conditions.
RECORDS_SQL = """
WITH rows AS (
    SELECT m.organisation_id, m.project_id, m.member_id, {month} AS day, m.records,
           m.minutes, m.checkin_minutes, m.manual_minutes
      FROM {rollup} m
     WHERE m.book_code = :book{months}{org_m}
    UNION ALL
    SELECT r.organisation_id, r.project_id, r.member_id, r.service_day, 1, r.credited_minutes,
           CASE WHEN r.evidence = 'checkin' THEN r.credited_minutes ELSE 0 END,
           CASE WHEN r.evidence = 'manual' THEN r.credited_minutes ELSE 0 END
      FROM service_records r
     WHERE r.book_code = :book AND r.status = 'approved'{days}{org_r}
), per_member AS (
    SELECT {key} AS key, {label} AS label, r.member_id, r.project_id,
           sum(r.records) AS records,
           sum(r.minutes) AS minutes,
           sum(r.checkin_minutes) AS checkin_minutes,
           sum(r.manual_minutes) AS manual_minutes
      FROM rows r {joins}
     GROUP BY 1, 2, r.member_id, r.project_id
)
SELECT GROUPING(key) = 1 AS is_total, key, label,
       coalesce(sum(records), 0) AS records,
       coalesce(sum(minutes), 0) AS minutes,
       count(DISTINCT member_id) AS volunteers,
       coalesce(sum(checkin_minutes), 0) AS checkin_minutes,
       coalesce(sum(manual_minutes), 0) AS manual_minutes,
       count(DISTINCT project_id) AS projects
  FROM per_member
 GROUP BY GROUPING SETS ((key, label), ())
"""
NOWHERE = " AND false"


@dataclass(frozen=True, slots=True)
class _Split:
    """A period as whole months `[month_from, month_to)` (each bound optional; `None` for
    no whole month) and the day ranges of its partial months."""

    months: tuple[date | None, date | None] | None
    days: list[tuple[date, date]]


def _next_month(day: date) -> date:
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


def split_period(day_from: date | None, day_to: date | None) -> _Split:
    """The whole months of [`day_from`, `day_to`] (either optional) and the days around them."""
    month_from = None
    if day_from is not None:
        month_from = day_from if day_from.day == 1 else _next_month(day_from)
    month_to = None
    if day_to is not None:
        last_of_month = _next_month(day_to) == day_to + timedelta(days=1)
        month_to = _next_month(day_to) if last_of_month else day_to.replace(day=1)
    if month_from is not None and month_to is not None and month_from >= month_to:
        assert day_from is not None and day_to is not None
        return _Split(None, [(day_from, day_to)] if day_from <= day_to else [])
    days = []
    if day_from is not None and month_from is not None and day_from < month_from:
        days.append((day_from, month_from - timedelta(days=1)))
    if day_to is not None and month_to is not None and month_to <= day_to:
        days.append((month_to, day_to))
    return _Split((month_from, month_to), days)


NO_PERIOD = _Split((None, None), [])


def _group(row: Row[Any]) -> StatsGroup:
    minutes = int(row.minutes)
    return StatsGroup(
        key=row.key,
        label=row.label,
        records=int(row.records),
        minutes=minutes,
        hours=hours(minutes),
        volunteers=int(row.volunteers),
        checkin_minutes=int(row.checkin_minutes),
        manual_minutes=int(row.manual_minutes),
    )


def _totals(row: Row[Any]) -> StatsTotals:
    minutes = int(row.minutes)
    return StatsTotals(
        records=int(row.records),
        minutes=minutes,
        hours=hours(minutes),
        volunteers=int(row.volunteers),
        checkin_minutes=int(row.checkin_minutes),
        manual_minutes=int(row.manual_minutes),
        projects=int(row.projects),
    )


def _sorted(groups: list[StatsGroup], group_by: str) -> list[StatsGroup]:
    if group_by == "month":
        return sorted(groups, key=lambda g: g.key or "")
    # Most minutes first; ties by key, the group without a key last.
    return sorted(groups, key=lambda g: (-g.minutes, g.key is None, g.key or ""))


async def service_stats(
    session: AsyncSession, scope: Scope, group_by: GroupBy, timezone: str
) -> ServiceStats:
    """The statistics of certified service in `scope`, and the journal's figure for it."""
    await ledger.begin_book_aggregate(session, scope.book)
    grouping = GROUPINGS[group_by]
    params: dict[str, Any] = {"book": scope.book}
    split = split_period(scope.day_from, scope.day_to)
    months = NOWHERE
    if split.months is not None:
        months = ""
        month_from, month_to = split.months
        if month_from is not None:
            months += " AND m.month >= :month_from"
            params["month_from"] = month_from
        if month_to is not None:
            months += " AND m.month < :month_to"
            params["month_to"] = month_to
    days = NOWHERE
    if split.days:
        ranges = []
        for i, (first, last) in enumerate(split.days):
            ranges.append(f"r.service_day BETWEEN :first_{i} AND :last_{i}")
            params |= {f"first_{i}": first, f"last_{i}": last}
        days = f" AND ({' OR '.join(ranges)})"
    rollup, month = "service_record_months", "m.month"
    if split == NO_PERIOD and group_by != "month":
        rollup, month = "service_record_members", "CAST(NULL AS date)"
    org_m = org_r = ""
    if scope.organisation_id is not None:
        org_m = " AND m.organisation_id = CAST(:org AS uuid)"
        org_r = " AND r.organisation_id = CAST(:org AS uuid)"
        params["org"] = scope.organisation_id
    sql = RECORDS_SQL.format(
        key=grouping.key,
        label=grouping.label,
        joins=grouping.joins,
        rollup=rollup,
        month=month,
        months=months,
        days=days,
        org_m=org_m,
        org_r=org_r,
    )
    groups: list[StatsGroup] = []
    totals: StatsTotals | None = None
    for row in await session.execute(text(sql), params):
        if row.is_total:
            totals = _totals(row)
        else:
            groups.append(_group(row))
    # The empty grouping set yields its row of totals even when no record is in scope.
    assert totals is not None
    owner = "" if scope.organisation_id is None else org_owner(scope.organisation_id)
    credited, reversed_ = await credit_totals.credited_minutes(
        session, scope.book, owner, (scope.day_from, scope.day_to), timezone
    )
    return ServiceStats(
        book=scope.book,
        group_by=group_by,
        period_from=scope.day_from,
        period_to=scope.day_to,
        timezone=timezone,
        groups=_sorted(groups, group_by),
        totals=totals,
        ledger=LedgerFigures(
            service_credit_minutes=credited,
            reversed_minutes=reversed_,
            net_minutes=credited - reversed_,
            reconciled=credited - reversed_ == totals.minutes,
        ),
    )
