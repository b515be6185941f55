"""Exchange statistics (no HTTP): exchanges, kiosk redemptions, gifts, transfers between books,
public-pool grants and expiries of one book, by month or day, read from the journal, and
reconciled with the exchange and kiosk features' own tables.

The flows come from the journal alone (journal_entries and journal_legs, plus each account's
`owner` to tell members' accounts apart): each entry of a flow's kind posted in the period,
its legs on members' accounts summed per asset and sign. A `hold.post` is a kiosk redemption
when the `hold` entry it resolves names one in its `meta.redemption`; a `reversal` counts when
the entry it reverses is of one of the flows. Entries are placed by their `posted_at` in the
service time zone. An organisation sees the entries that move one of its own accounts (its
pools, a kiosk site's redemption account).

The reconciliation compares the journal's exchanges with `exchange_quotes` executed and its
redemptions with `kiosk_redemptions` confirmed, over the whole scope, each asking its feature
(`app.exchange.exchanges.figures`, `app.kiosk.figures`): this module sits above both.
Everything is read in one REPEATABLE READ, read-only snapshot.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.exchange.exchanges import figures as exchange_figures
from app.exchange.exchanges.service import KIND_EXCHANGE
from app.exchange.expiry.service import KIND_EXPIRY
from app.exchange.gifts.service import KIND_GIFT
from app.exchange.public_pool.service import KIND_GRANT
from app.exchange.recognition.transfers import KIND_IN, KIND_OUT
from app.identity.authorization import org_owner
from app.kiosk import figures as kiosk_figures
from app.kit.periods import period_condition
from app.ledger import service as ledger
from app.ledger.journal import KIND_HOLD, KIND_HOLD_POST, KIND_REVERSAL
from app.statements.flows_schemas import (
    ExchangeReconciliation,
    ExchangeStats,
    FlowFigures,
    FlowGroupBy,
    FlowPeriod,
    FlowReconciliation,
    Flows,
    RecordedExchanges,
    RecordedRedemptions,
    RedemptionReconciliation,
)

# The flows whose entries are of one kind each, by the field that shows them.
KIND_FLOWS = {
    KIND_EXCHANGE: "exchange",
    KIND_GIFT: "gift",
    KIND_OUT: "recognition_out",
    KIND_IN: "recognition_in",
    KIND_GRANT: "public_pool_grant",
    KIND_EXPIRY: "expiry",
}
REDEMPTION, REVERSAL = "kiosk_redemption", "reversal"
# Fixed SQL fragments, chosen by `group_by` (never built from input).
PERIOD_KEYS: dict[FlowGroupBy, str] = {
    "month": "to_char(timezone(CAST(:tz AS text), c.posted_at), 'YYYY-MM')",
    "day": "to_char(timezone(CAST(:tz AS text), c.posted_at), 'YYYY-MM-DD')",
}

# An entry belongs to the period of its posting.
PERIOD_COLUMN = "e.posted_at"

# The entries of the flows' kinds in scope; for a hold.post (or a reversal of one), the hold it
# resolved, whose meta says whether a kiosk redemption placed it; for a reversal, what it
# reversed (in the same book, as every reversal). Only the holds joined have their bodies
# parsed. Then per period and flow, and per period, flow and asset, with the same for the
# whole scope: the entries, and their legs on members' and other accounts by sign.
FLOWS_SQL = """
WITH entries AS (
    SELECT e.seq, e.posted_at, e.kind, e.reverses, e.resolves_hold
      FROM journal_entries e
     WHERE e.book_code = :book AND e.kind = ANY(CAST(:kinds AS text[])){organisation}{period}
), classified AS (
    SELECT c.seq, {period_key} AS period,
           CASE
             WHEN c.kind = :hold_post THEN
               CASE WHEN {redeems} THEN CAST(:redemption AS text) END
             WHEN c.kind = :reversal THEN
               CASE WHEN o.kind = ANY(CAST(:flow_kinds AS text[]))
                      OR (o.kind = :hold_post AND {redeems}) THEN CAST(:reversal AS text) END
             ELSE c.kind
           END AS flow
      FROM entries c
      LEFT JOIN LATERAL (
          SELECT o.kind, o.resolves_hold FROM journal_entries o
           WHERE c.kind = :reversal AND o.tx_id = c.reverses AND o.book_code = :book OFFSET 0
      ) o ON true
      LEFT JOIN LATERAL (
          SELECT h.body FROM journal_entries h
           WHERE h.tx_id = coalesce(c.resolves_hold, o.resolves_hold)
             AND h.book_code = :book AND h.kind = :hold OFFSET 0
      ) h ON true
)
SELECT GROUPING(k.period) = 1 AS is_total, GROUPING(l.asset) = 1 AS is_count,
       k.period, k.flow, l.asset,
       count(DISTINCT k.seq) AS entries,
       coalesce(sum(-l.amount) FILTER (WHERE l.amount < 0 AND a.owner LIKE 'member:%'), 0)
           AS members_gave,
       coalesce(sum(l.amount) FILTER (WHERE l.amount > 0 AND a.owner LIKE 'member:%'), 0)
           AS members_received,
       coalesce(sum(-l.amount) FILTER (WHERE l.amount < 0 AND a.owner NOT LIKE 'member:%'), 0)
           AS others_gave
  FROM classified k{legs}
 WHERE k.flow IS NOT NULL
 GROUP BY GROUPING SETS ((k.period, k.flow), (k.period, k.flow, l.asset), (k.flow),
                         (k.flow, l.asset))
"""
REDEEMS = "(CAST(convert_from(h.body, 'UTF8') AS json) #>> '{meta,redemption}') IS NOT NULL"
IN_ORGANISATION = """
       AND EXISTS (SELECT 1 FROM journal_legs l
                    WHERE l.book_code = :book AND l.seq = e.seq
                      AND l.account_id = ANY(CAST(:accounts AS uuid[])) OFFSET 0)"""


@dataclass(frozen=True, slots=True)
class Scope:
    """What is counted: one book, optionally only what moves one organisation's accounts, and
    service days from `day_from` to `day_to` (inclusive, each optional)."""

    book: str
    organisation_id: uuid.UUID | None = None
    day_from: date | None = None
    day_to: date | None = None


@dataclass
class _Flow:
    count: int = 0
    gave: Counter[str] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)
    others_gave: Counter[str] = field(default_factory=Counter)

    def figures(self) -> FlowFigures:
        return FlowFigures(
            count=self.count,
            members_gave=_amounts(self.gave),
            members_received=_amounts(self.received),
        )


def _amounts(counter: Counter[str]) -> dict[str, int]:
    return {asset: amount for asset, amount in sorted(counter.items()) if amount}


def _flows(found: dict[str, _Flow]) -> Flows:
    names = [*KIND_FLOWS.values(), REDEMPTION, REVERSAL]
    return Flows(**{name: found.get(name, _Flow()).figures() for name in names})


def bounds(scope: Scope, zone: ZoneInfo) -> tuple[datetime | None, datetime | None]:
    """The instants the scope's first day starts and the day after its last starts."""
    start = None if scope.day_from is None else datetime.combine(scope.day_from, time(0), zone)
    end = None
    if scope.day_to is not None:
        end = datetime.combine(scope.day_to + timedelta(days=1), time(0), zone)
    return start, end


async def exchange_stats(
    session: AsyncSession, scope: Scope, group_by: FlowGroupBy, timezone: str
) -> ExchangeStats:
    """The flows of `scope` by period, their totals, and the reconciliation."""
    await ledger.begin_book_aggregate(session, scope.book)
    start, end = bounds(scope, ZoneInfo(timezone))
    periods, totals = await _read_flows(session, scope, group_by, timezone, (start, end))
    recorded_exchanges = await exchange_figures.executed(
        session, scope.book, start, end, scope.organisation_id
    )
    recorded_redemptions = await kiosk_figures.confirmed(
        session, scope.book, start, end, scope.organisation_id
    )
    exchanges = totals.get("exchange", _Flow())
    redemptions = totals.get(REDEMPTION, _Flow())
    journal_exchanges = RecordedExchanges(
        count=exchanges.count, given=_amounts(exchanges.gave), paid=_amounts(exchanges.others_gave)
    )
    table_exchanges = RecordedExchanges(
        count=recorded_exchanges.count,
        given=recorded_exchanges.given,
        paid=recorded_exchanges.paid,
    )
    journal_redemptions = RecordedRedemptions(
        count=redemptions.count, spent=_amounts(redemptions.gave)
    )
    table_redemptions = RecordedRedemptions(
        count=recorded_redemptions.count, spent=recorded_redemptions.spent
    )
    exchange_side = ExchangeReconciliation(
        journal=journal_exchanges,
        recorded=table_exchanges,
        unmatched=recorded_exchanges.unmatched,
        reconciled=journal_exchanges == table_exchanges and not recorded_exchanges.unmatched,
    )
    redemption_side = RedemptionReconciliation(
        journal=journal_redemptions,
        recorded=table_redemptions,
        unmatched=recorded_redemptions.unmatched,
        reconciled=journal_redemptions == table_redemptions and not recorded_redemptions.unmatched,
    )
    return ExchangeStats(
        book=scope.book,
        organisation_id=scope.organisation_id,
        group_by=group_by,
        period_from=scope.day_from,
        period_to=scope.day_to,
        timezone=timezone,
        periods=[FlowPeriod(period=key, flows=_flows(periods[key])) for key in sorted(periods)],
        totals=_flows(totals),
        reconciliation=FlowReconciliation(
            exchanges=exchange_side,
            kiosk_redemptions=redemption_side,
            reconciled=exchange_side.reconciled and redemption_side.reconciled,
        ),
    )


async def _read_flows(
    session: AsyncSession,
    scope: Scope,
    group_by: FlowGroupBy,
    timezone: str,
    span: tuple[datetime | None, datetime | None],
) -> tuple[dict[str, dict[str, _Flow]], dict[str, _Flow]]:
    """The journal's flows per period and over the scope."""
    flow_kinds = list(KIND_FLOWS)
    params: dict[str, Any] = {
        "book": scope.book,
        "tz": timezone,
        "kinds": [*flow_kinds, KIND_HOLD_POST, KIND_REVERSAL],
        "flow_kinds": flow_kinds,
        "hold": KIND_HOLD,
        "hold_post": KIND_HOLD_POST,
        "reversal": KIND_REVERSAL,
        "redemption": REDEMPTION,
    }
    organisation = ""
    if scope.organisation_id is not None:
        organisation = IN_ORGANISATION
        params["accounts"] = await _organisation_accounts(session, scope)
    start, end = span
    period = period_condition(PERIOD_COLUMN, start, end, params)
    sql = FLOWS_SQL.format(
        organisation=organisation,
        period=period,
        period_key=PERIOD_KEYS[group_by],
        redeems=REDEEMS,
        legs=ledger.legs_with_accounts("k.seq"),
    )
    periods: dict[str, dict[str, _Flow]] = defaultdict(dict)
    totals: dict[str, _Flow] = {}
    for row in await session.execute(text(sql), params):
        into = totals if row.is_total else periods[row.period]
        _add(into.setdefault(KIND_FLOWS.get(row.flow, row.flow), _Flow()), row)
    return periods, totals


def _add(flow: _Flow, row: Row[Any]) -> None:
    if row.is_count:
        flow.count = int(row.entries)
        return
    flow.gave[row.asset] += int(row.members_gave)
    flow.received[row.asset] += int(row.members_received)
    flow.others_gave[row.asset] += int(row.others_gave)


async def _organisation_accounts(session: AsyncSession, scope: Scope) -> list[uuid.UUID]:
    found = await session.scalars(
        text("SELECT id FROM accounts WHERE book_code = :book AND owner = :owner"),
        {"book": scope.book, "owner": org_owner(str(scope.organisation_id))},
    )
    return list(found)
