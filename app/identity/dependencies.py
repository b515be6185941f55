"""FastAPI dependencies: who is calling, and the idempotency key of a writing request.

Each route has one dependency that does all of its checks: FastAPI's dependency resolution
costs more per node than the checks themselves, and postings are the hot path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import MissingIdempotencyKey, Unauthorized, ValidationFailed
from app.identity.authentication import Authenticator
from app.identity.authorization import Caller, require_role
from app.kit.canonical_json import canonical_bytes
from app.ledger.sequencer import IdempotencyRef, Sequencer

BEARER = "Bearer "
IDEMPOTENCY_KEY_DESCRIPTION = (
    "1-255 printable ASCII characters; a retry with the same key and body gets the first answer"
)
AuthorizationHeader = Annotated[str | None, Header(include_in_schema=False)]
MEMBER_HEADER_DESCRIPTION = "mini-program credentials: the member this request acts for"
MemberHeader = Annotated[
    str | None, Header(alias="X-Member-Id", description=MEMBER_HEADER_DESCRIPTION)
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
class Allowed:
    """The roles that may ever take a route's action (any other is refused 403, whatever the
    object), and the action as a 403 names it."""

    roles: tuple[str, ...]
    action: str

    def check(self, caller: Caller) -> None:
        """Refuse (403) a role that may never take this action."""
        require_role(caller, self.roles, self.action)


def allow(roles: Iterable[str], action: str) -> Any:
    """A route dependency (`dependencies=[allow(...)]`): refuse a role that may never call it.

    Route dependencies run before FastAPI checks the route's parameters and body, so this 403
    comes after 401 and 429 and before any 404 or 422 (docs/authorization.md); the route's own
    caller dependency reuses the same authenticated caller.
    """
    allowed = Allowed(tuple(roles), action)

    async def check_role(caller: CallerDep) -> Caller:
        allowed.check(caller)
        return caller

    check_role.allowed = allowed  # type: ignore[attr-defined]
    return Depends(check_role)


def allowed_of(dependency: Any) -> Allowed | None:
    """The roles an `allow(...)` dependency admits (None for any other dependency)."""
    found: Allowed | None = getattr(getattr(dependency, "dependency", None), "allowed", None)
    return found


@dataclass(frozen=True, slots=True)
class PostingContext:
    """Everything a posting route needs besides its body."""

    caller: Caller
    idem: IdempotencyRef
    sequencer: Sequencer
    # For the few checks a posting needs beyond the sequencer's (not every request opens one).
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


async def read_posting_context(request: Request, allowed: Allowed) -> PostingContext:
    """`posting_context` read from the headers directly, for the routes that read their request
    by hand: the caller (401, 429), its role (403), then its key (400)."""
    headers = request.headers
    caller = await _authenticate(request, headers.get("authorization"), headers.get("x-member-id"))
    allowed.check(caller)
    key = headers.get("idempotency-key")
    if key is None:
        raise MissingIdempotencyKey(MISSING_KEY)
    return await context_of(request, caller, key)


Posting = Annotated[PostingContext, Depends(posting_context)]
