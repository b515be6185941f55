"""HTTP routes of exchange: a book's asset policies, gifts, and the public time pool."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from app.exchange import gifts, gifts_schemas, policies, public_pool
from app.http.actions import ActionResult, Notice, action_id, answer_action
from app.http.caller import CallerDep
from app.http.context import Posting, SessionDep
from app.identity.access import acting_member
from app.identity.authorization import ALL_ROLES, require_book, sees_member
from app.identity.dependencies import allow
from app.identity.errors import MemberNotFound
from app.identity.members import get_member_row
from app.ledger import service as ledger
from app.ledger.schemas import AssetCode, BookCode

router = APIRouter(prefix="/v1", tags=["exchange"])

GIVERS = ("admin", "miniprogram")
DONORS = ("admin", "miniprogram")
GRANTORS = ("admin", "org")
MEMBER_READERS = ("admin", "auditor", "org", "miniprogram")

BookPath = Annotated[BookCode, Path(description="the book's code")]
AssetPath = Annotated[AssetCode, Path(description="the asset's code")]


@router.put(
    "/books/{code}/asset-policies/{asset}",
    response_model=gifts_schemas.PolicyRead,
    dependencies=[allow(("admin",), "set asset policies")],
)
async def put_asset_policy(
    code: BookPath, asset: AssetPath, data: gifts_schemas.PolicyWrite, ctx: Posting
) -> Response:
    """Set the book's policy for an asset (admins): the storage cap of a member's account, the
    yearly cap of a member's gifts, and the relationships a gift must name one of. Recorded as
    `notice.asset_policy_changed` in the book."""
    caller = ctx.caller
    require_book(caller, code, f"book {code!r}")

    async def action(session: AsyncSession) -> ActionResult:
        await ledger.get_book(session, code)
        await policies.require_asset(session, asset)
        policy = await policies.put_policy(
            session, code, asset, data.storage_cap, data.gift_yearly_cap, data.gift_relations
        )
        body = gifts_schemas.PolicyRead.model_validate(policy).model_dump(mode="json")
        notice = Notice(code, "asset_policy_changed", policies.policy_facts(policy), caller.actor())
        return ActionResult(200, body, notice)

    return await answer_action(ctx, action)


@router.get(
    "/books/{code}/asset-policies",
    response_model=gifts_schemas.PolicyList,
    dependencies=[allow(ALL_ROLES, "read asset policies")],
)
async def list_asset_policies(code: BookPath, caller: CallerDep, session: SessionDep) -> Any:
    """The book's asset policies (an asset without one has no limits)."""
    require_book(caller, code, f"book {code!r}")
    await ledger.get_book(session, code)
    return {"book": code, "items": await policies.list_policies(session, code)}


@router.post(
    "/gifts",
    status_code=201,
    response_model=gifts_schemas.GiftPosted,
    dependencies=[allow(GIVERS, "give")],
)
async def give(data: gifts_schemas.GiftCreate, ctx: Posting, request: Request) -> Response:
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
        return ActionResult(201, body)

    return await answer_action(ctx, action)


@router.get(
    "/members/{member_id}/gifts",
    response_model=gifts_schemas.GiftPage,
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
) -> Any:
    """The gifts the member gave and received in one book, newest first, read from the
    journal."""
    row = await get_member_row(session, member_id)
    if not await sees_member(session, caller, row):
        raise MemberNotFound(f"member {member_id} does not exist")
    if book is not None:
        require_book(caller, book, f"book {book!r}")
    return await gifts.list_gifts(session, row, book or str(row["book"]), before_seq, limit)


@router.post(
    "/books/{code}/public-pool/donations",
    status_code=201,
    response_model=gifts_schemas.DonationPosted,
    dependencies=[allow(DONORS, "donate to the public pool")],
)
async def donate(code: BookPath, data: gifts_schemas.DonationCreate, ctx: Posting) -> Response:
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
        return ActionResult(201, body)

    return await answer_action(ctx, action)


@router.post(
    "/books/{code}/public-pool/grants",
    status_code=201,
    response_model=gifts_schemas.GrantPosted,
    dependencies=[allow(GRANTORS, "grant from the public pool")],
)
async def grant(code: BookPath, data: gifts_schemas.GrantCreate, ctx: Posting) -> Response:
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
        return ActionResult(201, body)

    return await answer_action(ctx, action)


@router.get(
    "/books/{code}/public-pool",
    response_model=gifts_schemas.PublicPools,
    dependencies=[allow(ALL_ROLES, "read the public pool")],
)
async def get_public_pool(
    code: BookPath,
    caller: CallerDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100, description="latest entries per pool")] = 20,
) -> Any:
    """The book's public time pool: per asset its balance and latest entries (kind, amount,
    balance after; who gave or received is not shown)."""
    require_book(caller, code, f"book {code!r}")
    return await public_pool.pools(session, code, limit)
