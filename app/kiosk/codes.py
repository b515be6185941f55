"""Members' redeem codes (no HTTP): short-lived, single-use, signed.

A code is `R1` + base32 of its 16-byte id + base32 of the first 10 bytes of an HMAC-SHA256 of
the id under the service's lookup key: 44 characters of the QR alphanumeric set. The MAC lets a
forged or mistyped code be refused before any lookup; the row (member, expiry, use) is the
authority, and using a code marks it under a row lock, so it is used once.
"""

from __future__ import annotations

import base64
import hmac
import uuid
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.identity.personal import PersonalDataCipher
from app.kiosk import errors
from app.kiosk.schemas import RedeemCodeRead

PREFIX = "R1"
_MAC_BYTES = 10
_ID_CHARS = 26  # base32 of 16 bytes, unpadded
_MAC_CHARS = 16  # base32 of 10 bytes


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=")


def _mac(cipher: PersonalDataCipher, code_id: uuid.UUID) -> str:
    digest = bytes.fromhex(cipher.lookup_hash("redeem-code", str(code_id)))
    return _b32(digest[:_MAC_BYTES])


def encode(cipher: PersonalDataCipher, code_id: uuid.UUID) -> str:
    """The code of an id."""
    return PREFIX + _b32(code_id.bytes) + _mac(cipher, code_id)


def decode(cipher: PersonalDataCipher, code: str) -> uuid.UUID:
    """The id of a well-formed, authentic code; RedeemCodeInvalid otherwise."""
    code = code.strip().upper()
    if len(code) != len(PREFIX) + _ID_CHARS + _MAC_CHARS or not code.startswith(PREFIX):
        raise errors.RedeemCodeInvalid("the code is not a redeem code of this service")
    body = code[len(PREFIX) :]
    try:
        code_id = uuid.UUID(bytes=base64.b32decode(body[:_ID_CHARS] + "======"))
    except ValueError:
        raise errors.RedeemCodeInvalid("the code is not a redeem code of this service") from None
    if not hmac.compare_digest(_mac(cipher, code_id), body[_ID_CHARS:]):
        raise errors.RedeemCodeInvalid("the code is not a redeem code of this service")
    return code_id


async def issue(
    session: AsyncSession,
    cipher: PersonalDataCipher,
    member_id: uuid.UUID,
    created_by: str,
    now: datetime,
    ttl_s: int,
) -> RedeemCodeRead:
    """A new code for the member, valid for `ttl_s` seconds from `now`."""
    code_id = uuid.uuid4()
    expires_at = now + timedelta(seconds=ttl_s)
    await session.execute(
        text(
            "INSERT INTO redeem_codes (id, member_id, expires_at, created_by) "
            "VALUES (:id, :member, :expires, CAST(:by AS uuid))"
        ),
        {"id": code_id, "member": member_id, "expires": expires_at, "by": created_by},
    )
    return RedeemCodeRead(code=encode(cipher, code_id), member_id=member_id, expires_at=expires_at)


async def _usable(
    session: AsyncSession, code_id: uuid.UUID, now: datetime, lock: bool
) -> tuple[uuid.UUID, datetime]:
    """The member and expiry of a code usable now (locked for the transaction if `lock`)."""
    row = (
        await session.execute(
            text(
                "SELECT member_id, expires_at, used_at FROM redeem_codes WHERE id = :id"
                + (" FOR UPDATE" if lock else "")
            ),
            {"id": code_id},
        )
    ).one_or_none()
    if row is None:
        raise errors.RedeemCodeInvalid("the code is not a redeem code of this service")
    if row.used_at is not None:
        raise errors.RedeemCodeUsed(f"the code was used at {row.used_at.isoformat()}")
    if now >= row.expires_at:
        raise errors.RedeemCodeExpired(f"the code expired at {row.expires_at.isoformat()}")
    return uuid.UUID(str(row.member_id)), row.expires_at


async def claim(
    session: AsyncSession,
    code_id: uuid.UUID,
    member_id: uuid.UUID | None,
    now: datetime,
) -> uuid.UUID:
    """Lock the code until the transaction ends and check it can be used now (by the member,
    if named); its member. `use` marks it used in the same transaction."""
    owner, _ = await _usable(session, code_id, now, lock=True)
    if member_id is not None and member_id != owner:
        raise errors.RedeemCodeOtherMember("the code was issued for another member")
    return owner


async def peek(
    session: AsyncSession, code_id: uuid.UUID, now: datetime
) -> tuple[uuid.UUID, datetime]:
    """The member a code can be used for now, and when it expires; the code stays unused
    (the same refusals as `claim`)."""
    return await _usable(session, code_id, now, lock=False)


async def use(session: AsyncSession, code_id: uuid.UUID, redemption_id: uuid.UUID) -> None:
    """Mark a claimed code used by a redemption."""
    await session.execute(
        text("UPDATE redeem_codes SET used_at = now(), redemption_id = :r WHERE id = :id"),
        {"id": code_id, "r": redemption_id},
    )
