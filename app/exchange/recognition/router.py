"""HTTP routes of exchange: mutual recognition between books (通存通兑).

Agreements (admins reaching both books create them; either book's admin ends them), transfers
of a member's units from one book to another (the member through the mini-program, or an
admin of the sending book), and the reconciliation of the books' clearing accounts.
"""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from app.exchange.recognition import agreements, schemas, transfers
from app.exchange.recognition.reconciliation import reconcile
from app.http.actions import ActionResult, action_id, answer_action
from app.http.caller import CallerDep
from app.http.context import Posting, SessionDep
from app.http.responses import json_response
from app.identity.access import visible_member
from app.identity.dependencies import allow
from app.ledger.schemas import BookCode

router = APIRouter(prefix="/v1", tags=["exchange"])

AGREEMENT_READERS = ("admin", "auditor", "miniprogram")
TRANSFER_MAKERS = ("admin", "miniprogram")
TRANSFER_READERS = ("admin", "auditor", "org", "miniprogram")
RECONCILERS = ("admin", "auditor")


@router.post(
    "/recognition/agreements",
    status_code=201,
    response_model=schemas.AgreementRead,
    dependencies=[allow(("admin",), "make recognition agreements")],
)
async def create_agreement(data: schemas.AgreementCreate, ctx: Posting) -> Response:
    """Agree that `to_book` accepts `from_asset` of `from_book` as `to_asset` at
    ratio_num/ratio_den (one direction; the reverse is another agreement). Only an admin who
    reaches both books. Published as `notice.recognition_agreed` in both books."""
    caller = ctx.caller

    async def action(session: AsyncSession) -> ActionResult:
        view, notices = await agreements.create_agreement(session, caller, data)
        return ActionResult(201, view.model_dump(mode="json"), notices[0], more_notices=notices[1:])

    return await answer_action(ctx, action)


@router.get(
    "/recognition/agreements",
    response_model=schemas.AgreementPage,
    dependencies=[allow(AGREEMENT_READERS, "read recognition agreements")],
)
async def list_agreements(
    caller: CallerDep,
    session: SessionDep,
    book: BookCode | None = None,
    status: Literal["active", "ended"] | None = None,
    after: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> schemas.AgreementPage:
    """Agreements that touch a book the caller reaches (or `book`), oldest first."""
    return await agreements.list_agreements(session, caller, book, status, after, limit)


@router.get(
    "/recognition/agreements/{agreement_id}",
    response_model=schemas.AgreementRead,
    dependencies=[allow(AGREEMENT_READERS, "read recognition agreements")],
)
async def get_agreement(
    agreement_id: UUID, caller: CallerDep, session: SessionDep
) -> schemas.AgreementRead:
    """An agreement that touches a book the caller reaches."""
    return agreements.agreement_view(
        await agreements.visible_agreement(session, caller, agreement_id)
    )


@router.post(
    "/recognition/agreements/{agreement_id}/end",
    response_model=schemas.AgreementRead,
    dependencies=[allow(("admin",), "end recognition agreements")],
)
async def end_agreement(agreement_id: UUID, ctx: Posting) -> Response:
    """End an active agreement (an admin reaching either book): no transfer under it after
    this. Published as `notice.recognition_ended` in both books."""
    caller = ctx.caller

    async def action(session: AsyncSession) -> ActionResult:
        view, notices = await agreements.end_agreement(session, caller, agreement_id)
        return ActionResult(200, view.model_dump(mode="json"), notices[0], more_notices=notices[1:])

    return await answer_action(ctx, action)


@router.post(
    "/recognition/transfers",
    status_code=201,
    response_model=schemas.TransferRead,
    dependencies=[allow(TRANSFER_MAKERS, "transfer between books")],
)
async def create_transfer(data: schemas.TransferCreate, ctx: Posting) -> Response:
    """Move a member's units from the agreement's from_book to its to_book: one
    `recognition.out` entry in from_book and one `recognition.in` entry in to_book, in one
    database transaction, each naming the other. The mini-program for its member, or an admin
    of from_book. Idempotent on the Idempotency-Key."""
    caller = ctx.caller
    prepared = await transfers.prepare_transfer(ctx.sessions, caller, data)
    transfer_id = action_id(ctx.idem, "recognition_transfer")

    async def action(session: AsyncSession) -> ActionResult:
        view = await transfers.execute_transfer(
            session, ctx.sequencer, caller, prepared, transfer_id, ctx.idem.request_hash
        )
        return ActionResult(201, view.model_dump(mode="json"))

    return await answer_action(ctx, action)


@router.get(
    "/recognition/transfers/{transfer_id}",
    response_model=schemas.TransferRead,
    dependencies=[allow(TRANSFER_READERS, "read recognition transfers")],
)
async def get_transfer(
    transfer_id: UUID, caller: CallerDep, session: SessionDep
) -> schemas.TransferRead:
    """A transfer, with where its two entries sit in their books' chains."""
    return await transfers.get_transfer(session, caller, transfer_id)


@router.get(
    "/members/{member_id}/recognition-transfers",
    response_model=schemas.TransferPage,
    dependencies=[allow(TRANSFER_READERS, "read recognition transfers")],
)
async def member_transfers(
    member_id: UUID,
    caller: CallerDep,
    session: SessionDep,
    after: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> schemas.TransferPage:
    """The member's transfers between books, oldest first (reach as for the member)."""
    await visible_member(session, caller, member_id)
    return await transfers.member_transfers(session, member_id, after, limit)


@router.get(
    "/recognition/reconciliation",
    response_model=schemas.Reconciliation,
    dependencies=[allow(RECONCILERS, "reconcile books")],
)
async def reconciliation(
    caller: CallerDep, session: SessionDep, book: BookCode | None = None
) -> Response:
    """Per pair of books (one of them reached by the caller, or `book`) and asset pair: both
    clearing balances, the transfers each way (from the journal and from the transfers
    table), and `mirrored`: the clearing balances are exactly what the linked entries imply
    and every entry's counterpart names it back. Read in one snapshot."""
    report = await reconcile(session, caller, book)
    return json_response(200, report.model_dump(mode="json"))
