"""HTTP routes of pools and donations."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from app.exchange import errors
from app.exchange.pools import schemas
from app.exchange.pools import service as pools
from app.http.actions import ActionResult, answer_action
from app.http.caller import CallerDep
from app.http.context import Posting, SessionDep
from app.identity.access import require_owner, sees_organisation_data, visible_organisation
from app.identity.authorization import reaches_book
from app.identity.dependencies import allow

router = APIRouter(prefix="/v1", tags=["pools and donations"])

MANAGERS = ("admin", "org")
READERS = ("admin", "auditor", "org")


@router.post(
    "/organisations/{organisation_id}/pools",
    status_code=201,
    response_model=schemas.PoolRead,
    responses={200: {"description": "the pool was open already"}},
    dependencies=[allow(MANAGERS, "open pools")],
)
async def open_pool(organisation_id: UUID, data: schemas.PoolOpen, ctx: Posting) -> Response:
    """Open the organisation's pool for an asset: an account without overdraft that donations
    fund and exchanges pay from (the organisation itself, or an admin)."""
    caller = ctx.caller

    async def action(session: AsyncSession) -> ActionResult:
        await visible_organisation(session, caller, organisation_id)
        require_owner(caller, organisation_id, "open its pools")
        pool, created = await pools.open_pool(session, organisation_id, data.asset)
        return ActionResult(201 if created else 200, pool.model_dump(mode="json"))

    return await answer_action(ctx, action)


@router.get(
    "/organisations/{organisation_id}/pools",
    response_model=list[schemas.PoolRead],
    dependencies=[allow(READERS, "read pools")],
)
async def list_pools(
    organisation_id: UUID, caller: CallerDep, session: SessionDep
) -> list[schemas.PoolRead]:
    """The organisation's pools and their balances."""
    await visible_organisation(session, caller, organisation_id)
    return await pools.list_pools(session, organisation_id)


@router.post(
    "/organisations/{organisation_id}/donations",
    status_code=201,
    response_model=schemas.DonationRead,
    dependencies=[allow(MANAGERS, "record donations")],
)
async def record_donation(
    organisation_id: UUID, data: schemas.DonationCreate, ctx: Posting, request: Request
) -> Response:
    """Record a donation into the organisation's pool and post it (`donation`): the journal
    names the donation's id; the donor's details stay here, encrypted."""
    caller = ctx.caller
    cipher = request.app.state.personal_data
    async with ctx.sessions() as session:
        await visible_organisation(session, caller, organisation_id)
    require_owner(caller, organisation_id, "record donations to its pools")
    source = await pools.donations_source(ctx.sessions, organisation_id, data.asset)

    async def action(session: AsyncSession) -> ActionResult:
        donation = await pools.record_donation(
            session, ctx.sequencer, cipher, organisation_id, data, caller, ctx.idem, source
        )
        return ActionResult(201, donation.model_dump(mode="json"))

    return await answer_action(ctx, action)


@router.get(
    "/donations/{donation_id}",
    response_model=schemas.DonationRead,
    dependencies=[allow(READERS, "read donations")],
)
async def get_donation(
    donation_id: UUID, caller: CallerDep, session: SessionDep, request: Request
) -> schemas.DonationRead:
    """A donation; the donor is shown to admins and the receiving organisation only."""
    donation = await pools.get_donation(session, donation_id, None)
    if not reaches_book(caller, donation.book):
        raise errors.DonationNotFound(f"donation {donation_id} does not exist")
    if sees_organisation_data(caller, donation.organisation_id):
        donation = await pools.get_donation(session, donation_id, request.app.state.personal_data)
    return donation
