"""HTTP routes of members: registration, personal data, erasure, balances and history."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from app.http.caller import Caller, CallerDep
from app.http.context import SessionDep
from app.identity import access, enrolment, errors, member_search, members, schemas
from app.identity.authorization import (
    SEES_PERSONAL_DATA,
    one_listed_book,
    own_organisation_scope,
    require_book,
    sees_member,
)
from app.identity.dependencies import allow
from app.identity.personal import PersonalDataCipher
from app.kit.clock import utc_now
from app.kit.problems import Forbidden
from app.ledger.schemas import BookCode

router = APIRouter(prefix="/v1", tags=["members"])

READERS = ("admin", "auditor", "miniprogram", "org")
EDITORS = ("admin", "miniprogram")
REGISTRARS = ("admin", "miniprogram", "org")
# Who looks members up: a book's admins and auditors, an organisation its own members.
FINDERS = ("admin", "auditor", "org")


def _cipher(request: Request) -> PersonalDataCipher:
    cipher: PersonalDataCipher = request.app.state.personal_data
    return cipher


def _view(request: Request, caller: Caller, row: members.MemberRow) -> schemas.MemberRead:
    return members.member_view(row, _cipher(request), caller.role in SEES_PERSONAL_DATA)


@router.post(
    "/members",
    status_code=201,
    response_model=schemas.MemberRead,
    responses={200: {"description": "already registered: the same member"}},
    dependencies=[allow(REGISTRARS, "register members")],
)
async def register_member(
    data: schemas.MemberCreate,
    caller: CallerDep,
    session: SessionDep,
    request: Request,
    response: Response,
) -> schemas.MemberRead:
    """Register a member and open their accounts; a repeat with the same identity answers
    200 with the same member."""
    require_book(caller, data.book, f"book {data.book!r}")
    if caller.role == "org":
        own = UUID(str(caller.organisation_id))
        if data.organisation_id not in (None, own):
            raise Forbidden("an organisation registers members into itself only")
        data = data.model_copy(update={"organisation_id": own})
    row, created = await members.register_member_once(
        session, _cipher(request), data, utc_now().date()
    )
    if not created:
        response.status_code = 200
        if caller.role == "org" and data.organisation_id is not None:
            # The organisation knows the member's identity: it may enrol them.
            await members.join_organisation(session, data.organisation_id, row.id, row.book)
            row = await members.get_member_row(session, row.id)
        elif not await sees_member(session, caller, row):
            raise errors.MemberNotFound("the identity belongs to a member out of reach")
    return _view(request, caller, row)


@router.get(
    "/members",
    response_model=schemas.MemberPage,
    dependencies=[allow(FINDERS, "find members")],
)
async def find_members(
    caller: CallerDep,
    session: SessionDep,
    request: Request,
    book: Annotated[
        BookCode | None,
        Query(description="the book (a platform credential names one unless only one exists)"),
    ] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            description="a volunteer number (exact, any case), an 11-digit phone number "
            "(exact; spaces, hyphens and +86 allowed) or part of a display name (any case); "
            "phone numbers and names only for callers that see personal data (admins)",
        ),
    ] = None,
    organisation_id: Annotated[
        UUID | None,
        Query(description="only the members enrolled in this organisation (an org: its own)"),
    ] = None,
    after: Annotated[
        UUID | None, Query(description="the cursor: the previous page's next_after")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> schemas.MemberPage:
    """The members in the caller's reach, newest first, in keyset pages: an admin's or
    auditor's book, an organisation's own members (those it registered or enrolled). With
    `q`, those it names: a volunteer number, a phone number (found by its keyed hash, never
    decrypted) or part of a display name. Names are encrypted at rest, so a name search
    decrypts the candidates newest first, at most 5,000 a page: `scan_truncated` says the page
    stopped there, and `next_after` goes on from the last member scanned. Each item is the
    member as `GET /v1/members/{id}` shows it to the caller (masked for organisations and
    auditors, who may search by volunteer number only: `member-search-not-allowed`)."""
    scope_book = await one_listed_book(session, caller, book)
    own = own_organisation_scope(caller)
    if own is not None and organisation_id not in (None, UUID(own)):
        raise Forbidden("an organisation lists its own members only")
    search = member_search.read_query(q)
    full = caller.role in SEES_PERSONAL_DATA
    if search is not None and search.matched_by != "volunteer_number" and not full:
        raise errors.MemberSearchNotAllowed(
            f"role {caller.role!r} sees members' personal data masked, so it may not look "
            "them up by phone number or name: search by volunteer number"
        )
    reach = member_search.Reach(scope_book, UUID(own) if own else organisation_id)
    found = await member_search.find_members(session, _cipher(request), reach, search, after, limit)
    return schemas.MemberPage(
        items=[members.member_view(row, _cipher(request), full) for row in found.rows],
        next_after=found.next_after,
        matched_by=None if search is None else search.matched_by,
        scanned=found.scanned,
        scan_truncated=found.scan_truncated,
    )


@router.get(
    "/members/{member_id}",
    response_model=schemas.MemberRead,
    dependencies=[allow(READERS, "read members")],
)
async def get_member(
    member_id: UUID, caller: CallerDep, session: SessionDep, request: Request
) -> schemas.MemberRead:
    """A member; personal fields are masked unless the caller's role may see them."""
    return _view(request, caller, await access.visible_member(session, caller, member_id))


@router.patch(
    "/members/{member_id}",
    response_model=schemas.MemberRead,
    dependencies=[allow(EDITORS, "correct members' data")],
)
async def update_member(
    member_id: UUID,
    data: schemas.MemberUpdate,
    caller: CallerDep,
    session: SessionDep,
    request: Request,
) -> schemas.MemberRead:
    """Correct a member's personal data."""
    row = await access.visible_member(session, caller, member_id)
    row = await members.update_member(session, _cipher(request), row, data, utc_now().date())
    return _view(request, caller, row)


@router.post(
    "/members/{member_id}/erase",
    response_model=schemas.MemberRead,
    dependencies=[allow(EDITORS, "erase members")],
)
async def erase_member(
    member_id: UUID, caller: CallerDep, session: SessionDep, request: Request
) -> schemas.MemberRead:
    """Erase a member's personal data on request; accounts and journal entries remain."""
    await access.visible_member(session, caller, member_id)
    return _view(request, caller, await members.erase_member(session, member_id))


@router.post(
    "/members/{member_id}/enrolment-codes",
    status_code=201,
    response_model=schemas.EnrolmentCodeRead,
    dependencies=[allow(EDITORS, "ask for enrolment codes")],
)
async def create_enrolment_code(
    member_id: UUID, caller: CallerDep, session: SessionDep, request: Request
) -> schemas.EnrolmentCodeRead:
    """A single-use code the member gives an organisation to be enrolled in it (their
    mini-program, or an admin), valid for `TIMEBANK_ENROLMENT_CODE_TTL_S` (600 s)."""
    if caller.role == "miniprogram" and caller.member_id != str(member_id):
        # Only for the member it acts for in this request (X-Member-Id), never on its own.
        raise errors.MemberNotFound(f"member {member_id} does not exist")
    row = await access.visible_member(session, caller, member_id)
    if row.status != "active":
        raise errors.MemberErased("an erased member cannot be enrolled")
    state = request.app.state
    return await enrolment.issue(
        session,
        _cipher(request),
        member_id,
        caller.credential.id,
        state.clock(),
        state.settings.enrolment_code_ttl_s,
    )
