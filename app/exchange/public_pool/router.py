"""HTTP routes of a book's public time pool: donations, grants, and the pool's state."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from app.exchange.public_pool import schemas
from app.exchange.public_pool import service as public_pool
from app.exchange.schemas import BookPath
from app.http.actions import ActionResult, action_id, answer_action
from app.http.caller import CallerDep
from app.http.context import Posting, SessionDep
from app.identity.access import acting_member
from app.identity.authorization import ALL_ROLES, require_book
from app.identity.dependencies import allow

router = APIRouter(prefix="/v1", tags=["exchange"])

DONORS = ("admin", "miniprogram")
GRANTORS = ("admin", "org")


@router.post(
    "/books/{code}/public-pool/donations",
    status_code=201,
    response_model=schemas.DonationPosted,
    dependencies=[allow(DONORS, "donate to the public pool")],
)
async def donate(code: BookPath, data: schemas.PublicPoolDonationCreate, ctx: Posting) -> Response:
    """A member donates units to the book's public time pool (公益时间池): a mini-program for
    its member, or an admin."""
    caller = ctx.caller
    require_book(caller, code, f"book {code!r}")
    member = acting_member(caller, data.member_id)
    plan = await public_pool.plan(
        ctx.sessions,
        caller,
        action_id(ctx.idem, public_pool.KIND_DONATION),
        code,
        member,
        data.asset,
        data.amount,
    )

    async def action(session: AsyncSession) -> ActionResult:
        body = await public_pool.donate(session, ctx.sequencer, plan, caller, ctx.idem.request_hash)
        return ActionResult(201, body.model_dump(mode="json"))

    return await answer_action(ctx, action)


@router.post(
    "/books/{code}/public-pool/grants",
    status_code=201,
    response_model=schemas.GrantPosted,
    dependencies=[allow(GRANTORS, "grant from the public pool")],
)
async def grant(code: BookPath, data: schemas.GrantCreate, ctx: Posting) -> Response:
    """Grant units of the book's public time pool to a member in need, with the reason (no
    personal data): an organisation (to its members) or an admin. The member's storage cap
    applies: what it turns away stays in the pool."""
    caller = ctx.caller
    require_book(caller, code, f"book {code!r}")
    plan = await public_pool.plan(
        ctx.sessions,
        caller,
        action_id(ctx.idem, public_pool.KIND_GRANT),
        code,
        data.member_id,
        data.asset,
        data.amount,
        data.reason,
    )

    async def action(session: AsyncSession) -> ActionResult:
        body = await public_pool.grant(
            session, ctx.sessions, ctx.sequencer, plan, caller, ctx.idem.request_hash
        )
        return ActionResult(201, body.model_dump(mode="json"))

    return await answer_action(ctx, action)


@router.get(
    "/books/{code}/public-pool",
    response_model=schemas.PublicPools,
    dependencies=[allow(ALL_ROLES, "read the public pool")],
)
async def get_public_pool(
    code: BookPath,
    caller: CallerDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100, description="latest entries per pool")] = 20,
) -> schemas.PublicPools:
    """The book's public time pool: per asset its balance and latest entries (kind, amount,
    balance after; who gave or received is not shown)."""
    require_book(caller, code, f"book {code!r}")
    return await public_pool.pools(session, code, limit)
