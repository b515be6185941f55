"""Operational routes: liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

import structlog
from fastapi import APIRouter, Request
from starlette.responses import Response

from app import metrics
from app.kit.canonical_json import JsonObject
from app.kit.outages import log_failure
from app.kit.pg_pool import connect
from app.kit.pg_url import hosts
from app.kit.problems import ServiceUnavailable
from app.migrate import database_revision, head_revision

router = APIRouter(tags=["operations"])
log = structlog.get_logger("timebank.http")
# /readyz answers 503 when the database has not answered within this (a probe's own timeout
# is commonly 1-2 s longer).
READY_TIMEOUT_S = 1.5


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"content": {"application/problem+json": {}}}})
async def readyz(request: Request) -> JsonObject:
    """The database takes a new connection within 1.5 s and is at the newest migration."""
    try:
        revision = await _database_revision(request.app.state.database_url)
    except Exception as exc:
        raise ServiceUnavailable(f"database unreachable: {type(exc).__name__}") from None
    head = head_revision()
    if revision != head:
        raise ServiceUnavailable(f"database at migration {revision}, code expects {head}")
    return {"status": "ready", "migration": revision}


async def _database_revision(url: str) -> str | None:
    # A connection of its own, not the pool's: connecting is part of what is checked (a frozen
    # postmaster accepts the socket and never answers), and a connection that timed out is
    # dropped at once (terminate) rather than closed or rolled back on a server that may
    # never answer. Probes are seconds apart; a connection costs a few milliseconds.
    # Each host of a multi-host URL gets its share of the time: one that does not answer (its
    # machine gone) must leave the others theirs.
    per_host = READY_TIMEOUT_S / max(1, len(hosts(url)))
    async with asyncio.timeout(READY_TIMEOUT_S):
        conn = await connect(url, host_timeout_s=per_host)
        try:
            revision = await database_revision(conn)
        except BaseException:
            conn.terminate()
            raise
        await conn.close()
    return revision


# The gauges read from the database when scraped get this long; past it, or with the database
# down, the exposition goes out with their previous values.
REFRESH_TIMEOUT_S = 1.0


@router.get("/metrics", response_class=Response)
async def prometheus_metrics(request: Request) -> Response:
    """Prometheus exposition: requests, latencies, postings, batch sizes, witnesses."""
    refresh = getattr(request.app.state, "metrics_refresh", None)
    if refresh is not None:
        try:
            async with asyncio.timeout(REFRESH_TIMEOUT_S):
                await refresh()
        except Exception as exc:  # the metrics of a process whose database is down still count
            log_failure(log, "metrics.refresh_failed", exc)
    payload, content_type = metrics.render()
    return Response(payload, media_type=content_type)
