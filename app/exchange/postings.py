"""What the postings of gifts and of the public time pool share: their ledger keys, the
member's row lock, the refusal of an erased member (the kiosk's redemptions apply it too),
and how an answer shows the entry appended (no HTTP)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.exchange.schemas import EntryRef
from app.http.caller import SYSTEM_CREDENTIAL
from app.identity import errors as identity_errors
from app.ledger.outcomes import IdempotencyRef


def posting_ref(what: str, posting: uuid.UUID, request_hash: str) -> IdempotencyRef:
    """The ledger key of a posting: `<what>:<id>` under the system credential."""
    return IdempotencyRef(SYSTEM_CREDENTIAL, f"{what}:{posting}", request_hash)


@dataclass(frozen=True, slots=True)
class LockedMember:
    """A member's book and status, read with the member's row locked."""

    book: str
    status: str


async def lock_member(session: AsyncSession, member_id: uuid.UUID) -> LockedMember:
    """Lock a member's row until the transaction ends; its book and status.

    FOR NO KEY UPDATE: it serialises whoever locks the row this way (and an erasure, which
    updates it), but not the inserts of rows that refer to the member (sign-ups, records,
    quotes), which take only a key-share lock."""
    row = (
        await session.execute(
            text("SELECT book_code AS book, status FROM members WHERE id = :id FOR NO KEY UPDATE"),
            {"id": member_id},
        )
    ).one_or_none()
    if row is None:
        raise identity_errors.MemberNotFound(f"member {member_id} does not exist")
    return LockedMember(row.book, row.status)


def require_not_erased(member_id: uuid.UUID, status: str) -> None:
    """An erased member neither gives nor receives."""
    if status == "erased":
        raise identity_errors.MemberErased(
            f"member {member_id} was erased and takes part in no transfer",
            member_id=str(member_id),
        )


def entry_ref(posting: dict[str, Any]) -> EntryRef:
    """What an answer shows of the entry a posting appended (`posting`: the ledger's answer)."""
    entry = posting["entry"]
    return EntryRef(
        tx_id=entry["tx_id"],
        seq=entry["seq"],
        kind=entry["kind"],
        posted_at=entry["posted_at"],
        entry_hash=posting["entry_hash"],
        legs=entry["legs"],
        overflow=entry["meta"].get("overflow"),
    )


def overflow_of(meta: dict[str, Any], account_id: str) -> int:
    """What a storage cap turned away from `account_id` in an entry (its `meta.overflow`)."""
    return sum(
        int(item["amount"]) for item in meta.get("overflow") or [] if item["account"] == account_id
    )
