"""Who is calling: the credential authentication found and the member it acts for.

The authenticator itself (tokens, cache, revocation, rate limits) is identity's; a serving
app puts one on `app.state.authenticator`, and these dependencies ask it.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Protocol
from uuid import UUID

import structlog
from fastapi import Depends, Header, Request

from app.kit.problems import CsrfRefused, Unauthorized, ValidationFailed

BEARER = "Bearer "
# The console's session cookie (HttpOnly), and the header that must repeat the session's CSRF
# token on every request that is not a read (app/identity/console_sessions.py).
SESSION_COOKIE = "tb_console"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The credential id the service's own actions record (expiry, a kiosk's lapsed redemption,
# an action's notices, keys rotated from the command line).
SYSTEM_CREDENTIAL = "00000000-0000-0000-0000-000000000000"
AuthorizationHeader = Annotated[str | None, Header(include_in_schema=False)]
MEMBER_HEADER_DESCRIPTION = "mini-program credentials: the member this request acts for"
MemberHeader = Annotated[
    str | None, Header(alias="X-Member-Id", description=MEMBER_HEADER_DESCRIPTION)
]


@dataclass(frozen=True, slots=True)
class Credential:
    """Who is calling: a credential's id, role and reach (book None: every book)."""

    id: str
    role: str
    book: str | None
    organisation_id: str | None = None
    rate_limit_per_s: float | None = None


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A live console session: whose, its CSRF token and when it ends."""

    credential: Credential
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Caller:
    """A credential and, for the mini-program, the member it acts for in this request; the
    console session the request came through, if it did not send a bearer token."""

    credential: Credential
    member_id: str | None = None
    console_session: ConsoleSession | None = None

    @property
    def role(self) -> str:
        return self.credential.role

    @property
    def book(self) -> str | None:
        return self.credential.book

    @property
    def organisation_id(self) -> str | None:
        return self.credential.organisation_id

    def actor(self) -> dict[str, str]:
        """What a journal entry records of who did it (opaque ids only)."""
        actor = {"credential": self.credential.id}
        if self.member_id is not None:
            actor["member"] = self.member_id
        return actor


class Authenticates(Protocol):
    """What the app's authenticator offers a request: the credential of a bearer token, or the
    live console session of a cookie (401 or 429 otherwise)."""

    async def authenticate(self, token: str) -> Credential: ...

    async def authenticate_session(self, secret: str) -> ConsoleSession: ...


log = structlog.get_logger("timebank.identity")
# Where the request's log line (app/http/middleware.py) finds the credential: a key of the
# request's `state`, which the middleware and the routes' `Request` share.
CREDENTIAL_STATE = "credential_id"


def _identified(request: Request, credential: Credential) -> None:
    """Name the caller's credential in the request's log line and in every line the request
    logs after this (its id only)."""
    setattr(request.state, CREDENTIAL_STATE, credential.id)
    structlog.contextvars.bind_contextvars(credential_id=credential.id)


def _unauthenticated(reason: str, message: str) -> Unauthorized:
    log.info("identity.authentication_failed", reason=reason)
    return Unauthorized(message)


async def _console_caller(request: Request, authenticator: Authenticates, secret: str) -> Caller:
    """The caller of a console request: its session, and for a write the session's CSRF token
    repeated in a header (a cookie alone is sent by any page that makes the browser ask)."""
    console = await authenticator.authenticate_session(secret)
    _identified(request, console.credential)
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), console.csrf_token.encode()):
            raise CsrfRefused(f"a console request that changes something must send {CSRF_HEADER}")
    return Caller(console.credential, console_session=console)


async def authenticate_request(
    request: Request, authorization: str | None, member: str | None
) -> Caller:
    """The caller of a request from its Authorization and X-Member-Id headers, or from its
    console session cookie when it sends no Authorization."""
    authenticator: Authenticates = request.app.state.authenticator
    if not authorization:
        secret = request.cookies.get(SESSION_COOKIE)
        if secret:
            return await _console_caller(request, authenticator, secret)
        raise _unauthenticated("missing", "send Authorization: Bearer <token>")
    if not authorization.startswith(BEARER):
        raise _unauthenticated("not_bearer", "send Authorization: Bearer <token>")
    credential = await authenticator.authenticate(authorization[len(BEARER) :].strip())
    _identified(request, credential)
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
    return await authenticate_request(request, authorization, x_member_id)


CallerDep = Annotated[Caller, Depends(authenticated)]
