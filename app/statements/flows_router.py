"""HTTP route of the exchange statistics: what members exchanged, redeemed, gave, moved between
books, were granted and lost to expiry, by month or day, from the journal, reconciled with the
exchange and kiosk features' own tables.

Admins and auditors: a whole book; an organisation: the entries that move its own accounts.
Mini-programs and kiosks: 403.
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.config import Settings
from app.http.reads import READ_HEADERS, ReadsDep
from app.http.responses import json_response
from app.identity.dependencies import allow
from app.statements import flows
from app.statements.flows_schemas import ExchangeStats, FlowGroupBy
from app.volunteering.stats_query import StatsQueryDep

router = APIRouter(prefix="/v1", tags=["exchange statistics"])

READERS = ("admin", "auditor", "org")


@router.get(
    "/stats/exchange",
    response_model=ExchangeStats,
    responses={200: {"headers": READ_HEADERS}},
    dependencies=[allow(READERS, "read exchange statistics")],
)
async def exchange_stats(
    reads: ReadsDep,
    request: Request,
    query: StatsQueryDep,
    group_by: FlowGroupBy = "month",
) -> Response:
    """Exchanges (HOUR given, POINT received), kiosk redemptions confirmed (points spent),
    gifts, transfers between books (out and in), public-pool grants, expiries, and reversals of
    any of them, per month or day of `TIMEBANK_SERVICE_TIMEZONE`: each flow's entries and
    the units that left and reached members' accounts per asset, read from the journal.
    `reconciliation` sets the journal's exchanges beside `exchange_quotes` executed and its
    redemptions beside `kiosk_redemptions` confirmed, over the whole scope. An organisation
    sees only the entries that move one of its own accounts (a charity's pools, a kiosk site's
    redemption account): gifts, transfers, grants and expiries move none, so they are 0.
    Read from the standby when the service has one within its lag bound
    (`Timebank-Read-Source`, `Timebank-Read-Lag`)."""
    settings: Settings = request.app.state.settings
    scope = flows.Scope(
        query.book,
        UUID(query.organisation_id) if query.organisation_id else None,
        query.day_from,
        query.day_to,
    )
    figures, read_from = await reads.run(
        lambda session: flows.exchange_stats(session, scope, group_by, settings.service_timezone)
    )
    return json_response(200, figures.model_dump(mode="json", by_alias=True), read_from)
