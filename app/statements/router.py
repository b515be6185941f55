"""HTTP route of a member's history, each line naming what it came from."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from app.http.caller import CallerDep
from app.http.context import SessionDep
from app.identity import access
from app.identity.authorization import require_members_book
from app.identity.dependencies import allow
from app.ledger.schemas import BookCode
from app.statements import service
from app.statements.schemas import MemberEntriesPage

router = APIRouter(prefix="/v1", tags=["members"])

READERS = ("admin", "auditor", "miniprogram", "org")


@router.get(
    "/members/{member_id}/entries",
    response_model=MemberEntriesPage,
    dependencies=[allow(READERS, "read members")],
)
async def member_entries(
    member_id: UUID,
    caller: CallerDep,
    session: SessionDep,
    before_seq: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    book: Annotated[
        BookCode | None,
        Query(
            description="the book whose accounts to list (default: the member's own); a member "
            "who moved hours to another book holds accounts there (see /balances)",
        ),
    ] = None,
) -> MemberEntriesPage:
    """The member's history across their accounts in one book, newest first, with running
    balances (seq is per book, so a page never mixes books). Each line's `about` names the
    project, kiosk items, exchange rule or other book it came from, with a Chinese label."""
    row = await access.visible_member(session, caller, member_id)
    if book is not None:
        require_members_book(caller, book)
    return await service.member_history(session, row, book or row.book, before_seq, limit)
