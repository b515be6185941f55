"""HTTP routes of service records: manual entry, check-out, approval, rejection, correction
and disputes."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from app.http.actions import ActionResult, action_id, answer_action
from app.http.caller import SYSTEM_CREDENTIAL, CallerDep
from app.http.context import Posting, SessionDep
from app.identity.access import require_owner, visible_organisation
from app.identity.authorization import listed_book
from app.identity.dependencies import allow
from app.kit.pagination import keyset_split
from app.ledger.outcomes import IdempotencyRef
from app.ledger.schemas import BookCode
from app.volunteering import (
    approval,
    corrections,
    disputes,
    importing,
    record_access,
    records,
    schemas,
)
from app.volunteering.rules import rules_of

router = APIRouter(prefix="/v1", tags=["service records"])

CERTIFIERS = ("admin", "org")
READERS = ("admin", "auditor", "org", "miniprogram")


@router.post(
    "/service-records",
    status_code=201,
    response_model=schemas.ServiceRecordRead,
    responses={200: {"description": "this external_id was recorded before"}},
    dependencies=[allow(CERTIFIERS, "enter service records")],
)
async def enter_record(
    data: schemas.ServiceRecordCreate, ctx: Posting, request: Request
) -> Response:
    """Enter a record by hand (荣誉时, evidence `manual`, with who attests it): the organisation
    that organised the project, or an admin. It waits for approval like any record."""
    caller = ctx.caller
    rules = rules_of(request.app.state.settings)

    async def action(session: AsyncSession) -> ActionResult:
        await record_access.require_recording_reach(
            session, caller, data.project_id, data.member_id
        )
        record, created = await records.enter_manual(session, rules, data, caller.actor())
        return ActionResult(201 if created else 200, record.model_dump(mode="json"))

    return await answer_action(ctx, action)


@router.post(
    "/service-records/import",
    response_model=schemas.ImportReport,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": "external_id,volunteer_number,project_id,started_at,ended_at,"
                    "attested_by\nold-1,XH0000000001,<project id>,2025-05-01T09:00:00+08:00,"
                    "2025-05-01T11:00:00+08:00,陈站长\n",
                }
            },
        }
    },
    dependencies=[allow(CERTIFIERS, "import service records")],
)
async def import_records(
    caller: CallerDep,
    request: Request,
    dry_run: Annotated[bool, Query(description="check every row, record nothing")] = True,
) -> schemas.ImportReport:
    """Import historical records (CSV, UTF-8 or GB18030 with a warning, one header row:
    external_id, volunteer_number, project_id, started_at, ended_at, attested_by) as manual
    records waiting for approval. Idempotent on external_id; a dry run (the default) reports
    every row's problems by the line a spreadsheet shows, and names no record it did not keep."""
    file = importing.read_rows(await request.body())

    async def reach(session: AsyncSession, project_id: UUID, member_id: UUID) -> None:
        await record_access.require_recording_reach(session, caller, project_id, member_id)

    rules = rules_of(request.app.state.settings)
    async with request.app.state.sessions() as session:
        transaction = await session.begin()
        try:
            report = await importing.import_records(
                session, rules, file, caller.actor(), reach, dry_run
            )
        except BaseException:
            await transaction.rollback()
            raise
        # A dry run ran every rule against the real tables; it leaves nothing behind.
        await (transaction.rollback() if dry_run else transaction.commit())
    return report


@router.get(
    "/service-records",
    response_model=schemas.ServiceRecordPage,
    dependencies=[allow(READERS, "read service records")],
)
async def list_records(
    caller: CallerDep,
    session: SessionDep,
    book: BookCode | None = None,
    organisation_id: UUID | None = None,
    member_id: UUID | None = None,
    project_id: UUID | None = None,
    status: schemas.RecordStatus | None = None,
    after: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> schemas.ServiceRecordPage:
    """Records in the caller's reach: an organisation's own, a mini-program's member's, or a
    book's (admins and auditors), in id order."""
    organisation_id, member_id = record_access.listed_scope(caller, organisation_id, member_id)
    rows = await records.list_records(
        session,
        book=listed_book(caller, book),
        organisation_id=organisation_id,
        member_id=member_id,
        project_id=project_id,
        status=status,
        after=after,
        limit=limit,
    )
    items, next_after = keyset_split(rows, limit)
    return schemas.ServiceRecordPage(items=items, next_after=next_after)


@router.post(
    "/service-records/approve",
    response_model=schemas.BulkApproveOut,
    dependencies=[allow(CERTIFIERS, "approve service records")],
)
async def approve_records(
    data: schemas.BulkApproveIn, caller: CallerDep, request: Request
) -> schemas.BulkApproveOut:
    """Approve many records; each is approved (or refused) on its own, and the answer says
    what happened to each, with the status approving it alone would have answered."""

    async def visible(session: AsyncSession, record_id: UUID) -> None:
        await record_access.visible_record(session, caller, record_id)

    results = await approval.approve_many(
        request.app.state.sessions, request.app.state.sequencer, data.record_ids, caller, visible
    )
    approved = sum(1 for r in results if r.status == 200)
    return schemas.BulkApproveOut(
        approved=approved, refused=len(results) - approved, results=results
    )


@router.get(
    "/service-records/{record_id}",
    response_model=schemas.ServiceRecordDetail,
    dependencies=[allow(READERS, "read service records")],
)
async def get_record(
    record_id: UUID, caller: CallerDep, session: SessionDep
) -> schemas.ServiceRecordDetail:
    """A record with its whole history (who entered, checked out, approved, rejected,
    reversed, disputed) and its disputes."""
    record = await record_access.visible_record(session, caller, record_id)
    return schemas.ServiceRecordDetail(
        **record.model_dump(),
        events=await records.record_events(session, record_id),
        disputes=await disputes.disputes_of(session, record_id),
    )


@router.post(
    "/service-records/{record_id}/checkout",
    response_model=schemas.ServiceRecordRead,
    dependencies=[allow(("miniprogram",), "check out")],
)
async def check_out(
    record_id: UUID, data: schemas.CodeIn, caller: CallerDep, session: SessionDep, request: Request
) -> schemas.ServiceRecordRead:
    """Check out at the site with its current code: the record is credited the time inside
    the activity's window, by the rules, and waits for approval."""
    record = await record_access.visible_record(session, caller, record_id)
    return await records.check_out(
        session,
        rules_of(request.app.state.settings),
        record,
        data.code,
        request.app.state.clock(),
        caller.actor(),
    )


@router.post(
    "/service-records/{record_id}/cancel",
    response_model=schemas.ServiceRecordRead,
    dependencies=[allow(("miniprogram",), "withdraw check-ins")],
)
async def cancel_checkin(
    record_id: UUID, caller: CallerDep, session: SessionDep
) -> schemas.ServiceRecordRead:
    """The member withdraws an open check-in (nothing is credited)."""
    await record_access.visible_record(session, caller, record_id)
    # Checked under the record's lock: a check-out racing the withdrawal wins or loses whole.
    return await records.reject(
        session, record_id, "withdrawn by the member", caller.actor(), "withdrawn", ("open",)
    )


@router.post(
    "/service-records/{record_id}/approve",
    response_model=schemas.ServiceRecordRead,
    dependencies=[allow(CERTIFIERS, "approve service records")],
)
async def approve_record(
    record_id: UUID, caller: CallerDep, session: SessionDep, request: Request
) -> schemas.ServiceRecordRead:
    """Approve a pending record: post its `service_credit` (once, however often asked)."""
    await record_access.visible_record(session, caller, record_id)
    state = request.app.state
    return await approval.approve(session, state.sequencer, record_id, caller, state.sessions)


@router.post(
    "/service-records/{record_id}/reject",
    response_model=schemas.ServiceRecordRead,
    dependencies=[allow(CERTIFIERS, "reject service records")],
)
async def reject_record(
    record_id: UUID, data: schemas.RejectIn, caller: CallerDep, session: SessionDep
) -> schemas.ServiceRecordRead:
    """Reject an open or pending record, with the reason."""
    await record_access.visible_record(session, caller, record_id)
    return await records.reject(session, record_id, data.reason, caller.actor(), "rejected")


@router.post(
    "/service-records/{record_id}/reverse",
    response_model=schemas.ServiceRecordRead,
    dependencies=[allow(CERTIFIERS, "correct service records")],
)
async def reverse_record(
    record_id: UUID,
    data: schemas.ReverseIn,
    caller: CallerDep,
    session: SessionDep,
    request: Request,
) -> schemas.ServiceRecordRead:
    """Correct an approved record: its credit is reversed in the ledger (or, when some of its
    minutes were spent or lapsed, corrected with `remainder`: docs/volunteering.md §6.1) and
    the record kept as `reversed`; enter the right record with `corrects_record_id`. Once per
    record: asking again answers the reversed record."""
    await record_access.visible_record(session, caller, record_id)
    return await corrections.reverse(
        session,
        request.app.state.sequencer,
        record_id,
        data.reason,
        caller,
        request.app.state.sessions,
        data.remainder,
    )


@router.post(
    "/organisations/{organisation_id}/owed-minutes/{member_id}/write-off",
    response_model=schemas.OwedWrittenOff,
    dependencies=[allow(CERTIFIERS, "write off owed minutes")],
)
async def write_off_owed(
    organisation_id: UUID, member_id: UUID, data: schemas.OwedWriteOffIn, ctx: Posting
) -> Response:
    """Write off what a member owes the organisation after corrections of records whose
    minutes were spent (docs/volunteering.md §6.1): the organisation itself, or an admin."""
    caller = ctx.caller
    async with ctx.sessions() as session:
        org = await visible_organisation(session, caller, organisation_id)
    require_owner(caller, organisation_id, "write off what is owed to it")

    async def action(session: AsyncSession) -> ActionResult:
        ref = IdempotencyRef(
            SYSTEM_CREDENTIAL,
            f"owed_write_off:{action_id(ctx.idem, 'owed_write_off')}",
            ctx.idem.request_hash,
        )
        done = await corrections.write_off_owed(
            session,
            ctx.sequencer,
            ctx.sessions,
            org.book,
            organisation_id,
            member_id,
            data.reason,
            caller,
            ref,
        )
        return ActionResult(200, done.model_dump(mode="json"))

    return await answer_action(ctx, action)


@router.post(
    "/service-records/{record_id}/disputes",
    status_code=201,
    response_model=schemas.DisputeRead,
    dependencies=[allow(("miniprogram",), "dispute service records")],
)
async def open_dispute(
    record_id: UUID, data: schemas.DisputeCreate, caller: CallerDep, session: SessionDep
) -> schemas.DisputeRead:
    """The member reports an error in a record; the organisation must answer it."""
    await record_access.visible_record(session, caller, record_id)
    return await disputes.open_dispute(session, record_id, data.reason, caller.actor())


@router.get(
    "/service-disputes",
    response_model=schemas.DisputePage,
    dependencies=[allow(READERS, "read disputes")],
)
async def list_disputes(
    caller: CallerDep,
    session: SessionDep,
    book: BookCode | None = None,
    status: Annotated[str | None, Query(pattern="^(open|upheld|dismissed)$")] = None,
    after: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> schemas.DisputePage:
    """Disputes in the caller's reach: an organisation's to answer, a member's own, or a book's
    (admins and auditors)."""
    organisation_id, member_id = record_access.listed_scope(caller, None, None)
    rows = await disputes.list_disputes(
        session, listed_book(caller, book), organisation_id, member_id, status, after, limit
    )
    items, next_after = keyset_split(rows, limit)
    return schemas.DisputePage(items=items, next_after=next_after)


@router.post(
    "/service-disputes/{dispute_id}/answer",
    response_model=schemas.DisputeRead,
    dependencies=[allow(CERTIFIERS, "answer disputes")],
)
async def answer_dispute(
    dispute_id: UUID, data: schemas.DisputeAnswer, caller: CallerDep, session: SessionDep
) -> schemas.DisputeRead:
    """The organisation answers a dispute: upheld (naming the correcting record, if any) or
    dismissed, with its reasons."""
    dispute = await record_access.visible_dispute(session, caller, dispute_id)
    return await disputes.answer_dispute(session, dispute, data, caller.actor())
