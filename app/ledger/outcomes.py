"""What a posting answers: its status and document (serialised once), the refusal it carries,
and the answers to a key used before (a replay, a reused key, a request still running).

`IdempotencyRef` names a request: who asked, with which Idempotency-Key, for what.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from app.kit.canonical_json import JsonObject, compact_json
from app.kit.problems import (
    IdempotencyInFlight,
    IdempotencyKeyReused,
    RecordedProblem,
    TimebankError,
)


@dataclass(frozen=True, slots=True)
class IdempotencyRef:
    """Who asked, with which key, for which request (hash of method, path and body)."""

    credential_id: str
    key: str
    request_hash: str


@dataclass(slots=True)
class Outcome:
    """The answer to a posting: an HTTP status and its JSON document, serialised once, and for a
    refusal made now, the refusal itself (a replayed one is known by its stored document)."""

    status_code: int
    payload: bytes
    replayed: bool = False
    error: TimebankError | None = field(default=None, compare=False)

    @property
    def body(self) -> JsonObject:
        """The answer as a JSON object."""
        document: dict[str, Any] = json.loads(self.payload)
        return document


def problem_outcome(error: TimebankError) -> Outcome:
    """The answer that refuses a posting with `error`."""
    return Outcome(error.status, compact_json(error.problem()), error=error)


def reused_key(idem: IdempotencyRef) -> TimebankError:
    """The refusal of a key already used for another request."""
    return IdempotencyKeyReused(f"Idempotency-Key {idem.key!r} was used for another request")


def replay(stored: tuple[str, int, bytes], idem: IdempotencyRef) -> Outcome:
    """The stored answer to the key, again (or the refusal of a key reused for another request)."""
    request_hash, status_code, payload = stored
    if request_hash != idem.request_hash:
        return problem_outcome(reused_key(idem))
    return Outcome(status_code, payload, replayed=True)


async def join_inflight(
    running: tuple[str, asyncio.Future[Outcome]], idem: IdempotencyRef, wait_s: float
) -> Outcome:
    request_hash, future = running
    if request_hash != idem.request_hash:
        return problem_outcome(reused_key(idem))
    try:
        async with asyncio.timeout(wait_s):
            first = await asyncio.shield(future)
    except TimeoutError:
        return problem_outcome(
            IdempotencyInFlight(f"the first request with key {idem.key!r} is still running")
        )
    return Outcome(first.status_code, first.payload, replayed=True)


def refusal(outcome: Outcome) -> TimebankError:
    """The ledger's refusal: the error itself, or for a replayed answer the stored problem."""
    if outcome.error is not None:
        return outcome.error
    return RecordedProblem(outcome.status_code, outcome.body)
