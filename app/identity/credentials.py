"""Bearer credentials: issued once, stored as a hash, checked on every request."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.identity import schemas
from app.kit.canonical_json import JsonObject
from app.kit.pagination import keyset_split

ROLES = ("admin", "org", "miniprogram", "kiosk", "auditor")
# Roles whose reach is one organisation (a kiosk's organisation is its kiosk site).
ORG_BOUND_ROLES = ("org", "kiosk")
TOKEN_PREFIX = "tbk_"
# Revocations and rotations are announced here so every server process forgets the token.
CHANNEL = "timebank_credentials"

COLUMNS = (
    "id::text AS id, name, role, book_code, organisation_id::text AS organisation_id, "
    "rate_limit_per_s, token_prefix, created_at, created_by::text AS created_by, revoked_at, "
    "rotated_at, last_used_at"
)


class CredentialRefused(ValueError):
    """A credential that cannot be created as asked (unknown role, book or organisation)."""


def token_hash(token: str) -> str:
    """SHA-256 of a token; tokens carry 256 random bits, so a plain hash suffices."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_prefix(token: str) -> str | None:
    """The part of a token that is not secret (stored and shown as a credential's
    `token_prefix`), when it has this service's format; None for anything else, which may be
    anyone's secret."""
    if token.startswith(TOKEN_PREFIX) and len(token) > 8:
        return token[:8]
    return None


def new_token() -> str:
    """A fresh bearer token: a recognisable prefix and 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def _check_reach(
    session: AsyncSession, role: str, book: str | None, organisation_id: str | None
) -> None:
    if role not in ROLES:
        raise CredentialRefused(f"unknown role {role!r}")
    if book is not None:
        found = await session.execute(text("SELECT 1 FROM books WHERE code = :b"), {"b": book})
        if found.first() is None:
            raise CredentialRefused(f"no book {book!r}")
    if role in ORG_BOUND_ROLES:
        if organisation_id is None:
            raise CredentialRefused(f"a {role} credential is bound to an organisation")
        org = (
            await session.execute(
                text("SELECT book_code, kind FROM organisations WHERE id = CAST(:o AS uuid)"),
                {"o": organisation_id},
            )
        ).one_or_none()
        if org is None or (book is not None and org.book_code != book):
            raise CredentialRefused(f"no organisation {organisation_id} in book {book!r}")
        if role == "kiosk" and org.kind != "kiosk_site":
            raise CredentialRefused("a kiosk credential is bound to a kiosk_site organisation")
    elif organisation_id is not None:
        raise CredentialRefused(f"a {role} credential is not bound to an organisation")


async def create_credential(
    session: AsyncSession,
    role: str,
    book: str | None = None,
    name: str = "",
    organisation_id: str | None = None,
    *,
    created_by: str | None = None,
    rate_limit_per_s: float | None = None,
) -> tuple[schemas.CredentialRead, str]:
    """Store a new credential and return it with its token (shown once, never stored)."""
    if role in ORG_BOUND_ROLES and book is None and organisation_id is not None:
        book = await session.scalar(
            text("SELECT book_code FROM organisations WHERE id = CAST(:o AS uuid)"),
            {"o": organisation_id},
        )
    await _check_reach(session, role, book, organisation_id)
    token = new_token()
    row = (
        await session.execute(
            text(
                "INSERT INTO credentials (id, name, role, book_code, organisation_id, token_hash, "
                "token_prefix, created_by, rate_limit_per_s) VALUES (:id, :name, :role, :book, "
                "CAST(:org AS uuid), :hash, :prefix, CAST(:by AS uuid), :rate) "
                f"RETURNING {COLUMNS}"
            ),
            {
                "id": uuid.uuid4(),
                "name": name,
                "role": role,
                "book": book,
                "org": organisation_id,
                "hash": token_hash(token),
                "prefix": token[:8],
                "by": created_by,
                "rate": rate_limit_per_s,
            },
        )
    ).one()
    return credential_read(row), token


def credential_read(row: Row[Any]) -> schemas.CredentialRead:
    """A credential as the API shows it: never its token or hash."""
    data = dict(row._mapping)
    data["book"] = data.pop("book_code")
    data["status"] = "revoked" if data["revoked_at"] is not None else "active"
    return schemas.CredentialRead.model_validate(data)


async def get_credential(
    session: AsyncSession, credential_id: uuid.UUID
) -> schemas.CredentialRead | None:
    """A credential by id, or None."""
    row = (
        await session.execute(
            text(f"SELECT {COLUMNS} FROM credentials WHERE id = :id"), {"id": credential_id}
        )
    ).one_or_none()
    return None if row is None else credential_read(row)


async def list_credentials(
    session: AsyncSession, book: str | None, after: uuid.UUID | None, limit: int
) -> schemas.CredentialPage:
    """A page of the credentials of one book (None: all), keyset-paged by id."""
    rows = await session.execute(
        text(
            f"SELECT {COLUMNS} FROM credentials "
            "WHERE (CAST(:book AS text) IS NULL OR book_code = :book) "
            "AND (CAST(:after AS uuid) IS NULL OR id > CAST(:after AS uuid)) "
            "ORDER BY id LIMIT :limit"
        ),
        {"book": book, "after": after, "limit": limit + 1},
    )
    items, next_after = keyset_split([credential_read(row) for row in rows], limit)
    return schemas.CredentialPage(items=items, next_after=next_after)


async def revoke_credential(
    session: AsyncSession, credential_id: uuid.UUID
) -> schemas.CredentialRead:
    """Revoke a credential now (idempotent); every process forgets its token."""
    row = (
        await session.execute(
            text(
                "UPDATE credentials SET revoked_at = coalesce(revoked_at, now()) WHERE id = :id "
                f"RETURNING {COLUMNS}"
            ),
            {"id": credential_id},
        )
    ).one()
    await session.execute(text("SELECT pg_notify(:ch, :id)"), {"ch": CHANNEL, "id": row.id})
    return credential_read(row)


async def rotate_credential(
    session: AsyncSession, credential_id: uuid.UUID
) -> tuple[schemas.CredentialRead, str]:
    """Give a credential a new token; the old one stops working at once."""
    token = new_token()
    row = (
        await session.execute(
            text(
                "UPDATE credentials SET token_hash = :hash, token_prefix = :prefix, "
                "rotated_at = now() WHERE id = :id AND revoked_at IS NULL "
                f"RETURNING {COLUMNS}"
            ),
            {"id": credential_id, "hash": token_hash(token), "prefix": token[:8]},
        )
    ).one_or_none()
    if row is None:
        raise CredentialRefused("a revoked credential cannot be rotated")
    await session.execute(text("SELECT pg_notify(:ch, :id)"), {"ch": CHANNEL, "id": row.id})
    return credential_read(row), token


def notice_facts(credential: schemas.CredentialRead) -> JsonObject:
    """What a credential notice records in the journal: its reach, never a secret."""
    organisation = credential.organisation_id
    return {
        "credential_id": str(credential.id),
        "role": credential.role,
        "book": credential.book,
        "organisation_id": None if organisation is None else str(organisation),
    }
