"""HTTP routes of residents' needs and of the service catalogue."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from app.http.actions import ActionResult, answer_action
from app.http.caller import CallerDep
from app.http.context import Posting, SessionDep
from app.identity import access
from app.identity.authorization import (
    ALL_ROLES,
    listed_book,
    require_book,
    require_organisation_kind,
)
from app.identity.dependencies import allow
from app.kit.pagination import keyset_split
from app.ledger.schemas import BookCode
from app.volunteering import needs, record_access, schemas

router = APIRouter(prefix="/v1", tags=["needs"])

REGISTRARS = ("admin", "org")


@router.get(
    "/service-catalog",
    response_model=schemas.Catalog,
    dependencies=[allow(ALL_ROLES, "read the catalogue")],
)
async def service_catalog(caller: CallerDep, session: SessionDep) -> schemas.Catalog:
    """The service categories (扶老, 助困, …) and target groups of needs: data, not code."""
    return await needs.catalog(session)


@router.post(
    "/needs",
    status_code=201,
    response_model=schemas.NeedRead,
    dependencies=[allow(REGISTRARS, "register needs")],
)
async def create_need(data: schemas.NeedCreate, ctx: Posting) -> Response:
    """Register a resident need (a community or social-work station; no personal data)."""
    caller = ctx.caller
    require_book(caller, data.book, f"book {data.book!r}")
    organisation_id = access.acting_organisation(caller, data.organisation_id, "registers needs")

    async def action(session: AsyncSession) -> ActionResult:
        kind = await needs.organisation_in_book(session, organisation_id, data.book)
        require_organisation_kind(
            kind, needs.NEED_REGISTRARS, "only a community or a social-work station registers needs"
        )
        need = await needs.create_need(session, data, organisation_id, caller.credential.id)
        return ActionResult(201, need.model_dump(mode="json"))

    return await answer_action(ctx, action)


@router.get(
    "/needs",
    response_model=schemas.NeedPage,
    dependencies=[allow(ALL_ROLES, "read needs")],
)
async def list_needs(
    caller: CallerDep,
    session: SessionDep,
    book: BookCode | None = None,
    status: schemas.NeedStatus | None = None,
    unmet: Annotated[
        bool,
        Query(description="only open needs no project addresses, most urgent and oldest first"),
    ] = False,
    after: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> schemas.NeedPage:
    """Needs of the caller's book (they hold no personal data: every role may read them)."""
    rows = await needs.list_needs(session, listed_book(caller, book), status, unmet, after, limit)
    if unmet:
        return schemas.NeedPage(items=rows[:limit], next_after=None)
    items, next_after = keyset_split(rows, limit)
    return schemas.NeedPage(items=items, next_after=next_after)


@router.get(
    "/needs/{need_id}",
    response_model=schemas.NeedRead,
    dependencies=[allow(ALL_ROLES, "read needs")],
)
async def get_need(need_id: UUID, caller: CallerDep, session: SessionDep) -> schemas.NeedRead:
    """A need and the projects that address it."""
    return await record_access.visible_need(session, caller, need_id)


@router.patch(
    "/needs/{need_id}",
    response_model=schemas.NeedRead,
    dependencies=[allow(REGISTRARS, "update needs")],
)
async def update_need(
    need_id: UUID, data: schemas.NeedUpdate, caller: CallerDep, session: SessionDep
) -> schemas.NeedRead:
    """Mark a need matched, met or closed (or open again): its registrar or an admin."""
    need = await record_access.visible_need(session, caller, need_id)
    access.require_owner(caller, need.organisation_id, "update this need")
    return await needs.set_need_status(session, need_id, data.status)
