"""Connecting through a multi-host URL: the first host that takes the connection and suits
`target_session_attrs`, each host with a timeout of its own, and a connection given up when
its server's machine stops answering. Against the tests' own server, listed after hosts that
refuse or never answer."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.db import make_engine, make_sessionmaker
from app.kit import pg_pool
from app.kit.outages import is_outage
from app.kit.pg_url import PgUrl
from tests.conftest import ScratchDatabase
from tests.e2e.test_two_servers import free_port


def _server_host(url: str) -> str:
    """The tests' server as one host of a URL's host list (its socket directory, quoted, for
    the embedded server)."""
    parts = PgUrl.parse(url)
    if parts.hostlist:
        return parts.hostlist
    socket_dir = parts.param("host")
    assert socket_dir is not None
    port = parts.param("port")
    return quote(socket_dir, safe="") + (f":{port}" if port else "")


def _listed(url: str, before: list[str], query: str = "") -> str:
    """`url` with `before` listed ahead of its own server."""
    parts = PgUrl.parse(url)
    hostlist = ",".join([*before, _server_host(url)])
    kept = [(k, v) for k, v in parts.query if k not in ("host", "port")]
    extra = [(name, value) for name, _, value in (p.partition("=") for p in query.split("&") if p)]
    return parts.with_(hostlist=hostlist, query=kept + extra).text()


@pytest.fixture
def silent_host() -> Iterator[str]:
    """A host:port whose kernel takes connections that no one ever answers, as a machine
    that stopped (or a frozen server) looks to a client."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        yield f"127.0.0.1:{listener.getsockname()[1]}"


async def _user(conn: Any) -> str:
    return str(await conn.fetchval("SELECT current_user"))


async def test_a_refused_host_is_passed_for_the_next(database: ScratchDatabase) -> None:
    url = _listed(database.app_url, [f"127.0.0.1:{free_port()}"])
    conn = await pg_pool.connect(url)
    try:
        assert await _user(conn) == "timebank_app"
    finally:
        await conn.close()


async def test_each_host_has_a_timeout_of_its_own(
    database: ScratchDatabase, silent_host: str
) -> None:
    url = _listed(database.app_url, [silent_host])
    conn = await pg_pool.connect(url, host_timeout_s=0.5)
    try:
        assert await _user(conn) == "timebank_app"
    finally:
        await conn.close()
    # Why: asyncpg's own timeout covers every host, and the silent one takes it all.
    with pytest.raises(TimeoutError):
        await asyncpg.connect(url, timeout=1.0)


async def test_no_host_of_the_wanted_kind_is_an_outage(database: ScratchDatabase) -> None:
    # The tests' server is a primary: listed twice, with a standby wanted, as during a
    # failover before the standby is promoted (seen from the other side).
    url = _listed(
        database.app_url, [_server_host(database.app_url)], "target_session_attrs=standby"
    )
    with pytest.raises(asyncpg.TargetServerAttributeNotMatched) as caught:
        await pg_pool.connect(url)
    assert is_outage(caught.value)
    # A refusal says more than a host of the wrong kind: it is what is raised.
    url = _listed(database.app_url, [f"127.0.0.1:{free_port()}"], "target_session_attrs=standby")
    with pytest.raises(OSError):
        await pg_pool.connect(url)


async def test_prefer_standby_takes_a_primary_when_there_is_no_standby(
    database: ScratchDatabase,
) -> None:
    url = _listed(
        database.app_url, [f"127.0.0.1:{free_port()}"], "target_session_attrs=prefer-standby"
    )
    conn = await pg_pool.connect(url)
    try:
        assert await conn.fetchval("SELECT pg_is_in_recovery()") is False
    finally:
        await conn.close()


async def test_pools_and_engines_connect_through_a_multi_host_url(
    database: ScratchDatabase, silent_host: str
) -> None:
    url = _listed(database.app_url, [f"127.0.0.1:{free_port()}"], "target_session_attrs=read-write")
    pool = await pg_pool.create_pool(url, min_size=1, max_size=2)
    try:
        async with pg_pool.acquire(pool) as conn:
            assert await _user(conn) == "timebank_app"
    finally:
        await pg_pool.close_pool(pool)
    engine = make_engine(url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session:
            assert (await session.execute(text("SELECT current_user"))).scalar() == "timebank_app"
    finally:
        await engine.dispose()


async def test_a_pooled_connection_on_a_read_only_server_is_replaced(
    database: ScratchDatabase,
) -> None:
    """A server that became read-only under a pooled connection (25006): the request is an
    outage, and the engine's next connection is a new one (here: not read-only)."""
    engine = make_engine(database.app_url, pool_size=1)
    sessions = make_sessionmaker(engine)
    table = f"scratch_{uuid.uuid4().hex[:8]}"
    try:
        async with sessions() as session:
            # As if the server had turned read-only: this connection now is.
            await session.execute(text("SET SESSION default_transaction_read_only = on"))
            first = (await session.execute(text("SELECT pg_backend_pid()"))).scalar()
            await session.commit()
        with pytest.raises(DBAPIError) as caught:
            async with sessions() as session:
                await session.execute(text(f"CREATE TEMP TABLE {table} (x int)"))
        assert is_outage(caught.value)
        async with sessions() as session:
            assert (await session.execute(text("SELECT pg_backend_pid()"))).scalar() != first
            await session.execute(text(f"CREATE TEMP TABLE {table} (x int)"))
    finally:
        await engine.dispose()


async def test_an_outage_on_a_pooled_asyncpg_connection_replaces_the_pool(
    database: ScratchDatabase,
) -> None:
    pool = await pg_pool.create_pool(database.app_url, min_size=1, max_size=1)
    try:
        async with pg_pool.acquire(pool) as conn:
            first = await conn.fetchval("SELECT pg_backend_pid()")
        async with pg_pool.acquire(pool) as conn:  # kept while nothing fails
            assert await conn.fetchval("SELECT pg_backend_pid()") == first
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            async with pg_pool.acquire(pool) as conn:
                # As if the server had turned read-only under the pooled connection.
                await conn.execute("SET SESSION default_transaction_read_only = on")
                await conn.execute("CREATE TEMP TABLE scratch (x int)")
        async with pg_pool.acquire(pool) as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") != first
            await conn.execute("CREATE TEMP TABLE scratch (x int)")
    finally:
        await pg_pool.close_pool(pool)


class _Connected:
    """What `keep_alive` sees of an asyncpg connection: its transport's socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._transport = self
        self._sock = sock

    def get_extra_info(self, name: str) -> socket.socket | None:
        return self._sock if name == "socket" else None


def test_tcp_connections_give_up_on_a_server_that_stops_answering() -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as listener,
        socket.create_connection(listener.getsockname()) as sock,
    ):
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
        pg_pool.keep_alive(_Connected(sock))
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        tcp = socket.IPPROTO_TCP
        assert sock.getsockopt(tcp, socket.TCP_KEEPIDLE) == pg_pool.KEEPALIVE_IDLE_S
        assert sock.getsockopt(tcp, socket.TCP_KEEPINTVL) == pg_pool.KEEPALIVE_INTERVAL_S
        assert sock.getsockopt(tcp, socket.TCP_KEEPCNT) == pg_pool.KEEPALIVE_PROBES
        assert sock.getsockopt(tcp, socket.TCP_USER_TIMEOUT) == pg_pool.UNACKNOWLEDGED_S * 1000
