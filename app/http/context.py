"""The request context every route shares: its database session, and for a writing request
the caller, its Idempotency-Key (with a hash of the request) and the sequencer."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Protocol

import orjson
from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import session_scope
from app.http.caller import Caller, CallerDep, authenticate_request
from app.kit.canonical_json import canonical_bytes
from app.kit.problems import MissingIdempotencyKey, ValidationFailed
from app.ledger.outcomes import IdempotencyRef
from app.ledger.sequencer import Sequencer

IDEMPOTENCY_KEY_DESCRIPTION = (
    "1-255 printable ASCII characters; a retry with the same key and body gets the first answer"
)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, committed once when the handler succeeds."""
    # A context manager, not a generator looped over: `async for` leaves its generator
    # suspended when the handler's error is thrown in, and its rollback then ran whenever the
    # event loop finalised it, holding the connection until then (and logging "Task exception
    # was never retrieved" when the connection had died).
    async with session_scope(request.app.state.sessions) as session:
        yield session


# "function": the session commits before the answer is sent, so a client never sees a 201 for
# what is not committed yet (or never will be). FastAPI's default ends it after the response.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


class RoleGate(Protocol):
    """A route's role check (identity's `Allowed`): refuses (403) a role that may never call it."""

    def check(self, caller: Caller) -> None: ...


@dataclass(frozen=True, slots=True)
class PostingContext:
    """Everything a posting route needs besides its body."""

    caller: Caller
    idem: IdempotencyRef
    sequencer: Sequencer
    # What an action runs its transaction on, and a posting its own checks (not every request
    # opens a session).
    sessions: async_sessionmaker[AsyncSession]


# Required: a request without it is refused before its parameters and body are looked at (400
# idempotency-key-missing, app/main.py), after the caller and its role.
IdempotencyKey = Annotated[str, Header(description=IDEMPOTENCY_KEY_DESCRIPTION)]
MISSING_KEY = "this request needs an Idempotency-Key header"


async def posting_context(
    request: Request, caller: CallerDep, idempotency_key: IdempotencyKey
) -> PostingContext:
    """The caller, its idempotency key with a hash of the request, and the sequencer."""
    return await context_of(request, caller, idempotency_key)


async def context_of(request: Request, caller: Caller, idempotency_key: str) -> PostingContext:
    """The posting context of an authenticated caller and the Idempotency-Key it sent."""
    # ASCII and printable: exactly 0x20-0x7E.
    if not (
        1 <= len(idempotency_key) <= 255
        and idempotency_key.isascii()
        and idempotency_key.isprintable()
    ):
        raise ValidationFailed(
            "Idempotency-Key must be 1-255 printable ASCII characters",
            errors=[
                {
                    "field": "header/Idempotency-Key",
                    "message": "1-255 printable ASCII characters",
                    "code": "idempotency_key_invalid",
                }
            ],
        )
    raw = await request.body()
    try:
        body = canonical_bytes(orjson.loads(raw)) if raw else b""
    except Exception:  # not JSON: the raw bytes identify the request
        body = raw
    digest = hashlib.sha256()
    digest.update(f"{request.method} {request.url.path}\n".encode())
    digest.update(body)
    idem = IdempotencyRef(caller.credential.id, idempotency_key, digest.hexdigest())
    return PostingContext(caller, idem, request.app.state.sequencer, request.app.state.sessions)


async def read_posting_context(request: Request, allowed: RoleGate) -> PostingContext:
    """`posting_context` read from the headers directly, for the routes that read their request
    by hand: the caller (401, 429), its role (403), then its key (400)."""
    headers = request.headers
    caller = await authenticate_request(
        request, headers.get("authorization"), headers.get("x-member-id")
    )
    allowed.check(caller)
    key = headers.get("idempotency-key")
    if key is None:
        raise MissingIdempotencyKey(MISSING_KEY)
    return await context_of(request, caller, key)


Posting = Annotated[PostingContext, Depends(posting_context)]
