"""The route of a member's balances across assets and books."""

from __future__ import annotations

from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request

from app.exchange.balances import schemas
from app.exchange.balances import service as balances
from app.http.caller import CallerDep
from app.http.context import SessionDep
from app.identity import access
from app.identity.authorization import sees_members_book
from app.identity.dependencies import allow

router = APIRouter(prefix="/v1", tags=["members"])

READERS = ("admin", "auditor", "miniprogram", "org")


@router.get(
    "/members/{member_id}/balances",
    response_model=schemas.MemberBalances,
    dependencies=[allow(READERS, "read members")],
)
async def member_balances(
    member_id: UUID, caller: CallerDep, session: SessionDep, request: Request
) -> schemas.MemberBalances:
    """The member's balance in each asset: their book's accounts, then those they hold in other
    books within the caller's reach; for an asset with a validity period, what lapses when."""
    row = await access.visible_member(session, caller, member_id)
    zone = ZoneInfo(request.app.state.settings.service_timezone)
    today = request.app.state.clock().astimezone(zone).date()
    return await balances.member_balances(
        session, row, zone, today, lambda book: sees_members_book(caller, book)
    )
