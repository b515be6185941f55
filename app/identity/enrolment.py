"""Enrolment codes: a member's consent to join an organisation (no HTTP).

A member (through the mini-program) asks for a code and gives it to the organisation; the
organisation enrols them with it. A code is 10 characters of an alphabet without look-alikes
(about 49 bits), valid for `TIMEBANK_ENROLMENT_CODE_TTL_S` and used once; only its keyed hash
is stored. A volunteer number alone never enrols anyone: numbers are sequential and printed.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.identity import errors, schemas
from app.identity.personal import PersonalDataCipher

# No 0/O, 1/I/L: read aloud or typed from a phone screen without doubt.
ALPHABET: Final = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
LENGTH: Final = 10
_INVALID: Final = "the enrolment code is unknown, expired or used"


def normalise(code: str) -> str:
    """A code as typed (any case, spaces or hyphens between groups) in its stored form."""
    return code.strip().upper().replace(" ", "").replace("-", "")


def new_code(length: int = LENGTH) -> str:
    """A random code of `length` characters of `ALPHABET`."""
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def _hash(cipher: PersonalDataCipher, code: str) -> str:
    return cipher.lookup_hash("enrolment-code", normalise(code))


async def issue(
    session: AsyncSession,
    cipher: PersonalDataCipher,
    member_id: uuid.UUID,
    created_by: str,
    now: datetime,
    ttl_s: int,
) -> schemas.EnrolmentCodeRead:
    """A new code for the member, valid for `ttl_s` seconds from `now`."""
    code = new_code()
    expires_at = now + timedelta(seconds=ttl_s)
    await session.execute(
        text(
            "INSERT INTO enrolment_codes (code_hash, member_id, expires_at, created_by) "
            "VALUES (:h, :m, :e, CAST(:by AS uuid))"
        ),
        {"h": _hash(cipher, code), "m": member_id, "e": expires_at, "by": created_by},
    )
    return schemas.EnrolmentCodeRead(code=code, member_id=member_id, expires_at=expires_at)


async def enrol(
    session: AsyncSession,
    cipher: PersonalDataCipher,
    organisation: schemas.OrganisationRead,
    code: str,
    volunteer_number: str | None,
    now: datetime,
) -> schemas.MembershipRead:
    """Use a code to make its member a member of the organisation (same book only).

    A code the same organisation used before answers the same membership (a retry); any other
    unknown, expired, used or mismatched code is one refusal that tells nothing more.
    """
    params = {"h": _hash(cipher, code), "o": organisation.id, "now": now}
    match = "m.book_code = :b AND m.status = 'active'" + (
        "" if volunteer_number is None else " AND m.volunteer_number = :n"
    )
    claimed = await session.execute(
        text(
            "UPDATE enrolment_codes c SET used_at = coalesce(c.used_at, :now), "
            "organisation_id = :o FROM members m "
            f"WHERE c.code_hash = :h AND m.id = c.member_id AND {match} "
            "AND ((c.used_at IS NULL AND c.expires_at > :now) OR c.organisation_id = :o) "
            "RETURNING c.member_id, m.volunteer_number"
        ),
        {**params, "b": organisation.book, "n": volunteer_number},
    )
    found = claimed.one_or_none()
    if found is None:
        raise errors.EnrolmentCodeInvalid(_INVALID)
    row = (
        await session.execute(
            text(
                "INSERT INTO organisation_members (organisation_id, member_id) VALUES (:o, :m) "
                "ON CONFLICT (organisation_id, member_id) DO UPDATE SET joined_at = "
                "organisation_members.joined_at RETURNING organisation_id, member_id, joined_at"
            ),
            {"o": organisation.id, "m": found.member_id},
        )
    ).one()
    return schemas.MembershipRead(**row._asdict(), volunteer_number=found.volunteer_number)


async def purge_enrolment_codes(session: AsyncSession, retention_s: int) -> int:
    """Forget codes expired longer ago than the idempotency retention (a used one answers its
    organisation's retries until then); returns how many."""
    result = await session.execute(
        text("DELETE FROM enrolment_codes WHERE expires_at < now() - make_interval(secs => :s)"),
        {"s": retention_s},
    )
    return int(getattr(result, "rowcount", 0) or 0)
