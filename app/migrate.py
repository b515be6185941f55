"""Apply Alembic migrations as the owner role, and tell whether the schema is current."""

from __future__ import annotations

import functools
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from app.db import make_engine

ROOT = Path(__file__).resolve().parents[1]
MIGRATION_LOCK = 7_294_101  # pg_advisory_xact_lock key: one migrator at a time


def alembic_config(owner_url: str, app_role: str) -> Config:
    """The Alembic config for this project, bound to a database and runtime role."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["owner_url"] = owner_url
    config.attributes["app_role"] = app_role
    return config


@functools.cache
def head_revision() -> str | None:
    """The newest migration in the code (read once: the files do not change under a running
    process, and /readyz asks on every probe)."""
    script = ScriptDirectory(str(ROOT / "migrations"))
    return script.get_current_head()


async def database_revision(conn: asyncpg.Connection) -> str | None:
    """The revision the database is at, read on a plain asyncpg connection (None: none)."""
    try:
        rows = await conn.fetch("SELECT version_num FROM alembic_version")
    except asyncpg.UndefinedTableError:
        return None
    return str(rows[0]["version_num"]) if len(rows) == 1 else None


async def run_alembic(owner_url: str, app_role: str, action: str, revision: str) -> None:
    """`upgrade` or `downgrade` to `revision` in one transaction, under an advisory lock."""
    config = alembic_config(owner_url, app_role)
    engine = make_engine(owner_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))

            def _apply(sync_conn: Connection) -> None:
                config.attributes["connection"] = sync_conn
                getattr(command, action)(config, revision)

            await conn.run_sync(_apply)
    finally:
        await engine.dispose()


async def upgrade(owner_url: str, app_role: str) -> None:
    """Bring the schema to the newest revision."""
    await run_alembic(owner_url, app_role, "upgrade", "head")
