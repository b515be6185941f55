"""HTTP routes of gifts."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from app.exchange.gifts import schemas
from app.exchange.gifts import service as gifts
from app.http.actions import ActionResult, action_id, answer_action
from app.http.caller import CallerDep
from app.http.context import Posting, SessionDep
from app.identity.access import acting_member, visible_member
from app.identity.authorization import require_members_book
from app.identity.dependencies import allow
from app.ledger.schemas import BookCode

router = APIRouter(prefix="/v1", tags=["exchange"])

GIVERS = ("admin", "miniprogram")
MEMBER_READERS = ("admin", "auditor", "org", "miniprogram")


@router.post(
    "/gifts",
    status_code=201,
    response_model=schemas.GiftPosted,
    dependencies=[allow(GIVERS, "give")],
)
async def give(data: schemas.GiftCreate, ctx: Posting, request: Request) -> Response:
    """Give units to another member of the same book (转赠): a mini-program for its member, or
    an admin. Refused for an erased member, a frozen or closed account, a gift to oneself, a
    relationship the book's policy does not list, or beyond the giver's yearly cap; what
    the receiver's storage cap turns away goes to the book's public time pool."""
    caller = ctx.caller
    giver = acting_member(caller, data.from_member_id)
    plan = await gifts.plan_gift(
        ctx.sessions,
        caller,
        action_id(ctx.idem, gifts.KIND_GIFT),
        giver,
        data.to_member_id,
        data.book,
        data.asset,
        data.amount,
        data.relationship,
    )
    now = request.app.state.clock()
    zone = ZoneInfo(request.app.state.settings.service_timezone)

    async def action(session: AsyncSession) -> ActionResult:
        body = await gifts.give(
            session, ctx.sessions, ctx.sequencer, plan, caller, ctx.idem.request_hash, now, zone
        )
        return ActionResult(201, body.model_dump(mode="json"))

    return await answer_action(ctx, action)


@router.get(
    "/members/{member_id}/gifts",
    response_model=schemas.GiftPage,
    dependencies=[allow(MEMBER_READERS, "read members")],
)
async def member_gifts(
    member_id: UUID,
    caller: CallerDep,
    session: SessionDep,
    before_seq: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    book: Annotated[
        BookCode | None, Query(description="the book of the gifts (default: the member's own)")
    ] = None,
) -> schemas.GiftPage:
    """The gifts the member gave and received in one book, newest first, read from the
    journal."""
    row = await visible_member(session, caller, member_id)
    if book is not None:
        require_members_book(caller, book)
    return await gifts.list_gifts(session, row, book or row.book, before_seq, limit)
