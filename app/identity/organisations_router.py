"""HTTP routes of organisations: the region tree, their accounts and members."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from app.http.actions import answer_action
from app.http.caller import CallerDep
from app.http.context import Posting, SessionDep
from app.identity import access, enrolment, organisations, schemas
from app.identity.authorization import ALL_ROLES, listed_book, require_book
from app.identity.dependencies import allow
from app.kit.problems import Forbidden
from app.ledger.schemas import BookCode

router = APIRouter(prefix="/v1", tags=["organisations"])


@router.post(
    "/organisations",
    status_code=201,
    response_model=schemas.OrganisationRead,
    dependencies=[allow(("admin",), "create organisations")],
)
async def create_organisation(data: schemas.OrganisationCreate, ctx: Posting) -> Response:
    """Create an organisation (and its accounts); the book's journal records it (admins)."""
    require_book(ctx.caller, data.book, f"book {data.book!r}")
    actor = ctx.caller.actor()
    return await answer_action(
        ctx, lambda session: organisations.create_organisation(session, data, actor)
    )


@router.get(
    "/organisations",
    response_model=schemas.OrganisationPage,
    dependencies=[allow(ALL_ROLES, "list organisations")],
)
async def list_organisations(
    caller: CallerDep,
    session: SessionDep,
    book: BookCode | None = None,
    after: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> schemas.OrganisationPage:
    """Organisations in the caller's reach (a directory: every role may list its book's)."""
    return await organisations.list_organisations(session, listed_book(caller, book), after, limit)


@router.get(
    "/organisations/{organisation_id}",
    response_model=schemas.OrganisationRead,
    dependencies=[allow(ALL_ROLES, "read organisations")],
)
async def get_organisation(
    organisation_id: UUID, caller: CallerDep, session: SessionDep
) -> schemas.OrganisationRead:
    """An organisation of the caller's book, with its accounts."""
    return await access.visible_organisation(session, caller, organisation_id)


@router.patch(
    "/organisations/{organisation_id}",
    response_model=schemas.OrganisationRead,
    dependencies=[allow(("admin",), "change organisations")],
)
async def update_organisation(
    organisation_id: UUID, data: schemas.OrganisationUpdate, ctx: Posting
) -> Response:
    """Rename an organisation or move it in the tree; the journal records it (admins)."""
    async with ctx.sessions() as session:
        await access.visible_organisation(session, ctx.caller, organisation_id)
    actor = ctx.caller.actor()
    return await answer_action(
        ctx,
        lambda session: organisations.update_organisation(session, organisation_id, data, actor),
    )


@router.post(
    "/organisations/{organisation_id}/members",
    response_model=schemas.MembershipRead,
    dependencies=[allow(("admin", "org"), "enrol members")],
)
async def add_member(
    organisation_id: UUID,
    data: schemas.MembershipCreate,
    caller: CallerDep,
    session: SessionDep,
    request: Request,
) -> schemas.MembershipRead:
    """Enrol a member of the book with the enrolment code they gave (their consent); a retry
    with the same code answers the same membership."""
    org = await access.visible_organisation(session, caller, organisation_id)
    if caller.role == "org" and caller.organisation_id != str(organisation_id):
        raise Forbidden("an organisation enrols members into itself only")
    state = request.app.state
    return await enrolment.enrol(
        session,
        state.personal_data,
        org,
        data.enrolment_code,
        data.volunteer_number,
        state.clock(),
    )
