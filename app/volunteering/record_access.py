"""Which service records a caller sees: book-wide roles the book's, an organisation those it
certifies, a mini-program its member's; any other is answered as missing (404)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.http.caller import Caller
from app.identity.authorization import reaches_book
from app.volunteering import errors
from app.volunteering.records import get_record


def sees_record(caller: Caller, record: dict[str, Any]) -> bool:
    """Book-wide roles see the book's records; an organisation those it certifies; a
    mini-program its member's."""
    if not reaches_book(caller, record["book"]):
        return False
    if caller.role in ("admin", "auditor"):
        return True
    if caller.role == "org":
        return str(record["organisation_id"]) == caller.organisation_id
    if caller.role == "miniprogram":
        return caller.member_id is not None and str(record["member_id"]) == caller.member_id
    return False


async def visible_record(
    session: AsyncSession, caller: Caller, record_id: uuid.UUID, lock: bool = False
) -> dict[str, Any]:
    """A record within the caller's reach; 404 (as if missing) otherwise."""
    record = await get_record(session, record_id, lock=lock)
    if not sees_record(caller, record):
        raise errors.ServiceRecordNotFound(f"service record {record_id} does not exist")
    return record
