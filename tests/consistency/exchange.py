"""What the exchange actions' fault tests share: the consistency checks and the journal heads
read straight from the database, and a request to a server that a fault point kills."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx

from tests.conftest import ScratchDatabase
from tests.consistency import checks
from tests.consistency.faults import dies


async def problems_and_heads(database: ScratchDatabase, *books: str) -> tuple[list[str], list[int]]:
    """Every consistency check's disagreements, and the heads of `books` (in that order)."""
    conn = await asyncpg.connect(database.app_url)
    try:
        problems = await checks.all_problems(conn)
        heads = [
            await conn.fetchval("SELECT seq FROM book_heads WHERE book_code = $1", book)
            for book in books
        ]
    finally:
        await conn.close()
    return problems, heads


async def dies_posting(server: httpx.AsyncClient, token: str, path: str, body: Any) -> None:
    """POST `body` to a server that dies on the way (a fault point armed to kill it)."""
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
    await dies(server.post(path, json=body, headers=headers))
