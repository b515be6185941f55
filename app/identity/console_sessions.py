"""Console sessions (no HTTP): a credential's token, entered once, traded for a short-lived
session that the browser holds in an HttpOnly cookie, so the page never keeps the token.

A session lasts `TIMEBANK_CONSOLE_SESSION_TTL_S` from sign-in and ends sooner when the person
signs out, or when the credential is revoked or its token rotated (the session is checked
against the credential on every request). Each session has its own CSRF token, which the page
sends back as `X-CSRF-Token` on every request that changes something: the cookie alone does
nothing but read (docs/authorization.md, "The console").
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Final

import structlog
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.http.caller import ConsoleSession, Credential
from app.identity.credentials import token_hash, token_prefix
from app.kit.problems import Forbidden, Unauthorized

log = structlog.get_logger("timebank.identity")

# The roles a person signs in to the console with; a kiosk or the mini-program has its own page.
CONSOLE_ROLES: Final = ("admin", "org", "auditor")
SESSION_PREFIX: Final = "tbs_"


class SessionCredential(BaseModel):
    id: uuid.UUID
    name: str | None
    role: str
    book: str | None = Field(description="null: a platform credential (every book)")
    organisation_id: uuid.UUID | None
    organisation_name: str | None


class ConsoleSessionRead(BaseModel):
    """A console session as the page sees it (never the session secret, which is the cookie)."""

    credential: SessionCredential
    csrf_token: str | None = Field(
        description="send as X-CSRF-Token on every request that is not a GET; null when the "
        "request was authenticated by a bearer token, not a console session"
    )
    expires_at: datetime | None


class OpenedSession(BaseModel):
    secret: str
    read: ConsoleSessionRead


async def _credential(session: AsyncSession, credential_id: str) -> SessionCredential:
    row = (
        await session.execute(
            text(
                "SELECT c.id, c.name, c.role, c.book_code AS book, c.organisation_id, "
                "o.name AS organisation_name FROM credentials c "
                "LEFT JOIN organisations o ON o.id = c.organisation_id WHERE c.id = :id"
            ),
            {"id": uuid.UUID(credential_id)},
        )
    ).one()
    return SessionCredential.model_validate(row._asdict())


async def open_session(session: AsyncSession, token: str, ttl_s: int) -> OpenedSession:
    """A new session for the credential of `token` (401 if unknown or revoked; 403 for a role
    that has no console)."""
    digest = token_hash(token)
    row = (
        await session.execute(
            text(
                "SELECT id::text AS id, role FROM credentials "
                "WHERE token_hash = :h AND revoked_at IS NULL"
            ),
            {"h": digest},
        )
    ).one_or_none()
    if row is None:
        log.warning(
            "identity.authentication_failed",
            reason="console_sign_in",
            token_prefix=token_prefix(token),
        )
        raise Unauthorized("the token is not valid (unknown, revoked or rotated)")
    if row.role not in CONSOLE_ROLES:
        raise Forbidden(
            f"a {row.role} credential has no console; sign in with an admin, org or auditor one"
        )
    secret = SESSION_PREFIX + secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    # The database's clock both sets and judges the expiry (LIVE_SESSION), in every process.
    expires_at = (
        await session.execute(
            text(
                "INSERT INTO console_sessions (id, session_hash, credential_id, "
                "credential_token_hash, csrf_token, expires_at) VALUES (:id, :s, "
                "CAST(:c AS uuid), :t, :csrf, now() + make_interval(secs => :ttl)) "
                "RETURNING expires_at"
            ),
            {
                "id": uuid.uuid4(),
                "s": token_hash(secret),
                "c": row.id,
                "t": digest,
                "csrf": csrf,
                "ttl": ttl_s,
            },
        )
    ).scalar_one()
    read = ConsoleSessionRead(
        credential=await _credential(session, row.id), csrf_token=csrf, expires_at=expires_at
    )
    return OpenedSession(secret=secret, read=read)


# The session, if it is live and its credential neither revoked nor rotated since sign-in.
LIVE_SESSION = """
SELECT c.id::text AS id, c.role, c.book_code, c.organisation_id::text AS organisation_id,
       c.rate_limit_per_s, s.csrf_token, s.expires_at
  FROM console_sessions s JOIN credentials c ON c.id = s.credential_id
 WHERE s.session_hash = :h AND s.ended_at IS NULL AND s.expires_at > now()
   AND c.revoked_at IS NULL AND c.token_hash = s.credential_token_hash
"""


class LiveSession(BaseModel):
    credential_id: str
    role: str
    book: str | None
    organisation_id: str | None
    rate_limit_per_s: float | None
    csrf_token: str
    expires_at: datetime

    def as_credential(self) -> Credential:
        return Credential(
            self.credential_id, self.role, self.book, self.organisation_id, self.rate_limit_per_s
        )


async def live_session(session: AsyncSession, secret: str) -> LiveSession | None:
    """The live session of a cookie's secret, or None."""
    row = (await session.execute(text(LIVE_SESSION), {"h": token_hash(secret)})).one_or_none()
    if row is None:
        return None
    return LiveSession(
        credential_id=row.id,
        role=row.role,
        book=row.book_code,
        organisation_id=row.organisation_id,
        rate_limit_per_s=row.rate_limit_per_s,
        csrf_token=row.csrf_token,
        expires_at=row.expires_at,
    )


async def session_read(
    session: AsyncSession, credential_id: str, console: ConsoleSession | None
) -> ConsoleSessionRead:
    """What `GET /v1/console/session` answers for a caller (`console`: its console session)."""
    return ConsoleSessionRead(
        credential=await _credential(session, credential_id),
        csrf_token=console.csrf_token if console else None,
        expires_at=console.expires_at if console else None,
    )


async def end_session(session: AsyncSession, secret: str) -> None:
    """Sign out: the session ends at once (nothing if it had ended)."""
    await session.execute(
        text(
            "UPDATE console_sessions SET ended_at = now() "
            "WHERE session_hash = :h AND ended_at IS NULL"
        ),
        {"h": token_hash(secret)},
    )


async def purge_sessions(session: AsyncSession, retention_s: int) -> int:
    """Forget sessions that ended or expired more than `retention_s` ago."""
    result = await session.execute(
        text(
            "DELETE FROM console_sessions WHERE least(expires_at, coalesce(ended_at, "
            "expires_at)) < now() - make_interval(secs => :r)"
        ),
        {"r": retention_s},
    )
    return int(getattr(result, "rowcount", 0) or 0)
