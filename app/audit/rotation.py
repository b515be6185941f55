"""`timebank keys rotate`: a new signing key, announced by a `notice.key_rotated` in every book."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import structlog

from app.audit.keys import format_time
from app.audit.keystore import Rotation, load_keys, rotate_key
from app.http.caller import SYSTEM_CREDENTIAL
from app.kit.faults import fault_point
from app.ledger.outcomes import IdempotencyRef, refusal
from app.ledger.sequencer import Sequencer
from app.ledger.service import OnConnection, Poster, post_notice

log = structlog.get_logger("timebank.audit")


@dataclass
class Announced:
    """A rotation and the books whose journal records it."""

    rotation: Rotation
    books: list[str] = field(default_factory=list)


def notice_facts(rotation: Rotation) -> dict[str, str | None]:
    """The facts a `notice.key_rotated` records (public: no key material)."""
    moment = datetime.fromtimestamp(rotation.key.valid_from, UTC)
    return {
        "kid": rotation.key.kid,
        "previous_kid": rotation.previous_kid,
        "valid_from": format_time(moment),
    }


@dataclass(frozen=True, slots=True)
class RotationPlan:
    """What a rotation would write: a new key, and a notice in each of `books`."""

    latest_kid: str | None
    books: list[str]


async def rotation_plan(conn: asyncpg.Connection) -> RotationPlan:
    """What `timebank keys rotate` would write now (read only)."""
    stored, _ = await load_keys(conn)
    books = [row["code"] for row in await conn.fetch("SELECT code FROM books ORDER BY code")]
    return RotationPlan(stored[-1].kid if stored else None, books)


async def announce(conn: asyncpg.Connection, sequencer: Poster, rotation: Rotation) -> Announced:
    """Append the rotation's notice to every book, once per book (a repeat within the
    idempotency retention replays instead of appending again). A refused notice is raised:
    the rotation's transaction then rolls back, key and notices alike."""
    result = Announced(rotation)
    facts = notice_facts(rotation)
    for row in await conn.fetch("SELECT code FROM books ORDER BY code"):
        book = row["code"]
        key = f"notice:key_rotated:{rotation.key.kid}:{book}"
        ref = IdempotencyRef(SYSTEM_CREDENTIAL, key, f"key_rotated:{rotation.key.kid}")
        outcome = await post_notice(sequencer, book, "key_rotated", dict(facts), ref)
        if outcome.status_code >= 400:
            raise refusal(outcome)
        result.books.append(book)
    return result


async def rotate_and_announce(
    conn: asyncpg.Connection, sequencer: Sequencer, passphrase: bytes, lead_s: float
) -> Announced:
    """Rotate the signing key and record it in every book's journal, in one transaction: a
    key is never rotated without its notices (docs/consistency.md)."""
    async with conn.transaction():
        rotation = await rotate_key(conn, passphrase, lead_s)
        fault_point("keys.rotate.rotated")
        announced = await announce(conn, OnConnection(conn, sequencer), rotation)
        fault_point("keys.rotate.announced")
    log.info("audit.key_rotated", **notice_facts(rotation), books=len(announced.books))
    return announced
