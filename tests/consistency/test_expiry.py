"""An expiry run fails or dies right after one of its postings: the journal holds only whole
expiries, each with its key, and the next run expires exactly what was left, with no other
repair (docs/exchange.md §11.2)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import asyncpg
import pytest

from app.exchange.accounts import member_account
from app.kit import faults
from tests.conftest import Api, ScratchDatabase
from tests.consistency.checks import all_problems
from tests.exchange.test_expiry import Scene, make_scene, year_of
from tests.test_cli import run

POINT = "expiry.run.posted"
AMOUNTS = [10, 20, 30, 40, 50]


async def _scene(api: Api) -> tuple[Scene, list[str], date]:
    """Five member accounts holding points that lapse on the day returned."""
    s = await make_scene(api, years=0)
    sessions = api.app.state.sessions
    accounts = [await member_account(sessions, s.book, uuid.uuid4(), "POINT") for _ in AMOUNTS]
    postings = [
        await s.post([(s.issuance, -n), (a, n)]) for n, a in zip(AMOUNTS, accounts, strict=True)
    ]
    return s, accounts, date(year_of(postings[-1]) + 1, 1, 1)


async def _whole(database: ScratchDatabase, s: Scene, head: int) -> int:
    """The checks find nothing, and the head moved by exactly the expiry entries posted (each
    a whole expiry); how many."""
    conn = await asyncpg.connect(database.app_url)
    try:
        async with conn.transaction(isolation="repeatable_read"):
            problems = await all_problems(conn)
            moved = await conn.fetchval("SELECT seq FROM book_heads WHERE book_code = $1", s.book)
            posted = await conn.fetchval(
                "SELECT count(*) FROM journal_entries WHERE book_code = $1 AND kind = 'expiry'",
                s.book,
            )
    finally:
        await conn.close()
    assert problems == []
    assert moved - head == posted
    return int(posted)


async def _finished(s: Scene, accounts: list[str], lapse: date) -> None:
    """The next run expires what was left: every account once, all of it, and no more."""
    await s.expire(lapse)
    assert [await s.posted(a) for a in accounts] == [0] * len(AMOUNTS)
    assert await s.posted(await s.expired_account()) == sum(AMOUNTS)
    assert len(await s.entries("expiry")) == len(AMOUNTS)
    assert (await s.expire(lapse))["entries_posted"] == 0


async def _head(s: Scene) -> int:
    return int((await s.api.client.get(f"/v1/books/{s.book}/head")).json()["seq"])


async def test_an_expiry_run_failing_after_a_posting_leaves_whole_expiries(
    api: Api, database: ScratchDatabase, armed: Any
) -> None:
    s, accounts, lapse = await _scene(api)
    head = await _head(s)
    armed(POINT)
    with pytest.raises(faults.InjectedFault):
        await s.expire(lapse)
    posted = await _whole(database, s, head)
    assert 1 <= posted <= len(AMOUNTS)
    faults.disarm(POINT)
    await _finished(s, accounts, lapse)
    await _whole(database, s, head)


@pytest.mark.slow
async def test_an_expiry_run_killed_after_a_posting_leaves_whole_expiries(
    api: Api, database: ScratchDatabase, cli_env: dict[str, str]
) -> None:
    s, accounts, lapse = await _scene(api)
    head = await _head(s)
    env = {**cli_env, "TIMEBANK_FAULT_POINTS": f"{POINT}=kill"}
    killed = await run(env, "expire", "--as-of", lapse.isoformat(), "--allow-future", "--yes")
    assert killed.returncode == -9, killed.stderr
    # Nobody repairs anything: only whole expiries, each with its key.
    posted = await _whole(database, s, head)
    assert 1 <= posted <= len(AMOUNTS)
    await _finished(s, accounts, lapse)
    await _whole(database, s, head)
