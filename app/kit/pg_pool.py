"""asyncpg connections and pools: connecting to one of several hosts (a primary and its
standby), how long a connection may take, noticing a server whose machine died, and closing a
pool that cannot wait for ever.

asyncpg takes a multi-host URL itself, but its connect timeout covers all the hosts together:
a first host whose machine is gone (no refusal, no answer) uses it all, and the next host is
never tried. `connect` gives each host a timeout of its own, as libpq's `connect_timeout`
does, and keeps asyncpg's rules for `target_session_attrs`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import structlog

from app.kit.outages import is_outage
from app.kit.pg_url import PgUrl

log = structlog.get_logger("timebank.db")
# The longest a new connection may take, per host: a server that does not answer (frozen, or
# its host gone) is then an outage answered 503 (app/kit/outages.py), not a request left
# hanging, and the next host of a multi-host URL is tried.
CONNECT_TIMEOUT_S = 5.0
# A connection whose server's machine died without closing it (no reset: power, network) is
# given up after this long: keepalive probes while it waits for an answer, and a bound on
# data sent and never acknowledged. Otherwise a statement in flight (a batch's commit) waits
# on the dead server for as long as the kernel retransmits, about 15 minutes on Linux.
KEEPALIVE_IDLE_S = 5
KEEPALIVE_INTERVAL_S = 2
KEEPALIVE_PROBES = 3
UNACKNOWLEDGED_S = 15
# What a host that does not suit the URL (refused, not answering, not a primary when a
# primary is wanted, starting up) raises: the next one is tried.
_NEXT_HOST: tuple[type[BaseException], ...] = (
    OSError,  # TimeoutError included
    asyncpg.PostgresError,
    asyncpg.TargetServerAttributeNotMatched,
)


async def connect(
    dsn: str, *, host_timeout_s: float = CONNECT_TIMEOUT_S, **kwargs: Any
) -> asyncpg.Connection:
    """An asyncpg connection to the first host of `dsn` that takes it within
    `host_timeout_s` and has the URL's `target_session_attrs` (asyncpg's keywords otherwise)."""
    url = PgUrl.parse(dsn)
    if len(url.hosts) <= 1:
        conn = await asyncpg.connect(dsn, timeout=host_timeout_s, **kwargs)
    else:
        conn = await _first_host(dsn, url, host_timeout_s, kwargs)
    keep_alive(conn)
    return conn


async def _first_host(
    dsn: str, url: PgUrl, host_timeout_s: float, kwargs: dict[str, Any]
) -> asyncpg.Connection:
    wanted = kwargs.pop("target_session_attrs", None) or url.param("target_session_attrs")
    # prefer-standby: any standby, else any host at all (asyncpg's meaning too).
    rounds = ["standby", "any"] if wanted == "prefer-standby" else [wanted or "any"]
    failure: BaseException | None = None
    for attrs in rounds:
        for host in url.hosts:
            try:
                return await asyncpg.connect(
                    dsn,
                    host=host.host,
                    port=host.port,
                    target_session_attrs=attrs,
                    timeout=host_timeout_s,
                    **kwargs,
                )
            except _NEXT_HOST as exc:
                # A host that answered but is not wanted says less than one that failed.
                if failure is None or not isinstance(exc, asyncpg.TargetServerAttributeNotMatched):
                    failure = exc
    assert failure is not None
    raise failure


def keep_alive(conn: Any) -> None:
    """Give a TCP connection up once its server stops answering (see KEEPALIVE_IDLE_S);
    nothing for a Unix socket, or where the system lacks the options."""
    transport = getattr(conn, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    options = [
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPIDLE", None), KEEPALIVE_IDLE_S),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPINTVL", None), KEEPALIVE_INTERVAL_S),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPCNT", None), KEEPALIVE_PROBES),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", None), UNACKNOWLEDGED_S * 1000),
    ]
    for level, option, value in options:
        if option is not None:
            sock.setsockopt(level, option, value)


async def create_pool(dsn: str, *, min_size: int, max_size: int) -> asyncpg.Pool:
    """An asyncpg pool whose connections are made by `connect` (each host its own timeout).
    It replaces a connection the server closed when it is next acquired."""
    return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, connect=connect)


@asynccontextmanager
async def acquire(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection of `pool`, given back after. A database outage on it also expires the
    pool's other connections: they are replaced when next acquired, so that none stays on a
    server that turned read-only (asyncpg replaces only those the server closed)."""
    async with pool.acquire() as conn:
        try:
            yield conn
        except Exception as exc:
            if is_outage(exc):
                await pool.expire_connections()
            raise


async def close_pool(pool: asyncpg.Pool, timeout_s: float = 10.0) -> None:
    """Close an asyncpg pool, waiting at most `timeout_s` for its connections to be given
    back (one stuck on a database that stopped answering would make `close` wait for ever),
    then terminate what is left."""
    try:
        async with asyncio.timeout(timeout_s):
            await pool.close()
    except TimeoutError:
        log.warning("db.pool_close_timed_out", timeout_s=timeout_s)
        pool.terminate()
