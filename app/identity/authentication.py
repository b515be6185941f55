"""Who is calling: bearer tokens to credentials, cached, revoked at once, rate limited."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, NamedTuple

import asyncpg
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.http.caller import ConsoleSession, Credential
from app.identity.console_sessions import live_session
from app.identity.credentials import CHANNEL, token_hash, token_prefix
from app.identity.rate_limit import TokenBucketLimiter, retry_after_header
from app.kit.pg_pool import connect
from app.kit.problems import RateLimited, Unauthorized

log = structlog.get_logger("timebank.identity")
LAST_USED_RESOLUTION_S = 60.0
MAX_CACHED = 10_000


class _Check(NamedTuple):
    """A token's check: when it was read, and its credential (None: no such token)."""

    checked_at: float
    credential: Credential | None


class Authenticator:
    """Token checks without a query per request.

    A revocation or rotation is announced with NOTIFY in its transaction; every process
    listens and forgets the token when it commits. A process whose listening connection is
    lost forgets every check and caches none until it has reconnected; the TTL is a backstop.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        ttl_s: float,
        rate_per_s: float,
        burst: int,
    ) -> None:
        self._sessions = sessions
        self._ttl = ttl_s
        self._entries: dict[str, _Check] = {}
        self._digests: dict[str, str] = {}
        self._touched: dict[str, float] = {}
        self._rate_per_s = rate_per_s
        self._burst = burst
        self._limiters: dict[float, TokenBucketLimiter] = {}
        self._listener: asyncpg.Connection | None = None
        self._dsn: str | None = None
        # Set when the listening connection is lost (until keep_listening reconnects).
        self.lost = asyncio.Event()

    async def listen(self, dsn: str) -> None:
        """Follow revocations made by any process (again, after the listener was lost)."""
        self._dsn = dsn
        listener = await connect(dsn)
        try:
            await listener.add_listener(CHANNEL, self._on_notify)
        except BaseException:
            listener.terminate()  # never wait on a server that just failed us
            raise
        listener.add_termination_listener(self._on_lost)
        previous, self._listener = self._listener, listener
        if previous is not None:
            previous.terminate()
        self.lost = asyncio.Event()

    async def keep_listening(self) -> None:
        """Reconnect a lost listener (called periodically); until then nothing is cached."""
        if self._dsn is not None and self._listener_lost():
            await self.listen(self._dsn)

    def _on_lost(self, _conn: Any) -> None:
        # Revocations may now go unheard: forget every cached check (none is cached until the
        # listener is back, see authenticate).
        self._entries.clear()
        self._digests.clear()
        self.lost.set()

    async def close(self) -> None:
        """Stop listening."""
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.forget(payload)

    def forget(self, credential_id: str) -> None:
        """Drop a credential's cached token so the next request reads it again."""
        digest = self._digests.pop(credential_id, None)
        if digest is not None:
            self._entries.pop(digest, None)

    async def authenticate(self, token: str) -> Credential:
        """The credential a bearer token belongs to, or Unauthorized / RateLimited."""
        digest = token_hash(token)
        now = time.monotonic()
        cached = self._entries.get(digest)
        if cached is None or now - cached.checked_at > self._ttl or self._listener_lost():
            cached = _Check(now, await self._load(digest))
            if len(self._entries) > MAX_CACHED:
                self._entries.clear()
                self._digests.clear()
            self._entries[digest] = cached
            if cached.credential is not None:
                self._digests[cached.credential.id] = digest
        credential = cached.credential
        if credential is None:
            # Revoked, rotated, mistyped or guessed: the prefix tells which credential it was
            # once (tokens of another format may be anyone's secret: nothing of them).
            log.warning(
                "identity.authentication_failed",
                reason="unknown_token",
                token_prefix=token_prefix(token),
            )
            raise Unauthorized("the bearer token is not valid")
        self._limit(credential)
        if now - self._touched.get(credential.id, -1e9) > LAST_USED_RESOLUTION_S:
            self._touched[credential.id] = now
            await self._touch(credential.id)
        return credential

    async def authenticate_session(self, secret: str) -> ConsoleSession:
        """The live console session of a cookie's secret, or Unauthorized / RateLimited.

        Read on every request, never cached: a person's sign-out, the session's expiry and the
        credential's revocation or rotation end it at once, in every process.
        """
        async with self._sessions() as session:
            live = await live_session(session, secret)
        if live is None:
            log.warning("identity.authentication_failed", reason="session_ended")
            raise Unauthorized(
                "the console session has ended (signed out, expired, or its "
                "credential revoked or rotated): sign in again"
            )
        credential = live.as_credential()
        self._limit(credential)
        return ConsoleSession(credential, live.csrf_token, live.expires_at)

    @property
    def listening(self) -> bool:
        """Whether revocations by other processes reach this one now."""
        return self._listener is not None and not self._listener.is_closed()

    def _listener_lost(self) -> bool:
        return self._listener is not None and self._listener.is_closed()

    def _limit(self, credential: Credential) -> None:
        rate = self._rate_per_s
        if credential.rate_limit_per_s is not None:
            rate = credential.rate_limit_per_s
        if rate <= 0:
            return
        limiter = self._limiters.get(rate)
        if limiter is None:
            burst = max(self._burst, 1) if rate == self._rate_per_s else max(int(2 * rate), 1)
            limiter = self._limiters[rate] = TokenBucketLimiter(rate, burst)
        decision = limiter.take(credential.id)
        if not decision.allowed:
            raise RateLimited(
                f"this credential may make {rate:g} requests per second",
                headers={"Retry-After": retry_after_header(decision.retry_after_s)},
            )

    async def _load(self, digest: str) -> Credential | None:
        async with self._sessions() as session:
            row = (
                await session.execute(
                    text(
                        "SELECT id::text AS id, role, book_code, "
                        "organisation_id::text AS organisation_id, rate_limit_per_s "
                        "FROM credentials WHERE token_hash = :h AND revoked_at IS NULL"
                    ),
                    {"h": digest},
                )
            ).one_or_none()
        if row is None:
            return None
        return Credential(
            row.id, row.role, row.book_code, row.organisation_id, row.rate_limit_per_s
        )

    async def _touch(self, credential_id: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                text("UPDATE credentials SET last_used_at = now() WHERE id = :id"),
                {"id": credential_id},
            )
