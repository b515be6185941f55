"""HTTP routes of the ledger: parse, authorise, call the service, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Query
from starlette.responses import Response

from app.dependencies import SessionDep
from app.identity.dependencies import Posting, Reader, Writer, check_book
from app.kit.responses import payload_response
from app.ledger import schemas, service
from app.ledger.sequencer import Outcome

router = APIRouter(prefix="/v1", tags=["ledger"])

PROBLEM = {"content": {"application/problem+json": {}}, "description": "problem (RFC 9457)"}
POSTING_ERRORS: dict[int | str, dict[str, Any]] = {
    400: PROBLEM,
    401: PROBLEM,
    404: PROBLEM,
    409: PROBLEM,
    413: PROBLEM,
    415: PROBLEM,
    422: PROBLEM,
}


def _answer(outcome: Outcome) -> Response:
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    return payload_response(outcome.status_code, outcome.payload, headers)


@router.post("/books", status_code=201, response_model=schemas.BookRead, responses=POSTING_ERRORS)
async def create_book(data: schemas.BookCreate, caller: Writer, session: SessionDep) -> Any:
    """Open a book: one region's ledger with its own sequence and chain."""
    check_book(caller, data.code)
    return await service.create_book(session, data)


@router.get("/books/{code}", response_model=schemas.BookRead, responses=POSTING_ERRORS)
async def get_book(code: str, caller: Reader, session: SessionDep) -> Any:
    """A book and its chain head."""
    check_book(caller, code)
    return await service.get_book(session, code)


@router.get("/books/{code}/head", response_model=schemas.BookHead, responses=POSTING_ERRORS)
async def get_head(code: str, caller: Reader, session: SessionDep) -> Any:
    """The last entry's `seq` and `entry_hash` (seq 0 and 64 zeros for an empty book)."""
    check_book(caller, code)
    return (await service.get_book(session, code))["head"]


@router.post(
    "/books/{code}/accounts",
    status_code=201,
    response_model=schemas.AccountRead,
    responses=POSTING_ERRORS,
)
async def open_account(
    code: str, data: schemas.AccountCreate, caller: Writer, session: SessionDep
) -> Any:
    """Open an account holding one asset; `overdraft_limit` 0 means no overdraft."""
    check_book(caller, code)
    return await service.open_account(session, code, data)


@router.get("/accounts/{account_id}", response_model=schemas.AccountRead, responses=POSTING_ERRORS)
async def get_account(
    account_id: UUID,
    caller: Reader,
    session: SessionDep,
    as_of_seq: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> Any:
    """Balances now, or as of entry `as_of_seq` of the account's book."""
    account = await service.get_account(session, account_id, as_of_seq)
    check_book(caller, account["book"])
    return account


@router.patch(
    "/accounts/{account_id}", response_model=schemas.AccountRead, responses=POSTING_ERRORS
)
async def update_account(
    account_id: UUID, data: schemas.AccountStatusUpdate, caller: Writer, session: SessionDep
) -> Any:
    """Freeze, unfreeze or close an account."""
    account = await service.get_account(session, account_id)
    check_book(caller, account["book"])
    return await service.set_account_status(session, account_id, data.status)


@router.get(
    "/accounts/{account_id}/entries",
    response_model=schemas.AccountEntriesPage,
    responses=POSTING_ERRORS,
)
async def account_entries(
    account_id: UUID,
    caller: Reader,
    session: SessionDep,
    before_seq: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Any:
    """The account's legs, newest first, each with the running balance after it."""
    account = await service.get_account(session, account_id)
    check_book(caller, account["book"])
    return await service.list_account_entries(session, account_id, before_seq, limit)


@router.post(
    "/books/{code}/transactions",
    status_code=201,
    response_model=schemas.PostingRead,
    responses=POSTING_ERRORS,
)
async def post_transaction(code: str, data: schemas.TransactionCreate, ctx: Posting) -> Response:
    """Post a balanced transaction; the answer carries the entry, its hash and balances."""
    check_book(ctx.caller, code)
    return _answer(await service.post_transaction(ctx.sequencer, code, data, ctx.idem))


@router.get("/transactions/{tx_id}", response_model=schemas.PostingRead, responses=POSTING_ERRORS)
async def get_transaction(tx_id: UUID, caller: Reader, session: SessionDep) -> Any:
    """A journal entry as posted, with its accounts' balances right after it."""
    posting = await service.get_transaction(session, tx_id)
    check_book(caller, posting["book"])
    return posting


@router.post(
    "/transactions/{tx_id}/reversal",
    status_code=201,
    response_model=schemas.PostingRead,
    responses=POSTING_ERRORS,
)
async def reverse_transaction(tx_id: UUID, ctx: Posting, session: SessionDep) -> Response:
    """Post the negation of a transaction; at most one reversal per transaction."""
    posting = await service.get_transaction(session, tx_id)
    check_book(ctx.caller, posting["book"])
    return _answer(await service.reverse_transaction(ctx.sequencer, posting, ctx.idem))


@router.post(
    "/books/{code}/holds",
    status_code=201,
    response_model=schemas.PostingRead,
    responses=POSTING_ERRORS,
)
async def place_hold(code: str, data: schemas.HoldCreate, ctx: Posting) -> Response:
    """Reserve an amount (two-phase): it lowers `available`, not `posted`."""
    check_book(ctx.caller, code)
    return _answer(await service.place_hold(ctx.sequencer, code, data, ctx.idem))


@router.get("/holds/{hold_id}", response_model=schemas.HoldRead, responses=POSTING_ERRORS)
async def get_hold(hold_id: UUID, caller: Reader, session: SessionDep) -> Any:
    """A hold and how it was resolved."""
    hold = await service.get_hold(session, hold_id)
    check_book(caller, hold["book"])
    return hold


@router.post("/holds/{hold_id}/post", response_model=schemas.PostingRead, responses=POSTING_ERRORS)
async def post_hold(
    hold_id: UUID,
    ctx: Posting,
    session: SessionDep,
    data: Annotated[schemas.HoldPost | None, Body()] = None,
) -> Response:
    """Post a pending hold, in full or for less."""
    hold = await service.get_hold(session, hold_id)
    check_book(ctx.caller, hold["book"])
    amount = data.amount if data is not None else None
    return _answer(await service.resolve_hold(ctx.sequencer, hold, ctx.idem, amount))


@router.post("/holds/{hold_id}/void", response_model=schemas.PostingRead, responses=POSTING_ERRORS)
async def void_hold(hold_id: UUID, ctx: Posting, session: SessionDep) -> Response:
    """Release a pending hold."""
    hold = await service.get_hold(session, hold_id)
    check_book(ctx.caller, hold["book"])
    return _answer(await service.resolve_hold(ctx.sequencer, hold, ctx.idem, void=True))
