"""Reads a standby may serve: the export and the statistics.

With `TIMEBANK_READ_DATABASE_URL`, such a read goes to that standby when its replay is at most
`TIMEBANK_READ_MAX_LAG_S` behind the primary, measured first inside the read's own
transaction, so that the snapshot it reads is no older than measured. Behind, unreachable or
failing (an outage, a query cancelled by replay), the standby is passed over and the primary
serves the read; a streamed export is decided before it starts, so a failure of the standby
mid-stream ends that answer (the next export passes the standby over). The answer says which
in `Timebank-Read-Source` and how old it may be in `Timebank-Read-Lag`. Without the setting
nothing changes: the primary serves, and the answers carry neither header.

The lag is the time since the last transaction the standby replayed committed, or 0 when it
has replayed all it received. With synchronous replication to that standby, what it received
is everything the primary has committed (a commit is visible on the primary only once the
standby holds it), so 0 means current. An asynchronous standby cut off from its primary would
also say 0: point the setting at the synchronous standby. Clocks are assumed in step.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Final, TypeVar

import asyncpg
import structlog
from fastapi import Depends, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import make_engine, make_sessionmaker
from app.http.context import SessionDep
from app.kit.outages import describe, is_outage
from app.kit.problems import causes
from app.ledger.service import driver_connection

log = structlog.get_logger("timebank.reads")
T = TypeVar("T")
U = TypeVar("U")
SOURCE_HEADER: Final = "Timebank-Read-Source"
LAG_HEADER: Final = "Timebank-Read-Lag"
# After the standby failed a read (unreachable, down), reads skip it this long rather than
# each wait for it to fail again (a host that does not answer costs a connect timeout).
PASS_OVER_S = 5.0
# Its pool: reads are few and long, the primary keeps the rest.
POOL_SIZE = 4
# How far behind its primary the server is, in seconds (see the docstring); NULL: unknown (it
# has replayed no transaction since it started). A server not in recovery is a primary: 0.
LAG_SQL = """
SELECT CASE
    WHEN NOT pg_is_in_recovery() THEN 0
    WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
    ELSE greatest(0, extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()))
END::float8
"""
# A query on a standby cancelled because replay had to remove what it read.
_RECOVERY_CONFLICT = "40001"

READ_HEADERS: Final[dict[str, Any]] = {
    SOURCE_HEADER: {
        "description": "Where the answer was read: `standby` (TIMEBANK_READ_DATABASE_URL, "
        "within TIMEBANK_READ_MAX_LAG_S of the primary) or `primary`. Absent when the service "
        "has no standby to read from.",
        "schema": {"type": "string", "enum": ["standby", "primary"]},
    },
    LAG_HEADER: {
        "description": "How far behind the primary the answer may be, in seconds (0 from the "
        "primary, or from a standby that had replayed all it received). Absent with no "
        "standby.",
        "schema": {"type": "number", "minimum": 0},
    },
}


@dataclass(frozen=True, slots=True)
class ReadSource:
    """Where a read was served, and how far behind the primary it may be (seconds)."""

    standby: bool
    lag_s: float

    def headers(self) -> dict[str, str]:
        """The answer's headers that say so."""
        return {
            SOURCE_HEADER: "standby" if self.standby else "primary",
            LAG_HEADER: f"{self.lag_s:.3f}",
        }


PRIMARY: Final = ReadSource(standby=False, lag_s=0.0)


async def replay_lag(session: AsyncSession) -> float | None:
    """The server's replay lag in seconds (0 for a primary), None when unknown."""
    lag = (await session.execute(text(LAG_SQL))).scalar_one()
    return None if lag is None else float(lag)


class Standby:
    """The standby of `TIMEBANK_READ_DATABASE_URL` in a server process."""

    def __init__(self, url: str, max_lag_s: float) -> None:
        self.max_lag_s = max_lag_s
        self.engine = make_engine(url, POOL_SIZE)
        self.sessions = make_sessionmaker(self.engine)
        self._passed_over_until = 0.0

    async def close(self) -> None:
        """Close its connections."""
        await self.engine.dispose()

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[tuple[AsyncSession, float | None]]:
        """A read-only, repeatable-read session on the standby, and its lag when the snapshot
        was taken (measuring it is the snapshot's first query)."""
        async with self.sessions() as session:
            await session.execute(
                text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            )
            yield session, await replay_lag(session)

    def usable(self) -> bool:
        """Not passed over after a recent failure."""
        return time.monotonic() >= self._passed_over_until

    def failed(self, exc: Exception) -> bool:
        """Whether `exc` is the standby's to give up on (an outage, a query cancelled by
        replay): logged, and for an outage the standby is passed over for a while."""
        conflict = any(getattr(e, "sqlstate", None) == _RECOVERY_CONFLICT for e in causes(exc))
        if not (conflict or is_outage(exc)):
            return False
        if not conflict:
            self._passed_over_until = time.monotonic() + PASS_OVER_S
        log.warning("reads.standby_failed", error=describe(exc))
        return True


class Reads:
    """A request's reads that the standby may serve, or else its own session."""

    def __init__(self, standby: Standby | None, primary: AsyncSession) -> None:
        self._standby = standby
        self._primary = primary

    async def run(self, read: Callable[[AsyncSession], Awaitable[T]]) -> tuple[T, dict[str, str]]:
        """`read` on the standby if it is within the bound, else on the request's session;
        returns its result and the headers that say where it was read (none without a
        standby). `read` only reads: a failure on the standby runs it again on the primary."""
        if self._standby is None:
            return await read(self._primary), {}

        async def on_standby(session: AsyncSession, lag: float) -> tuple[T, dict[str, str]]:
            return await read(session), ReadSource(True, lag).headers()

        found = await self._on_standby(on_standby)
        return found if found is not None else (await read(self._primary), PRIMARY.headers())

    async def choose(self, holds: Callable[[AsyncSession], Awaitable[bool]]) -> ReadSource | None:
        """For a read that runs later on a connection of its own (a streamed answer): the
        standby if it is within the bound and `holds` all the read needs, else the primary;
        None without a standby."""
        if self._standby is None:
            return None

        async def on_standby(session: AsyncSession, lag: float) -> ReadSource | None:
            return ReadSource(True, lag) if await holds(session) else None

        return await self._on_standby(on_standby) or PRIMARY

    async def _on_standby(
        self, use: Callable[[AsyncSession, float], Awaitable[U | None]]
    ) -> U | None:
        """`use` on a snapshot of the standby when it is usable and within the bound; None
        when it is not, or failed in a way that is its own (logged, see `Standby.failed`)."""
        standby = self._standby
        if standby is None or not standby.usable():
            return None
        try:
            async with standby.snapshot() as (session, lag):
                if lag is not None and lag <= standby.max_lag_s:
                    return await use(session, lag)
        except Exception as exc:
            if not standby.failed(exc):
                raise
        return None

    def connection(
        self,
        source: ReadSource | None,
        primary: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]],
    ) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """Where a chosen read runs: an asyncpg connection of the standby, or `primary()`."""
        if source is None or not source.standby or self._standby is None:
            return primary()
        return _standby_connection(self._standby)


@asynccontextmanager
async def _standby_connection(standby: Standby) -> AsyncIterator[asyncpg.Connection]:
    """The standby's connection for a streamed read. The stream has begun, so a failure cannot
    fall back to the primary: it ends the answer, and is noted (`Standby.failed`), so that the
    next reads pass an unreachable standby over."""
    async with standby.sessions() as session:
        try:
            yield await driver_connection(session)
        except Exception as exc:
            standby.failed(exc)
            raise


async def get_reads(request: Request, session: SessionDep) -> Reads:
    """The request's reads (the process's standby, if any, and the request's session)."""
    standby: Standby | None = request.app.state.standby
    return Reads(standby, session)


ReadsDep = Annotated[Reads, Depends(get_reads)]
