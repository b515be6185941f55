"""HTTP routes of pools and donations."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.exchange import errors
from app.exchange.pools import schemas
from app.exchange.pools import service as pools
from app.http.actions import ActionResult, answer_action
from app.http.caller import Caller, CallerDep
from app.http.context import Posting, SessionDep
from app.identity.access import require_owner
from app.identity.dependencies import allow
from app.identity.errors import OrganisationNotFound
from app.identity.organisations import get_organisation

router = APIRouter(prefix="/v1", tags=["pools and donations"])

MANAGERS = ("admin", "org")
READERS = ("admin", "auditor", "org")


async def _reachable_organisation(session: Any, caller: Caller, organisation_id: UUID) -> None:
    org = await get_organisation(session, organisation_id)
    if caller.book is not None and org["book"] != caller.book:
        raise OrganisationNotFound(f"organisation {organisation_id} does not exist")


def _pool_json(pool: dict[str, Any]) -> dict[str, Any]:
    return schemas.PoolRead.model_validate(pool).model_dump(mode="json")


def _donation_json(donation: dict[str, Any]) -> dict[str, Any]:
    return schemas.DonationRead.model_validate(donation).model_dump(mode="json")


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

    async def action(session: Any) -> ActionResult:
        await _reachable_organisation(session, caller, organisation_id)
        require_owner(caller, organisation_id, "open its pools")
        pool, created = await pools.open_pool(session, organisation_id, data.asset)
        return ActionResult(201 if created else 200, _pool_json(pool))

    return await answer_action(ctx, action)


@router.get(
    "/organisations/{organisation_id}/pools",
    response_model=list[schemas.PoolRead],
    dependencies=[allow(READERS, "read pools")],
)
async def list_pools(organisation_id: UUID, caller: CallerDep, session: SessionDep) -> Any:
    """The organisation's pools and their balances."""
    await _reachable_organisation(session, caller, organisation_id)
    return [_pool_json(p) for p in await pools.list_pools(session, organisation_id)]


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
        await _reachable_organisation(session, caller, organisation_id)
    require_owner(caller, organisation_id, "record donations to its pools")
    source = await pools.donations_source(ctx.sessions, organisation_id, data.asset)

    async def action(session: Any) -> ActionResult:
        donation = await pools.record_donation(
            session, ctx.sequencer, cipher, organisation_id, data, caller, ctx.idem, source
        )
        return ActionResult(201, _donation_json(donation))

    return await answer_action(ctx, action)


@router.get(
    "/donations/{donation_id}",
    response_model=schemas.DonationRead,
    dependencies=[allow(READERS, "read donations")],
)
async def get_donation(
    donation_id: UUID, caller: CallerDep, session: SessionDep, request: Request
) -> Any:
    """A donation; the donor is shown to admins and the receiving organisation only."""
    donation = await pools.get_donation(session, donation_id, None)
    if caller.book is not None and donation["book"] != caller.book:
        raise errors.DonationNotFound(f"donation {donation_id} does not exist")
    sees_donor = caller.role == "admin" or (
        caller.role == "org" and str(donation["organisation_id"]) == caller.organisation_id
    )
    if sees_donor:
        donation = await pools.get_donation(session, donation_id, request.app.state.personal_data)
    return _donation_json(donation)
