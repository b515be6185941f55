"""Bearer credentials: issued once, stored as a hash, checked on every request."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import Unauthorized
from app.ledger.sequencer import IdempotencyRef, Sequencer
from app.ledger.service import post_notice

ROLES = ("admin", "org", "miniprogram", "kiosk", "auditor")
TOKEN_PREFIX = "tbk_"
LAST_USED_RESOLUTION_S = 60.0


@dataclass(frozen=True, slots=True)
class Credential:
    """Who is calling: a credential's id, role and reach."""

    id: str
    role: str
    book: str | None


def token_hash(token: str) -> str:
    """SHA-256 of a token; tokens carry 256 random bits, so a plain hash suffices."""
    return hashlib.sha256(token.encode()).hexdigest()


async def create_credential(
    session: AsyncSession, role: str, book: str | None = None, name: str = ""
) -> tuple[dict[str, Any], str]:
    """Store a new credential and return it with its token (shown once, never stored)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    credential_id = uuid.uuid4()
    await session.execute(
        text(
            "INSERT INTO credentials (id, name, role, book_code, token_hash, token_prefix) "
            "VALUES (:id, :name, :role, :book, :hash, :prefix)"
        ),
        {
            "id": credential_id,
            "name": name,
            "role": role,
            "book": book,
            "hash": token_hash(token),
            "prefix": token[:8],
        },
    )
    return {"id": str(credential_id), "role": role, "book": book, "name": name}, token


SYSTEM_CREDENTIAL = "00000000-0000-0000-0000-000000000000"


async def grant_credential(
    sessions: async_sessionmaker[AsyncSession],
    sequencer: Sequencer,
    role: str,
    book: str | None = None,
    name: str = "",
) -> tuple[dict[str, Any], str]:
    """Create a credential; one bound to a book is also recorded in that book's journal.

    The credential is committed first: a failed notice can be posted again (it is idempotent
    on the credential id), while a notice for a credential that was never stored could not be
    taken back.
    """
    try:
        async with sessions() as session, session.begin():
            credential, token = await create_credential(session, role, book, name)
    except IntegrityError:
        raise ValueError(f"no book {book!r}") from None
    if book is not None:
        facts = {"credential_id": credential["id"], "role": role, "book": book}
        idem = IdempotencyRef(SYSTEM_CREDENTIAL, f"notice:granted:{credential['id']}", "")
        outcome = await post_notice(sequencer, book, "credential_granted", facts, idem)
        if outcome.status_code >= 400:
            raise RuntimeError(f"the grant could not be recorded: {outcome.body['detail']}")
    return credential, token


class CredentialCache:
    """Token checks without a query per request; a revocation takes effect within the TTL."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], ttl_s: float) -> None:
        self._sessions = sessions
        self._ttl = ttl_s
        self._entries: dict[str, tuple[float, Credential | None]] = {}
        self._touched: dict[str, float] = {}

    async def authenticate(self, token: str) -> Credential:
        """The credential a bearer token belongs to, or Unauthorized."""
        digest = token_hash(token)
        now = time.monotonic()
        cached = self._entries.get(digest)
        if cached is None or now - cached[0] > self._ttl:
            cached = (now, await self._load(digest))
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = cached
        credential = cached[1]
        if credential is None:
            raise Unauthorized("the bearer token is not valid")
        if now - self._touched.get(credential.id, -1e9) > LAST_USED_RESOLUTION_S:
            self._touched[credential.id] = now
            await self._touch(credential.id)
        return credential

    async def _load(self, digest: str) -> Credential | None:
        async with self._sessions() as session:
            row = (
                await session.execute(
                    text(
                        "SELECT id::text AS id, role, book_code FROM credentials "
                        "WHERE token_hash = :h AND revoked_at IS NULL"
                    ),
                    {"h": digest},
                )
            ).one_or_none()
        return None if row is None else Credential(row.id, row.role, row.book_code)

    async def _touch(self, credential_id: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                text("UPDATE credentials SET last_used_at = now() WHERE id = :id"),
                {"id": credential_id},
            )
