"""HTTP route of service statistics (the figures a civil-affairs bureau reports), with the
journal's own figure for the same scope beside them.

Admins and auditors: a whole book; an organisation: the service it certified. Mini-programs
and kiosks: 403.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.config import Settings
from app.http.reads import READ_HEADERS, ReadsDep
from app.http.responses import json_response
from app.identity.dependencies import allow
from app.volunteering import stats
from app.volunteering.stats_query import StatsQueryDep
from app.volunteering.stats_schemas import GroupBy, ServiceStats

router = APIRouter(prefix="/v1", tags=["service statistics"])

READERS = ("admin", "auditor", "org")


@router.get(
    "/stats/service",
    response_model=ServiceStats,
    responses={200: {"headers": READ_HEADERS}},
    dependencies=[allow(READERS, "read service statistics")],
)
async def service_stats(
    reads: ReadsDep,
    request: Request,
    query: StatsQueryDep,
    group_by: GroupBy = "category",
) -> Response:
    """Certified service (approved records) by category, organisation, community or month,
    with totals, and `ledger`: the same minutes recomputed from the journal (service credits
    less their reversals), which must equal `totals.minutes`. Organisations see only the
    service they certified. Read from the standby when the service has one within its lag
    bound (`Timebank-Read-Source`, `Timebank-Read-Lag`)."""
    settings: Settings = request.app.state.settings
    scope = stats.Scope(query.book, query.organisation_id, query.day_from, query.day_to)
    figures, read_from = await reads.run(
        lambda session: stats.service_stats(session, scope, group_by, settings.service_timezone)
    )
    return json_response(200, figures.model_dump(mode="json", by_alias=True), read_from)
