"""Exchange statistics (no HTTP): exchanges, kiosk redemptions, gifts, transfers between books,
public-pool grants and expiries of one book, by month or day, read from the journal, and
reconciled with the exchange and kiosk features' own tables.

The flows come from the journal alone, as running totals per day (`app.statements.flow_totals`
says how each entry is classified and placed): each entry of a flow's kind posted in the
period, its legs on members' accounts summed per asset and sign. An organisation sees the
entries that move one of its own accounts (its pools, a kiosk site's redemption account).

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

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from app.exchange.exchanges import figures as exchange_figures
from app.identity.authorization import org_owner
from app.kiosk import figures as kiosk_figures
from app.ledger import service as ledger
from app.statements import flow_totals
from app.statements.flow_totals import KIND_FLOWS, REDEMPTION, REVERSAL
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
    periods, totals = await _read_flows(session, scope, group_by, timezone)
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
    session: AsyncSession, scope: Scope, group_by: FlowGroupBy, timezone: str
) -> tuple[dict[str, dict[str, _Flow]], dict[str, _Flow]]:
    """The journal's flows per period and over the scope."""
    owner = "" if scope.organisation_id is None else org_owner(str(scope.organisation_id))
    rows = await flow_totals.read_rows(
        session, scope.book, owner, (scope.day_from, scope.day_to), group_by, timezone
    )
    periods: dict[str, dict[str, _Flow]] = defaultdict(dict)
    totals: dict[str, _Flow] = {}
    for row in rows:
        into = totals if row.is_total else periods[row.period]
        _add(into.setdefault(KIND_FLOWS.get(row.flow, row.flow), _Flow()), row)
    return periods, totals


def _add(flow: _Flow, row: Row[Any]) -> None:
    if row.is_count:
        flow.count += int(row.entries)
        return
    flow.gave[row.asset] += int(row.members_gave)
    flow.received[row.asset] += int(row.members_received)
    flow.others_gave[row.asset] += int(row.others_gave)
