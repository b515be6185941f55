"""Signing keys in the database: the first key, rotation, and the ring a process signs with.

A key signs receipts for entries posted, and checkpoints signed, within its validity period
`[valid_from, valid_until)` (whole seconds). Each process picks the key by that period from the
table, so a rotation needs no message between processes: it takes effect
`signing_key_rotation_lead_s` after it commits, and a ring trusts its copy of the table only
for instants earlier than half that lead after it read it (docs/audit-format.md §7).
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.audit import keys
from app.audit.errors import KeyRotationRefused, SigningKeyUnavailable
from app.audit.keys import PublishedKey, SigningKey, SigningKeyError
from app.kit.pg_pool import acquire

KEYS_LOCK = 7_294_102  # pg_advisory_xact_lock key: one key change at a time

SELECT_KEYS = """
SELECT kid, public_jwk::text AS jwk, private_pem,
       extract(epoch FROM valid_from)::bigint AS valid_from,
       extract(epoch FROM valid_until)::bigint AS valid_until
  FROM signing_keys ORDER BY valid_from
"""
# The first key covers every entry written before it existed: seq 1 holds each book's
# earliest posted_at (posted_at never decreases within a book).
FIRST_VALID_FROM = """
SELECT floor(extract(epoch FROM least(clock_timestamp(), (
    SELECT min(e.posted_at) FROM books b CROSS JOIN LATERAL (
        SELECT posted_at FROM journal_entries j WHERE j.book_code = b.code AND j.seq = 1) e))
))::bigint
"""
INSERT_KEY = """
INSERT INTO signing_keys (kid, public_jwk, private_pem, valid_from)
VALUES ($1, $2::jsonb, $3, to_timestamp($4))
"""


@dataclass(frozen=True)
class StoredKey:
    """A key as stored: public half, validity in Unix seconds, encrypted private half."""

    kid: str
    public_key: Ed25519PublicKey
    valid_from: int
    valid_until: int | None
    pem: bytes = field(repr=False)

    def covers(self, instant: int) -> bool:
        """Whether the key signs at `instant` (Unix seconds)."""
        ends = self.valid_until
        return self.valid_from <= instant and (ends is None or instant < ends)

    def published(self) -> PublishedKey:
        """The key as the JWKS lists it."""
        until = None if self.valid_until is None else _moment(self.valid_until)
        return PublishedKey(self.public_key, _moment(self.valid_from), until)


def _moment(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _stored(row: asyncpg.Record) -> StoredKey:
    public = keys.public_key_from_jwk(json.loads(row["jwk"]))
    return StoredKey(
        row["kid"], public, row["valid_from"], row["valid_until"], bytes(row["private_pem"])
    )


async def load_keys(conn: asyncpg.Connection) -> tuple[list[StoredKey], float]:
    """Every key, oldest first, and the database clock read just before them."""
    clock = float(await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8"))
    return [_stored(row) for row in await conn.fetch(SELECT_KEYS)], clock


async def _insert_key(conn: asyncpg.Connection, passphrase: bytes, valid_from: int) -> StoredKey:
    private = keys.generate_private_key()
    kid = keys.kid(private.public_key())
    pem = keys.encrypt_private_key(private, passphrase)
    jwk = keys.public_jwk(private.public_key())
    await conn.execute(INSERT_KEY, kid, json.dumps(jwk), pem, valid_from)
    return StoredKey(kid, private.public_key(), valid_from, None, pem)


async def ensure_key(conn: asyncpg.Connection, passphrase: bytes) -> StoredKey | None:
    """Create the first key if there is none (any number of processes may ask at once);
    returns it, or None when a key existed."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", KEYS_LOCK)
        if await conn.fetchval("SELECT 1 FROM signing_keys LIMIT 1"):
            return None
        return await _insert_key(conn, passphrase, await conn.fetchval(FIRST_VALID_FROM))


@dataclass(frozen=True)
class Rotation:
    """A new key and the kid of the key it replaces (None for the first key)."""

    key: StoredKey
    previous_kid: str | None


async def rotate_key(conn: asyncpg.Connection, passphrase: bytes, lead_s: float) -> Rotation:
    """Create a key valid from `lead_s` seconds from now (rounded up to a second) and end the
    current key's period there."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", KEYS_LOCK)
        current = await conn.fetchrow(
            "SELECT kid, extract(epoch FROM valid_from)::bigint AS valid_from "
            "FROM signing_keys WHERE valid_until IS NULL FOR UPDATE"
        )
        if current is None:
            first = await ensure_key(conn, passphrase)
            if first is None:
                raise KeyRotationRefused("every signing key has an end; none is current")
            return Rotation(first, None)
        now = float(await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8"))
        valid_from = math.ceil(now + lead_s)
        # A key that has not signed yet is not replaced: its period would be cut to nothing.
        if current["valid_from"] > now:
            raise KeyRotationRefused(
                f"the current key {current['kid']} is valid only from "
                f"{keys.format_time(_moment(current['valid_from']))}; rotate after that"
            )
        await conn.execute(
            "UPDATE signing_keys SET valid_until = to_timestamp($2) WHERE kid = $1",
            current["kid"],
            valid_from,
        )
        return Rotation(await _insert_key(conn, passphrase, valid_from), current["kid"])


class KeyRing:
    """The keys of the `signing_keys` table as this process last read them, with their
    private halves decrypted on first use (kept in memory only)."""

    def __init__(self, pool: asyncpg.Pool, passphrase: bytes, lead_s: float) -> None:
        self._pool = pool
        self._passphrase = passphrase
        self._lead_s = lead_s
        self._keys: list[StoredKey] = []
        self._loaded_at = -math.inf
        self._signers: dict[str, SigningKey] = {}
        self._lock = asyncio.Lock()

    async def refresh(self) -> list[StoredKey]:
        """Read the table again; returns every key, oldest first."""
        async with acquire(self._pool) as conn:
            self._keys, self._loaded_at = await load_keys(conn)
        return self._keys

    def _trusted(self, instant: int) -> bool:
        # A rotation this copy has not seen starts at least the lead after it was read.
        return self._lead_s > 0 and instant < self._loaded_at + self._lead_s / 2

    async def key_at(self, instant: int) -> tuple[StoredKey, SigningKey]:
        """The key valid at `instant` (Unix seconds), ready to sign."""
        if not self._trusted(instant):
            async with self._lock:
                if not self._trusted(instant):  # another task may have just read it
                    await self.refresh()
        for key in reversed(self._keys):
            if key.covers(instant):
                return key, self.signer(key)
        raise SigningKeyUnavailable(f"no signing key is valid at {instant}")

    def signer(self, key: StoredKey) -> SigningKey:
        """The private key of a stored key (decrypted once per process)."""
        signer = self._signers.get(key.kid)
        if signer is None:
            try:
                signer = SigningKey(keys.load_private_key(key.pem, self._passphrase))
            except SigningKeyError as exc:
                raise SigningKeyUnavailable(f"key {key.kid}: {exc}") from None
            if signer.kid != key.kid:
                raise SigningKeyUnavailable(f"key {key.kid}: the private key does not match")
            self._signers[key.kid] = signer
        return signer
