"""HTTP routes of service projects: publishing, sign-ups, the check-in code and check-in."""

from __future__ import annotations

import io
from typing import Annotated, Literal
from uuid import UUID

import segno
from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.http.actions import ActionResult, answer_action
from app.http.caller import CallerDep
from app.http.context import Posting, SessionDep
from app.http.responses import json_response
from app.identity import access
from app.identity.authorization import ALL_ROLES, listed_book, require_book
from app.identity.dependencies import allow
from app.kit.pagination import keyset_split
from app.ledger.schemas import BookCode
from app.volunteering import checkin_codes, needs, projects, records, schemas
from app.volunteering.record_access import visible_project
from app.volunteering.rules import rules_of

router = APIRouter(prefix="/v1", tags=["projects"])

PUBLISHERS = ("admin", "org")
SIGNERS = ("admin", "org", "miniprogram")


@router.post(
    "/projects",
    status_code=201,
    response_model=schemas.ProjectRead,
    dependencies=[allow(PUBLISHERS, "publish projects")],
)
async def create_project(data: schemas.ProjectCreate, ctx: Posting) -> Response:
    """Publish a service project (an organisation, or an admin naming one)."""
    caller = ctx.caller
    require_book(caller, data.book, f"book {data.book!r}")
    organisation_id = access.acting_organisation(caller, data.organisation_id, "publishes")

    async def action(session: AsyncSession) -> ActionResult:
        await needs.organisation_in_book(session, organisation_id, data.book)
        project = await projects.create_project(
            session, data, organisation_id, caller.credential.id
        )
        return ActionResult(201, project.model_dump(mode="json"))

    return await answer_action(ctx, action)


@router.get(
    "/projects",
    response_model=schemas.ProjectPage,
    dependencies=[allow(ALL_ROLES, "read projects")],
)
async def list_projects(
    caller: CallerDep,
    session: SessionDep,
    book: BookCode | None = None,
    organisation_id: UUID | None = None,
    status: Literal["published", "closed"] | None = None,
    after: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> schemas.ProjectPage:
    """Projects of the caller's book (a public directory: every role may list them)."""
    rows = await projects.list_projects(
        session, listed_book(caller, book), organisation_id, status, after, limit
    )
    items, next_after = keyset_split(rows, limit)
    return schemas.ProjectPage(items=items, next_after=next_after)


@router.get(
    "/projects/{project_id}",
    response_model=schemas.ProjectRead,
    dependencies=[allow(ALL_ROLES, "read projects")],
)
async def get_project(
    project_id: UUID, caller: CallerDep, session: SessionDep
) -> schemas.ProjectRead:
    """A project and the needs it addresses."""
    return await visible_project(session, caller, project_id)


@router.patch(
    "/projects/{project_id}",
    response_model=schemas.ProjectRead,
    dependencies=[allow(PUBLISHERS, "change projects")],
)
async def update_project(
    project_id: UUID, data: schemas.ProjectUpdate, caller: CallerDep, session: SessionDep
) -> schemas.ProjectRead:
    """Close a project to sign-ups and check-ins (or publish it again)."""
    project = await visible_project(session, caller, project_id)
    access.require_owner(caller, project.organisation_id, "change this project")
    return await projects.set_project_status(session, project_id, data.status)


@router.get(
    "/projects/{project_id}/candidates",
    response_model=list[schemas.VolunteerCandidate],
    dependencies=[allow(PUBLISHERS, "match volunteers")],
)
async def project_candidates(
    project_id: UUID,
    caller: CallerDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[schemas.VolunteerCandidate]:
    """Members of the project's community who served in its category before (matching)."""
    project = await visible_project(session, caller, project_id)
    access.require_owner(caller, project.organisation_id, "match volunteers for it")
    return await projects.candidates(session, project, limit)


@router.get(
    "/projects/{project_id}/checkin-code",
    response_model=schemas.CheckinCode,
    responses={
        200: {"content": {"image/svg+xml": {}}, "description": "the code, or its QR (svg)"},
    },
    dependencies=[allow(PUBLISHERS, "show check-in codes")],
)
async def checkin_code(
    project_id: UUID,
    caller: CallerDep,
    session: SessionDep,
    request: Request,
    format: Annotated[str, Query(pattern="^(json|svg)$")] = "json",
) -> Response:
    """A fresh check-in code for the organisation's screen at the site; ask again before it
    expires (it rotates). `format=svg`: the code as a QR code."""
    project = await visible_project(session, caller, project_id)
    access.require_owner(caller, project.organisation_id, "show its check-in code")
    # The key never changes: read without locking (a lock would queue the screen behind
    # sign-ups).
    key = (await projects.project_row(session, project_id, lock=False)).checkin_key
    rules = rules_of(request.app.state.settings)
    code, expires = checkin_codes.make_code(
        project_id, key, request.app.state.clock(), rules.code_ttl_s
    )
    if format == "svg":
        out = io.BytesIO()
        segno.make(code, error="m", micro=False).save(out, kind="svg", scale=6, xmldecl=False)
        return Response(
            out.getvalue(), media_type="image/svg+xml", headers={"Cache-Control": "no-store"}
        )
    body = {"project_id": str(project_id), "code": code, "expires_at": expires.isoformat()}
    return json_response(200, body, {"Cache-Control": "no-store"})


@router.post(
    "/projects/{project_id}/signups",
    status_code=201,
    response_model=schemas.SignupRead,
    responses={200: {"description": "already signed up"}},
    dependencies=[allow(SIGNERS, "sign members up")],
)
async def sign_up(
    project_id: UUID,
    caller: CallerDep,
    session: SessionDep,
    request: Request,
    response: Response,
    data: schemas.SignupCreate | None = None,
) -> schemas.SignupRead:
    """Take a place (the mini-program for its member; an organisation or admin for a member
    in its reach); signing up again answers 200 with the same place."""
    project = await visible_project(session, caller, project_id)
    member_id = access.acting_member(caller, data.member_id if data else None)
    await access.reachable_member(session, caller, member_id, project.book)
    signup, taken = await projects.sign_up(
        session, project_id, member_id, request.app.state.clock()
    )
    if not taken:
        response.status_code = 200
    return signup


@router.get(
    "/projects/{project_id}/signups",
    response_model=schemas.SignupPage,
    dependencies=[allow(("admin", "auditor", "org"), "read sign-ups")],
)
async def list_signups(
    project_id: UUID, caller: CallerDep, session: SessionDep
) -> schemas.SignupPage:
    """Who signed up (the organisation, admins and auditors)."""
    project = await visible_project(session, caller, project_id)
    access.require_owner(caller, project.organisation_id, "read its sign-ups")
    return schemas.SignupPage(items=await projects.list_signups(session, project_id))


@router.delete(
    "/projects/{project_id}/signups/{member_id}",
    response_model=schemas.SignupRead,
    dependencies=[allow(SIGNERS, "cancel sign-ups")],
)
async def cancel_signup(
    project_id: UUID, member_id: UUID, caller: CallerDep, session: SessionDep
) -> schemas.SignupRead:
    """Give a place back."""
    project = await visible_project(session, caller, project_id)
    member_id = access.acting_member(caller, member_id)
    await access.reachable_member(session, caller, member_id, project.book)
    return await projects.cancel_signup(session, project_id, member_id)


@router.post(
    "/projects/{project_id}/checkin",
    status_code=201,
    response_model=schemas.ServiceRecordRead,
    responses={200: {"description": "already checked in here"}},
    dependencies=[allow(("miniprogram",), "check in")],
)
async def check_in(
    project_id: UUID,
    data: schemas.CodeIn,
    caller: CallerDep,
    session: SessionDep,
    request: Request,
    response: Response,
) -> schemas.ServiceRecordRead:
    """Check in at the site with the code it displays (the mini-program, for its member)."""
    project = await visible_project(session, caller, project_id)
    member_id = access.acting_member(caller, None)
    await access.reachable_member(session, caller, member_id, project.book)
    record, created = await records.check_in(
        session,
        rules_of(request.app.state.settings),
        project_id,
        member_id,
        data.code,
        request.app.state.clock(),
        caller.actor(),
    )
    if not created:
        response.status_code = 200
    return record
