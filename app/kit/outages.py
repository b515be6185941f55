"""Database outages: the one mapping from failures that mean PostgreSQL cannot be reached now
(restarting, shut down, frozen, out of connections, the socket gone, a primary dead and its
standby not yet promoted) to 503 `unavailable`.

The exception handler (app/main.py), the ledger's sequencer and the background tasks all ask
here, so that a restart is answered alike wherever it surfaces, and never as 500 `internal`.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy import exc as sa

from app.kit.problems import ServiceUnavailable, causes

# Failures of PostgreSQL's side that a retry can outlive: shutdown, restart, crash recovery,
# cancelled by an operator or a timeout (class 57); the connection itself (class 08); out of
# connections, memory or disk (class 53). During a failover: every host of a multi-host URL
# answered but none is a primary yet (asyncpg's own error, not a SQLSTATE), or a transaction
# found its server read-only (25006: a standby, or a primary turned one).
_SERVER_SIDE: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.TargetServerAttributeNotMatched,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)
# What asyncpg says when a connection (or its pool) was closed under it; its other interface
# errors ("another operation is in progress", ...) are the caller's bugs, not outages (the
# sequencer's private connections excepted: see `_unusable` there).
_CLOSED_MARKERS = ("connection is closed", "connection was closed", "pool is closing")


def _is_outage(error: BaseException) -> bool:
    if isinstance(error, sa.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, sa.TimeoutError | sa.DisconnectionError):  # pool exhausted, or gone
        return True
    if isinstance(error, _SERVER_SIDE):
        return True
    if isinstance(error, asyncpg.InterfaceError):
        message = str(error)
        return any(marker in message for marker in _CLOSED_MARKERS)
    # Connecting or talking to the server: refused, reset, a missing socket, a timeout
    # (TimeoutError is an OSError). Requests do no other I/O that could raise one.
    return isinstance(error, OSError)


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) means the database cannot be reached now."""
    return any(_is_outage(error) for error in causes(exc))


def describe(exc: BaseException) -> str:
    """What failed, for a log line: each error's type along the chain and the last one's
    message (the driver's or the socket's, which carry no statement or parameters)."""
    chain = list(causes(exc))
    return " <- ".join(type(e).__name__ for e in chain) + f": {chain[-1]}"


def unavailable(exc: BaseException) -> ServiceUnavailable | None:
    """The 503 problem (with Retry-After) that answers `exc`, if it is a database outage."""
    if isinstance(exc, ServiceUnavailable):
        return exc
    if not is_outage(exc):
        return None
    return ServiceUnavailable(
        f"the database cannot be reached now ({type(exc).__name__}); retry later, with the same "
        "Idempotency-Key"
    )


def log_failure(logger: Any, event: str, exc: BaseException, **fields: Any) -> None:
    """Log a failure that is not answered to anyone (a background task, a batch): an outage as
    a warning naming what failed (it may repeat every second until the database is back),
    anything else as an error with its traceback."""
    if is_outage(exc):
        # `outage`: one query finds every line of a database outage, whichever task logged it.
        logger.warning(event, error=describe(exc), outage=True, **fields)
    else:
        logger.error(event, exc_info=exc, **fields)
