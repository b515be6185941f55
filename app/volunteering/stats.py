"""Service statistics: certified service (approved records) grouped by category, organisation,
community or month, and the same figure recomputed from the journal so the two can be compared.

The records side counts `service_records` with status `approved`. The ledger side reads only
the journal (plus the accounts' owners, and each record's `service_day` to place an entry in
the period): the HOUR minutes that `service_credit` entries credited to member accounts or, as
overflow beyond a member's storage cap, to the book's public time pool, less what `reversal`
entries of those transactions took back from the same accounts. A correct service keeps the
two equal (an approval posts exactly its record's minutes, a correction reverses them and
marks the record `reversed`), so `reconciled` false means the table and the ledger disagree.

Both sides are SQL aggregates read in one REPEATABLE READ snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.exchange.accounts import PUBLIC_POOL, book_owner
from app.identity.authorization import org_owner
from app.ledger import service as ledger
from app.ledger.journal import KIND_REVERSAL, KIND_SERVICE_CREDIT
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


# Fixed SQL fragments, chosen by `group_by` (never built from input).
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
    "month": _Grouping(
        "", "to_char(r.service_day, 'YYYY-MM')", "to_char(r.service_day, 'YYYY-MM')"
    ),
}

# Per group (and member and project, so that the distinct counts below sort few rows), then
# one row per group and, from the empty grouping set, one row of totals: distinct volunteers
# and projects over every group, not a sum. `{where}` adds the scope's conditions.
RECORDS_SQL = """
WITH per_member AS (
    SELECT {key} AS key, {label} AS label, r.member_id, r.project_id,
           count(*) AS records,
           sum(r.credited_minutes) AS minutes,
           coalesce(sum(r.credited_minutes) FILTER (WHERE r.evidence = 'checkin'), 0)
               AS checkin_minutes,
           coalesce(sum(r.credited_minutes) FILTER (WHERE r.evidence = 'manual'), 0)
               AS manual_minutes
      FROM service_records r {joins}
     WHERE r.book_code = :book AND r.status = 'approved'{where}
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
RECORDS_IN_ORGANISATION = " AND r.organisation_id = CAST(:org AS uuid)"
RECORDS_FROM = " AND r.service_day >= :day_from"
RECORDS_TO = " AND r.service_day <= :day_to"

# The journal's side. Credited minutes are the HOUR legs of service_credit entries on member
# accounts and on the book's public time pool (where a storage cap sends what a credit would
# carry beyond it: the record's minutes are certified all the same); reversals of those
# entries take back their own such legs. An organisation's scope
# is the entries that debit one of its accounts (each entry's legs looked up by its key). With a
# period, each entry is placed on the service day of the record its meta.record names (in the
# same book, whatever its status); an entry naming no record of the book (or naming it other
# than as a lowercase UUID, as approval writes it) is placed on the local day it was posted,
# so it still counts. Only then are entries' bodies parsed: once each, in a hash join on the
# text of the id, which needs no cast that a malformed reference could make fail.
LEDGER_SQL = """
WITH {credits}
SELECT
  (SELECT coalesce(sum(l.amount), 0)
     FROM credits c{credit_legs}
    WHERE a.asset = 'HOUR' AND {credited_account}) AS credited,
  (SELECT coalesce(-sum(l.amount), 0)
     FROM journal_entries v{reversal_legs}
    WHERE v.book_code = :book AND v.kind = :reversal_kind
      AND v.reverses IN (SELECT tx_id FROM credits)
      AND a.asset = 'HOUR' AND {credited_account}) AS reversed
"""
# A member's account, or the book's public time pool (overflow of a storage cap).
CREDITED_ACCOUNT = (
    "(a.owner LIKE 'member:%' OR (a.owner = :book_owner AND a.meta ->> 'purpose' = :pool))"
)
LEDGER_CREDITS = """credits AS (
    SELECT e.seq, e.tx_id FROM journal_entries e
     WHERE e.book_code = :book AND e.kind = :credit_kind{organisation}
)"""
LEDGER_PLACED_CREDITS = """credits AS (
    SELECT e.seq, e.tx_id
      FROM journal_entries e
      LEFT JOIN service_records r
        ON CAST(r.id AS text) COLLATE "C" =
           CAST(convert_from(e.body, 'UTF8') AS json) #>> '{{meta,record}}'
       AND r.book_code = :book
     WHERE e.book_code = :book AND e.kind = :credit_kind{organisation}{period}
)"""
LEDGER_DAY = "coalesce(r.service_day, CAST(timezone(CAST(:tz AS text), e.posted_at) AS date))"
LEDGER_FROM = f" AND {LEDGER_DAY} >= :day_from"
LEDGER_TO = f" AND {LEDGER_DAY} <= :day_to"
LEDGER_IN_ORGANISATION = """
       AND EXISTS (
           SELECT 1 FROM journal_legs l
            WHERE l.book_code = :book AND l.seq = e.seq AND l.amount < 0
              AND l.account_id = ANY(ARRAY(
                  SELECT id FROM accounts WHERE book_code = :book AND owner = :org_owner))
           OFFSET 0)"""


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
    where = ""
    if scope.organisation_id is not None:
        where += RECORDS_IN_ORGANISATION
        params["org"] = scope.organisation_id
    if scope.day_from is not None:
        where += RECORDS_FROM
        params["day_from"] = scope.day_from
    if scope.day_to is not None:
        where += RECORDS_TO
        params["day_to"] = scope.day_to
    sql = RECORDS_SQL.format(
        key=grouping.key, label=grouping.label, joins=grouping.joins, where=where
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
    credited, reversed_ = await _ledger_minutes(session, scope, timezone)
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


async def _ledger_minutes(session: AsyncSession, scope: Scope, timezone: str) -> tuple[int, int]:
    """What the journal says was credited as service in `scope`: service_credit minutes to
    members (and, beyond their storage caps, to the public time pool), and what reversals of
    them took back."""
    params: dict[str, Any] = {
        "book": scope.book,
        "credit_kind": KIND_SERVICE_CREDIT,
        "reversal_kind": KIND_REVERSAL,
        "book_owner": book_owner(scope.book),
        "pool": PUBLIC_POOL,
    }
    organisation = period = ""
    if scope.organisation_id is not None:
        organisation = LEDGER_IN_ORGANISATION
        params["org_owner"] = org_owner(scope.organisation_id)
    if scope.day_from is not None:
        period += LEDGER_FROM
        params["day_from"] = scope.day_from
    if scope.day_to is not None:
        period += LEDGER_TO
        params["day_to"] = scope.day_to
    if period:
        params["tz"] = timezone
        credits = LEDGER_PLACED_CREDITS.format(organisation=organisation, period=period)
    else:
        credits = LEDGER_CREDITS.format(organisation=organisation)
    sql = LEDGER_SQL.format(
        credits=credits,
        credit_legs=ledger.legs_with_accounts("c.seq"),
        reversal_legs=ledger.legs_with_accounts("v.seq"),
        credited_account=CREDITED_ACCOUNT,
    )
    row = (await session.execute(text(sql), params)).one()
    return int(row.credited), int(row.reversed)
