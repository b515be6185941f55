"""The one mapping of database refusals that slip past the service's own checks to problems.

The service checks its input before it writes; a constraint or a value PostgreSQL refuses
anyway (a race the code did not foresee, a value outside a column's range) is the caller's
request that cannot be stored, not a fault of the service: 409 `conflict` for a unique or
exclusion violation (another row holds the value), 422 `validation` for a NOT NULL, foreign
key or CHECK violation and for a value of the wrong shape (SQLSTATE class 22: invalid text,
a number or a date out of range). A transaction PostgreSQL ended to resolve a conflict with a
concurrent one (a deadlock, a serialization failure) is neither: nothing was written, and the
same request may succeed at once, so it is 503 `unavailable` with Retry-After
(`retryable_conflict`). Anything else stays an internal error.
"""

from __future__ import annotations

from typing import Final

from app.kit.problems import (
    Conflict,
    ServiceUnavailable,
    TimebankError,
    ValidationFailed,
    causes,
)

# SQLSTATEs (PostgreSQL appendix A) answered as a conflict with another row.
_CONFLICTS: Final = {"23505": "unique", "23P01": "exclusion"}
_INVALID: Final = {
    "23502": "not_null",
    "23503": "foreign_key",
    "23514": "check",
    "23000": "integrity",
    "23001": "restrict",
}


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of the PostgreSQL error behind `exc` (SQLAlchemy wraps asyncpg's)."""
    for error in causes(exc):
        state = getattr(error, "sqlstate", None)
        if isinstance(state, str) and len(state) == 5:
            return state
    return None


# SQLSTATEs (class 40) of a transaction rolled back for a concurrent one's sake.
_RETRYABLE: Final = {"40001": "a serialization failure", "40P01": "a deadlock"}


def retryable_conflict(exc: BaseException) -> ServiceUnavailable | None:
    """503 with Retry-After when PostgreSQL rolled the request's transaction back to resolve a
    conflict with a concurrent one (nothing of it was written); None otherwise."""
    what = _RETRYABLE.get(_sqlstate(exc) or "")
    if what is None:
        return None
    return ServiceUnavailable(
        f"the database rolled the request back to resolve {what} with a concurrent request; "
        "retry, with the same Idempotency-Key"
    )


def database_refusal(exc: BaseException) -> TimebankError | None:
    """The problem for a database error the caller's input caused, or None (an internal
    error: the connection, a bug)."""
    state = _sqlstate(exc)
    if state is None:
        return None
    if state in _CONFLICTS:
        name = _constraint(exc)
        return Conflict(
            f"the request conflicts with a stored row ({_CONFLICTS[state]} violation"
            + (f" of {name})" if name else ")")
        )
    if state in _INVALID or state.startswith("22"):
        code = _INVALID.get(state, "invalid_value")
        return ValidationFailed(
            "the database refused a value of the request",
            errors=[{"field": "", "message": f"{code} ({state})", "code": code}],
        )
    return None


def _constraint(exc: BaseException) -> str | None:
    for error in causes(exc):
        name = getattr(error, "constraint_name", None)
        if isinstance(name, str):
            return name
    return None
