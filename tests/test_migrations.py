"""Migrations go up, down and up again on a real PostgreSQL."""

from __future__ import annotations

import asyncpg

from app import migrate as migrations
from tests.conftest import SETTINGS, ScratchDatabase


async def tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in rows}
    finally:
        await conn.close()


async def test_upgrade_downgrade_upgrade(database: ScratchDatabase) -> None:
    migrated = await tables(database.owner_url)
    assert {"journal_entries", "journal_legs", "accounts", "books"} <= migrated
    await migrations.run_alembic(database.owner_url, SETTINGS.app_role, "downgrade", "base")
    assert await tables(database.owner_url) == {"alembic_version"}
    await migrations.upgrade(database.owner_url, SETTINGS.app_role)
    assert await tables(database.owner_url) == migrated
    await migrations.upgrade(database.owner_url, SETTINGS.app_role)  # idempotent
