"""Exports and statistics read from a standby (TIMEBANK_READ_DATABASE_URL) while it is within
TIMEBANK_READ_MAX_LAG_S of the primary, from the primary otherwise, and the answer says which.

The standby is made to differ from the primary by pausing its replay: a book created on the
primary then is on the standby's disk but not in what it shows, so which server answered can
be seen in the answer itself, not only in its header.
"""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from app import migrate as migrations
from app.db import bootstrap_embedded
from app.http.reads import LAG_HEADER, LAG_SQL, SOURCE_HEADER
from app.kit import pg_pool
from tests.conftest import SETTINGS, Api, running_api
from tests.e2e.replicas import ReplicaPair

# The bound the service starts with, loose enough that a standby that has replayed all it
# received is within it on a busy machine; a tight one is set to see it passed.
LOOSE_S = 30.0
TIGHT_S = 1.0


def _source(response: httpx.Response) -> tuple[str, float]:
    assert response.status_code == 200, response.text
    return response.headers[SOURCE_HEADER], float(response.headers[LAG_HEADER])


async def _standby_lag(pair: ReplicaPair) -> float:
    """The standby's lag as the service measures it."""
    return float(await asyncio.to_thread(pair.standby.sql, LAG_SQL))


async def _reads(api: Api, book: str, to_seq: int = 1) -> list[httpx.Response]:
    """The three kinds of read a standby may serve."""
    return [
        await api.client.get("/v1/stats/exchange", params={"book": book}),
        await api.client.get("/v1/stats/service", params={"book": book}),
        await api.client.get(f"/v1/books/{book}/export", params={"to_seq": to_seq}),
    ]


@pytest.mark.slow  # two PostgreSQL servers
async def test_reads_come_from_a_fresh_standby_else_from_the_primary(pair: ReplicaPair) -> None:
    await bootstrap_embedded(pair.primary.url(), SETTINGS)
    primary = pair.primary.url(SETTINGS.owner_role, SETTINGS.database_name)
    await migrations.upgrade(primary, SETTINGS.app_role)
    settings = SETTINGS.model_copy(
        update={
            "database_url": pair.url(SETTINGS.app_role, SETTINGS.database_name),
            "read_database_url": pair.standby.url(SETTINGS.app_role, SETTINGS.database_name),
            "read_max_lag_s": LOOSE_S,
        }
    )
    async with running_api(settings) as api:
        book = await api.book()
        issuance, member = await api.funded(book, 5)
        assert (await api.transfer(book, issuance, member, 2)).status_code == 201
        # The export's checkpoint is signed (on the primary) before the standby catches up.
        signed = await api.client.post(f"/v1/books/{book}/checkpoints")
        assert signed.status_code == 201, signed.text
        size = signed.json()["tree_size"]
        await asyncio.to_thread(pair.wait_replayed)

        # Fresh: the standby serves.
        fresh = await _reads(api, book, size)
        for response in fresh:
            source, lag = _source(response)
            assert source == "standby" and 0 <= lag <= LOOSE_S

        # Behind: replay paused, a book made since is not on the standby. Within the bound,
        # the standby answers, without it.
        await asyncio.to_thread(pair.pause_replay)
        late = await api.book()
        missing = await api.client.get("/v1/stats/exchange", params={"book": late})
        assert missing.status_code == 404, missing.text
        # Past the bound (the last transaction it replayed ages), the primary answers.
        standby = api.app.state.standby
        standby.max_lag_s = TIGHT_S
        async with asyncio.timeout(30):
            while await _standby_lag(pair) <= TIGHT_S:  # noqa: ASYNC110 - another server
                await asyncio.sleep(0.1)
        assert _source(await api.client.get("/v1/stats/exchange", params={"book": late})) == (
            "primary",
            0.0,
        )
        behind = await _reads(api, book, size)
        assert [_source(r) for r in behind] == [("primary", 0.0)] * 3
        # The same answers (the book did not move): the export byte for byte.
        assert [r.content for r in behind] == [r.content for r in fresh]

        # Caught up again: the standby serves, the late book included.
        standby.max_lag_s = LOOSE_S
        await asyncio.to_thread(pair.resume_replay)
        await asyncio.to_thread(pair.wait_replayed)
        caught_up = await api.client.get("/v1/stats/exchange", params={"book": late})
        assert _source(caught_up)[0] == "standby"

        # Unreachable: the primary serves, and the standby is passed over for a while.
        await asyncio.to_thread(pair.standby.stop)
        for _ in range(2):
            assert [_source(r) for r in await _reads(api, book, size)] == [("primary", 0.0)] * 3


async def test_without_a_standby_nothing_changes(api: Api) -> None:
    book = await api.book()
    await api.funded(book, 5)
    for response in await _reads(api, book):
        assert response.status_code == 200, response.text
        assert SOURCE_HEADER not in response.headers and LAG_HEADER not in response.headers


@pytest.mark.slow  # two PostgreSQL servers
async def test_tcp_connections_to_the_servers_keep_alive(pair: ReplicaPair) -> None:
    conn = await pg_pool.connect(pair.url("postgres", "postgres"))
    try:
        sock = conn._transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 15_000
    finally:
        await conn.close()
