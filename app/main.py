"""The application: create_app() wires settings, database, ledger and routes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

import app.identity.errors  # noqa: F401 - registers the identity problem types
from app.audit.router import router as audit_router
from app.audit.service import AuditLog
from app.config import Settings, get_settings
from app.console import PAGE_DIRECTORY as CONSOLE_PAGE
from app.console.router import router as console_router
from app.contract import document_problems
from app.db import resolve_database
from app.exchange.assets.router import router as exchange_assets_router
from app.exchange.balances.router import router as member_balances_router
from app.exchange.component_names import keep_published_names
from app.exchange.exchanges.router import router as exchanges_router
from app.exchange.gifts.router import router as gifts_router
from app.exchange.policies.router import router as asset_policies_router
from app.exchange.pools.router import router as pools_router
from app.exchange.public_pool.router import router as public_pool_router
from app.exchange.recognition.router import router as recognition_router
from app.exchange.rules.router import router as exchange_rules_router
from app.http.actions import purge_action_outcomes
from app.http.context import MISSING_KEY
from app.http.middleware import EdgeMiddleware
from app.http.posting_request import add_body_schemas
from app.http.probes import router as ops_router
from app.http.reads import Standby
from app.http.responses import json_response
from app.identity.authentication import Authenticator
from app.identity.console_sessions import purge_sessions as purge_console_sessions
from app.identity.credentials_router import router as credentials_router
from app.identity.enrolment import purge_enrolment_codes
from app.identity.members_router import router as members_router
from app.identity.organisations_router import router as organisations_router
from app.identity.personal_key import personal_data_cipher
from app.kiosk import PAGE_DIRECTORY as KIOSK_PAGE
from app.kiosk import redemptions as kiosk_redemptions
from app.kiosk.pairing import purge_pairing_codes
from app.kiosk.router import router as kiosk_router
from app.kit.clock import utc_now
from app.kit.db_errors import database_refusal, retryable_conflict
from app.kit.faults import arm_from_spec
from app.kit.heap import settle_heap
from app.kit.outages import log_failure, unavailable
from app.kit.personal_text import PERSONAL_DATA_CODE, PersonalDataInText
from app.kit.problems import (
    InternalError,
    MalformedJson,
    MethodNotAllowed,
    MissingIdempotencyKey,
    NotFound,
    TimebankError,
    ValidationFailed,
)
from app.ledger import folds
from app.ledger import service as ledger_service
from app.ledger_api.router import router as ledger_router
from app.logging import configure_logging
from app.runtime import Runtime
from app.statements import flow_totals
from app.statements.flows_router import router as exchange_stats_router
from app.statements.router import router as member_history_router
from app.volunteering import credit_totals
from app.volunteering.needs_router import router as needs_router
from app.volunteering.projects_router import router as projects_router
from app.volunteering.proofs_router import router as proofs_router
from app.volunteering.records_router import router as records_router
from app.volunteering.stats_router import router as stats_router

log = structlog.get_logger("timebank")
PURGE_EVERY_S = 60.0


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] if parts[0] == "body" else parts
    return "/".join(parts)


def _error_fields(error: Any) -> list[str]:
    """The field paths of one validation error: a `JournalMeta` names each string inside."""
    field = _field_path(tuple(error.get("loc", ())))
    inner = (
        (error.get("ctx") or {}).get("paths") if error.get("type") == PERSONAL_DATA_CODE else None
    )
    if not inner:
        return [field]
    return [f"{field}/{path}" if path and field else path or field for path in inner]


async def _timebank_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, TimebankError):
        raise exc
    return json_response(exc.status, exc.problem(request.url.path), exc.headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, RequestValidationError):
        raise exc
    if any(
        tuple(e.get("loc", ())) == ("header", "idempotency-key") and e.get("type") == "missing"
        for e in exc.errors()
    ):
        # The key is checked before the parameters and body (docs/errors.md): a request
        # without it is refused whatever else is wrong with it.
        missing = MissingIdempotencyKey(MISSING_KEY)
        return json_response(missing.status, missing.problem(request.url.path))
    fields = [
        {"field": field, "message": e.get("msg", ""), "code": e.get("type", "")}
        for e in exc.errors()
        for field in _error_fields(e)
    ]
    if fields and all(f["code"] == PERSONAL_DATA_CODE for f in fields):
        personal = PersonalDataInText(
            "free text bound for the journal looks like it holds a phone or resident ID number",
            errors=fields,
        )
        return json_response(personal.status, personal.problem(request.url.path))
    if any(f["code"] == "json_invalid" for f in fields):
        bad = MalformedJson("the body is not valid JSON", errors=fields)
        return json_response(bad.status, bad.problem(request.url.path))
    error = ValidationFailed("the request has invalid fields", errors=fields)
    return json_response(error.status, error.problem(request.url.path))


async def _http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, StarletteHTTPException):
        raise exc
    error: TimebankError
    if exc.status_code == 404:
        error = NotFound(f"no route {request.url.path}")
    elif exc.status_code == 405:
        error = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
    else:
        error = TimebankError(str(exc.detail))
        return json_response(exc.status_code, {**error.problem(), "status": exc.status_code})
    return json_response(error.status, error.problem(request.url.path))


async def _database_error(request: Request, exc: Exception) -> Response:
    """A database error: 409/422 when the request's values caused it (one mapping,
    app/kit/db_errors.py); otherwise raised on, for EdgeMiddleware to answer (503 for an outage,
    500 for a bug)."""
    error = database_refusal(exc)
    if error is None:
        raise exc
    # The route's template, not the path (docs/operations.md: no raw paths in the log).
    route = getattr(request.scope.get("route"), "path", "unmatched")
    log.warning("http.database_refusal", route=route, error=type(exc).__name__)
    return json_response(error.status, error.problem(request.url.path))


def _unexpected_error(exc: Exception) -> TimebankError:
    """The problem answering what no other handler took: 503 `unavailable` for a database
    outage or a transaction rolled back for a concurrent one's sake, else 500 `internal`.
    EdgeMiddleware answers with it and logs the request's one line (with the traceback of a
    500), keeping the connection open."""
    return (
        unavailable(exc)
        or retryable_conflict(exc)
        or InternalError("an unexpected error occurred; it has been logged")
    )


# The statistics' running totals, folded from the journal by every process.
STATISTICS_FOLDS = [flow_totals.FOLD, credit_totals.FOLD]


async def fold_statistics(app: FastAPI, interval_s: float) -> None:
    """Fold new entries into the statistics' running totals, in a task of its own: catching up
    a large book takes seconds, which must not hold up the sweep of holds."""
    settings: Settings = app.state.settings
    while True:
        await asyncio.sleep(interval_s)
        try:
            await folds.fold_behind(app.state.sessions, STATISTICS_FOLDS, settings.service_timezone)
        except Exception as exc:
            log_failure(log, "statistics.fold_failed", exc)


async def sweep_holds(app: FastAPI, interval_s: float) -> None:
    """Void expired holds and forget old idempotency keys, in the background; reconnect the
    authenticator's listener when it is lost.

    Every process sweeps; the sequencer lets each hold resolve once whoever asks. Each step
    fails on its own (a database restart) and is tried again at the next interval.
    """
    settings: Settings = app.state.settings
    last_purge = 0.0

    async def expire_holds() -> None:
        async with app.state.sessions() as session:
            await ledger_service.expire_holds(session, app.state.sequencer)

    async def expire_redemptions() -> None:
        await kiosk_redemptions.expire_due(
            app.state.sessions, app.state.sequencer, app.state.clock()
        )

    async def purge() -> None:
        async with app.state.sessions() as session, session.begin():
            await ledger_service.purge_idempotency_keys(session, settings.idempotency_retention_s)
            await purge_action_outcomes(session, settings.idempotency_retention_s)
            await purge_enrolment_codes(session, settings.idempotency_retention_s)
            await purge_pairing_codes(session, settings.idempotency_retention_s)
            await purge_console_sessions(session, settings.idempotency_retention_s)

    while True:
        await asyncio.sleep(interval_s)
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("identity.listen_failed", app.state.authenticator.keep_listening),
            ("ledger.hold_sweep_failed", expire_holds),
            ("kiosk.expiry_failed", expire_redemptions),
        ]
        if time.monotonic() - last_purge > PURGE_EVERY_S:
            last_purge = time.monotonic()
            steps.append(("ledger.purge_failed", purge))
        for event, step in steps:
            try:
                await step()
            except Exception as exc:
                log_failure(log, event, exc)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    app_url = settings.database_url or (await asyncio.to_thread(resolve_database, settings)).app
    runtime = await Runtime.open(app_url, settings)
    app.state.database_url = app_url
    app.state.engine = runtime.engine
    app.state.sessions = runtime.sessions
    app.state.sequencer = runtime.sequencer
    authenticator = Authenticator(
        runtime.sessions,
        settings.credential_cache_ttl_s,
        settings.rate_limit_per_s,
        settings.rate_limit_burst,
    )
    await authenticator.listen(app_url)
    app.state.authenticator = authenticator
    app.state.personal_data = await asyncio.to_thread(personal_data_cipher, settings)
    audit = await AuditLog.open(app_url, settings)
    app.state.audit = audit
    app.state.metrics_refresh = audit.refresh_gauges
    standby = app.state.standby = (
        Standby(settings.read_database_url, settings.read_max_lag_s)
        if settings.read_database_url
        else None
    )
    if settings.receipts:
        app.state.receipt_hook = audit.receipts.attach
    tasks = [
        asyncio.create_task(sweep_holds(app, settings.hold_sweep_interval_s)),
        asyncio.create_task(fold_statistics(app, settings.hold_sweep_interval_s)),
    ]
    if settings.follow_log_in_server:
        tasks.append(asyncio.create_task(audit.follow(settings.log_follow_interval_s)))
    settle_heap()
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if standby is not None:
            await standby.close()
        await audit.close()
        await authenticator.close()
        await runtime.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI application; the database is opened in its lifespan."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)
    app = FastAPI(
        title="Timebank Ledger",
        version="1.0.0",
        summary="Volunteer hours and charity points in an append-only, hash-chained, "
        "double-entry ledger.",
        lifespan=lifespan,
        # The service exports Prometheus metrics (/metrics) and no OpenTelemetry: FastAPI's
        # native telemetry would otherwise look up three global providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    arm_from_spec(settings.fault_points)
    # What the service rules take as now; tests set their own.
    app.state.clock = utc_now
    app.add_exception_handler(TimebankError, _timebank_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # Constraint and data errors that slip past the service's checks: 409/422, one mapping.
    for database_error in (DBAPIError, asyncpg.PostgresError):
        app.add_exception_handler(database_error, _database_error)
    # No handler for Exception: Starlette would run it in ServerErrorMiddleware, which
    # re-raises after answering (see EdgeMiddleware).
    app.add_middleware(
        EdgeMiddleware,
        max_body_bytes=settings.max_body_bytes,
        csv_uploads={"/v1/service-records/import": settings.max_import_bytes},
        on_error=_unexpected_error,
    )
    # The ledger's routes first: they take postings, and routes are matched in order.
    app.include_router(ledger_router)
    app.include_router(ops_router)
    app.include_router(members_router)
    app.include_router(member_history_router)
    app.include_router(member_balances_router)
    app.include_router(organisations_router)
    app.include_router(credentials_router)
    app.include_router(audit_router)
    app.include_router(needs_router)
    app.include_router(projects_router)
    app.include_router(records_router)
    app.include_router(proofs_router)
    app.include_router(stats_router)
    app.include_router(exchange_stats_router)
    app.include_router(exchange_assets_router)
    app.include_router(exchange_rules_router)
    app.include_router(exchanges_router)
    app.include_router(recognition_router)
    app.include_router(asset_policies_router)
    app.include_router(gifts_router)
    app.include_router(public_pool_router)
    app.include_router(pools_router)
    app.include_router(kiosk_router)
    app.include_router(console_router)
    # The kiosk's web page: static files, no build step (docs/kiosk.md).
    app.mount("/kiosk", StaticFiles(directory=KIOSK_PAGE, html=True), name="kiosk")
    app.mount("/console", StaticFiles(directory=CONSOLE_PAGE, html=True), name="console")
    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        # FastAPI does not see the bodies of the routes that read their request by hand.
        if app.openapi_schema is None:
            document = document_problems(generate_openapi(), app.routes)
            app.openapi_schema = keep_published_names(add_body_schemas(document))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
