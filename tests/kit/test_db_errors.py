"""A transaction PostgreSQL rolls back for a concurrent one's sake is 503, not 500."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from app.kit.db_errors import database_refusal, retryable_conflict
from app.kit.problems import ServiceUnavailable
from tests.conftest import ScratchDatabase


async def _deadlock(url: str) -> BaseException:
    """Two transactions locking two rows in opposite orders: the error PostgreSQL gives the
    one it rolls back."""
    first, second = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        for conn in (first, second):
            await conn.execute("BEGIN")
        # Advisory locks: no table needed, and PostgreSQL's deadlock detector sees them.
        await first.execute("SELECT pg_advisory_xact_lock(1)")
        await second.execute("SELECT pg_advisory_xact_lock(2)")
        outcomes = await asyncio.gather(
            first.execute("SELECT pg_advisory_xact_lock(2)"),
            second.execute("SELECT pg_advisory_xact_lock(1)"),
            return_exceptions=True,
        )
    finally:
        for conn in (first, second):
            await conn.close()
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 1, outcomes
    return errors[0]


async def test_a_deadlock_is_503_and_not_a_refusal(database: ScratchDatabase) -> None:
    error = await _deadlock(database.app_url)
    assert isinstance(error, asyncpg.exceptions.DeadlockDetectedError)
    wrapped = DBAPIError("SELECT ...", {}, error)  # as SQLAlchemy raises it
    for exc in (error, wrapped):
        answer = retryable_conflict(exc)
        assert isinstance(answer, ServiceUnavailable) and answer.status == 503
        assert "deadlock" in answer.detail and answer.headers["Retry-After"]
        assert database_refusal(exc) is None


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.UniqueViolationError("u"),
        asyncpg.exceptions.InternalServerError("x"),
        RuntimeError("not the database"),
    ],
)
def test_other_errors_are_not_retryable_conflicts(error: BaseException) -> None:
    assert retryable_conflict(error) is None


def test_a_serialization_failure_is_503() -> None:
    answer = retryable_conflict(asyncpg.exceptions.SerializationError("could not serialize"))
    assert answer is not None and "serialization failure" in answer.detail
