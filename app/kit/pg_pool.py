"""asyncpg connections and pools: how long a connection may take, and closing a pool that
cannot wait for ever."""

from __future__ import annotations

import asyncio

import asyncpg
import structlog

log = structlog.get_logger("timebank.db")
# The longest a new connection may take: a server that does not answer (frozen, or its host
# gone) is then an outage answered 503 (app/kit/outages.py), not a request left hanging.
CONNECT_TIMEOUT_S = 5.0


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
