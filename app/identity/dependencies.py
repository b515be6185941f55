"""FastAPI dependencies: who is calling, and the idempotency key of a writing request.

Each route has one dependency that does all of its checks: FastAPI's dependency resolution
costs more per node than the checks themselves, and postings are the hot path.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

import orjson
from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import MissingIdempotencyKey, Unauthorized, ValidationFailed
from app.identity.authentication import Authenticator
from app.identity.authorization import Caller
from app.kit.canonical_json import canonical_bytes
from app.ledger.sequencer import IdempotencyRef, Sequencer

BEARER = "Bearer "
IDEMPOTENCY_KEY_DESCRIPTION = (
    "1-255 printable ASCII characters; a retry with the same key and body gets the first answer"
)
AuthorizationHeader = Annotated[str | None, Header(include_in_schema=False)]
MemberHeader = Annotated[
    str | None,
    Header(
        alias="X-Member-Id",
        description="mini-program credentials: the member this request acts for",
    ),
]


async def _authenticate(request: Request, authorization: str | None, member: str | None) -> Caller:
    if not authorization or not authorization.startswith(BEARER):
        raise Unauthorized("send Authorization: Bearer <token>")
    authenticator: Authenticator = request.app.state.authenticator
    credential = await authenticator.authenticate(authorization[len(BEARER) :].strip())
    if member is None or credential.role != "miniprogram":
        return Caller(credential)
    try:
        return Caller(credential, str(UUID(member)))
    except ValueError:
        raise ValidationFailed(
            "X-Member-Id must be a member id (UUID)",
            errors=[{"field": "header/X-Member-Id", "message": "not a UUID", "code": "uuid"}],
        ) from None


async def authenticated(
    request: Request, authorization: AuthorizationHeader = None, x_member_id: MemberHeader = None
) -> Caller:
    """Any valid credential; each route checks the role and reach it needs."""
    return await _authenticate(request, authorization, x_member_id)


CallerDep = Annotated[Caller, Depends(authenticated)]


@dataclass(frozen=True, slots=True)
class PostingContext:
    """Everything a posting route needs besides its body."""

    caller: Caller
    idem: IdempotencyRef
    sequencer: Sequencer
    # For the few checks a posting needs beyond the sequencer's (not every request opens one).
    sessions: async_sessionmaker[AsyncSession]


async def posting_context(
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(description=IDEMPOTENCY_KEY_DESCRIPTION),
    ] = None,
) -> PostingContext:
    """The caller, its idempotency key with a hash of the request, and the sequencer.

    Authorization and X-Member-Id are read from the headers directly: on the hot path each
    declared header parameter costs FastAPI more than the check itself.
    """
    headers = request.headers
    caller = await _authenticate(request, headers.get("authorization"), headers.get("x-member-id"))
    if idempotency_key is None:
        raise MissingIdempotencyKey("this request needs an Idempotency-Key header")
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


Posting = Annotated[PostingContext, Depends(posting_context)]
