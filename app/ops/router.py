"""Operational routes: liveness, readiness and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import text
from sqlalchemy.engine import Connection
from starlette.responses import Response

from app import metrics
from app.errors import ServiceUnavailable
from app.ops.migrations import current_revision, head_revision

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"content": {"application/problem+json": {}}}})
async def readyz(request: Request) -> dict[str, Any]:
    """The database answers and its schema is at the newest migration."""
    try:
        async with request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

            def _revision(sync_conn: Connection) -> str | None:
                return current_revision(sync_conn)

            revision = await conn.run_sync(_revision)
    except Exception as exc:
        raise ServiceUnavailable(f"database unreachable: {type(exc).__name__}") from None
    head = head_revision()
    if revision != head:
        raise ServiceUnavailable(f"database at migration {revision}, code expects {head}")
    return {"status": "ready", "migration": revision}


@router.get("/metrics", response_class=Response)
async def prometheus_metrics() -> Response:
    """Prometheus exposition: requests, latencies, postings, batch sizes."""
    payload, content_type = metrics.render()
    return Response(payload, media_type=content_type)
