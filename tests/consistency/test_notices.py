"""Administrative actions (organisations, credentials) fail or die between their rows and
their `notice.*` entry: both are there or neither, with no retry (docs/consistency.md)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import Api, ScratchDatabase
from tests.consistency import checks
from tests.consistency.faults import dies, fails, killed_at

POINT = "action.notices.posted"

# An action: (method, path, body) from the book and a spare credential's id; and what the
# action changes, read from the database, to show it was not done.
Request = tuple[str, str, dict[str, Any] | None]


async def _world(api: Api) -> dict[str, str]:
    book = await api.book()
    org = await api.client.post(
        "/v1/organisations",
        json={"book": book, "kind": "community", "name": "幸福里社区"},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert org.status_code == 201, org.text
    spare = await api.client.post(
        "/v1/credentials",
        json={"role": "auditor", "book": book},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert spare.status_code == 201, spare.text
    return {"book": book, "org": org.json()["id"], "credential": spare.json()["id"]}


ACTIONS: dict[str, Callable[[dict[str, str]], Request]] = {
    "create organisation": lambda w: (
        "POST",
        "/v1/organisations",
        {"book": w["book"], "kind": "volunteer_team", "name": "蓝天志愿队"},
    ),
    "change organisation": lambda w: (
        "PATCH",
        f"/v1/organisations/{w['org']}",
        {"name": "幸福里社区居委会"},
    ),
    "issue credential": lambda w: (
        "POST",
        "/v1/credentials",
        {"role": "auditor", "book": w["book"]},
    ),
    "revoke credential": lambda w: ("POST", f"/v1/credentials/{w['credential']}/revoke", None),
    "rotate credential": lambda w: ("POST", f"/v1/credentials/{w['credential']}/rotate", None),
}

# What the actions change, as one value: it must not move when an action is cut short.
SNAPSHOT = """
SELECT (SELECT seq FROM book_heads WHERE book_code = $1),
       (SELECT count(*) FROM organisations),
       (SELECT string_agg(name, ',' ORDER BY id) FROM organisations),
       (SELECT count(*) FROM credentials),
       (SELECT count(*) FROM credentials WHERE revoked_at IS NOT NULL)
"""


async def _state(database: ScratchDatabase, book: str) -> tuple[list[str], Any]:
    conn = await asyncpg.connect(database.app_url)
    try:
        return await checks.all_problems(conn), tuple(await conn.fetchrow(SNAPSHOT, book))
    finally:
        await conn.close()


def _send(client: httpx.AsyncClient, request: Request, token: str | None) -> Awaitable[Any]:
    method, path, body = request
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("action", list(ACTIONS))
async def test_an_action_failing_before_its_answer_leaves_neither(
    api: Api, database: ScratchDatabase, armed: Any, action: str
) -> None:
    world = await _world(api)
    request = ACTIONS[action](world)
    before = await _state(database, world["book"])
    assert before[0] == []
    armed(POINT)
    await fails(_send(api.client, request, None))
    assert await _state(database, world["book"]) == before


@pytest.mark.slow
@pytest.mark.parametrize("action", list(ACTIONS))
async def test_an_action_killed_before_its_answer_leaves_neither(
    api: Api, database: ScratchDatabase, cli_env: dict[str, str], tmp_path: Path, action: str
) -> None:
    world = await _world(api)
    request = ACTIONS[action](world)
    before = await _state(database, world["book"])
    async with killed_at(cli_env, tmp_path, POINT) as server:
        await dies(_send(server, request, api.token))
    assert await _state(database, world["book"]) == before
    # Done again from the start, it is done whole: the rows, the notice and the answer.
    done = await _send(api.client, request, None)
    assert done.status_code in (200, 201), done.text
    problems, after = await _state(database, world["book"])
    assert problems == []
    assert after[0] == before[1][0] + 1  # one notice entry
