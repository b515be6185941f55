"""Pairing a kiosk with its site (no HTTP): a short code instead of a pasted token.

An admin of the book or the site's organisation asks for a code (8 characters of an alphabet
without look-alikes, about 39 bits, valid `TIMEBANK_KIOSK_PAIRING_TTL_S`); the kiosk page
trades it once for a kiosk credential of that site, whose token only the kiosk ever sees. Only
the code's keyed hash is stored. The credential is granted like any other (a
`notice.credential_granted` entry, its actor the credential that asked for the code).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Final

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.http.actions import ActionAnswer, ActionResult, run_action
from app.http.caller import SYSTEM_CREDENTIAL
from app.identity.enrolment import new_code, normalise
from app.identity.grants import grant
from app.identity.personal import PersonalDataCipher
from app.identity.schemas import CredentialCreate
from app.kiosk import catalogue, errors, schemas
from app.kiosk.catalogue import Site
from app.ledger.outcomes import IdempotencyRef
from app.ledger.sequencer import Sequencer

log = structlog.get_logger("timebank.kiosk")

LENGTH: Final = 8
_INVALID: Final = "the pairing code is unknown, expired or used"


def _hash(cipher: PersonalDataCipher, code: str) -> str:
    return cipher.lookup_hash("kiosk-pairing-code", normalise(code))


async def issue(
    session: AsyncSession,
    cipher: PersonalDataCipher,
    site: Site,
    created_by: str,
    now: datetime,
    ttl_s: int,
) -> schemas.PairingCodeRead:
    """A new code that pairs one kiosk with `site`, valid for `ttl_s` seconds from `now`."""
    code = new_code(LENGTH)
    expires_at = now + timedelta(seconds=ttl_s)
    await session.execute(
        text(
            "INSERT INTO kiosk_pairing_codes (code_hash, site_id, expires_at, created_by) "
            "VALUES (:h, :site, :e, CAST(:by AS uuid))"
        ),
        {"h": _hash(cipher, code), "site": site.id, "e": expires_at, "by": created_by},
    )
    return schemas.PairingCodeRead(code=code, site_id=site.id, expires_at=expires_at)


async def claim(
    session: AsyncSession, cipher: PersonalDataCipher, code: str, now: datetime
) -> tuple[uuid.UUID, str]:
    """Lock an unused, unexpired code for this transaction: its site and who asked for it
    (one refusal for any other code, telling nothing more)."""
    row = (
        await session.execute(
            text(
                "SELECT site_id, created_by::text AS created_by FROM kiosk_pairing_codes "
                "WHERE code_hash = :h AND used_at IS NULL AND expires_at > :now FOR UPDATE"
            ),
            {"h": _hash(cipher, code), "now": now},
        )
    ).one_or_none()
    if row is None:
        raise errors.PairingCodeInvalid(_INVALID)
    return uuid.UUID(str(row.site_id)), str(row.created_by)


async def use(
    session: AsyncSession,
    cipher: PersonalDataCipher,
    code: str,
    credential_id: uuid.UUID,
    now: datetime,
) -> None:
    """Mark a claimed code used (at `now`, the clock `claim` judged it by) by the credential
    it paired."""
    await session.execute(
        text(
            "UPDATE kiosk_pairing_codes SET used_at = :now, credential_id = :c WHERE code_hash = :h"
        ),
        {"h": _hash(cipher, code), "c": credential_id, "now": now},
    )


async def purge_pairing_codes(session: AsyncSession, retention_s: int) -> int:
    """Forget codes expired longer ago than the idempotency retention; returns how many."""
    result = await session.execute(
        text(
            "DELETE FROM kiosk_pairing_codes WHERE expires_at < now() - make_interval(secs => :s)"
        ),
        {"s": retention_s},
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def pair(
    sessions: async_sessionmaker[AsyncSession],
    sequencer: Sequencer,
    cipher: PersonalDataCipher,
    data: schemas.Pairing,
    now: datetime,
) -> ActionAnswer:
    """Trade a code for a kiosk credential of its site, once: the credential, its grant's
    notice and the code's use commit together. A code used before is refused like an unknown
    one: the token was shown once, to whoever used it (a kiosk that lost the answer asks for
    another code)."""
    idem = IdempotencyRef(SYSTEM_CREDENTIAL, f"kiosk-pairing:{uuid.uuid4()}", "")

    async def action(session: AsyncSession) -> ActionResult:
        site_id, created_by = await claim(session, cipher, data.code, now)
        site = await catalogue.site(session, site_id)
        spec = CredentialCreate(
            role="kiosk", book=site.book, organisation_id=site.id, name=data.name or "kiosk"
        )
        granted = await grant(session, spec, {"credential": created_by})
        await use(session, cipher, data.code, uuid.UUID(str(granted.body["id"])), now)
        return granted

    answer = await run_action(sessions, sequencer, idem, action)
    body = answer.body
    # Never a replay: each pairing's key is new. `by`: the credential that issued the code
    # (the grant's actor), who let this kiosk in.
    log.info(
        "kiosk.paired",
        kiosk_credential_id=body["id"],
        site_id=body.get("organisation_id"),
        book=body["book"],
        by=body.get("created_by"),
    )
    return answer
