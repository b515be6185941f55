"""HTTP routes of the ledger: parse, authorise, call the service, shape the answer."""

from __future__ import annotations

from typing import Annotated, Protocol
from uuid import UUID

from fastapi import APIRouter, Body, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from app.http.caller import Caller, CallerDep
from app.http.context import Posting, PostingContext, SessionDep
from app.http.posting_request import RequestRoute, documented, read_posting
from app.http.responses import payload_response
from app.identity.authorization import (
    ALL_ROLES,
    require_account,
    require_book,
    require_org_debits,
    require_platform,
    sees_any_account,
)
from app.identity.dependencies import Allowed, allow
from app.ledger import schemas, service
from app.ledger.answers import posting_json
from app.ledger.errors import HoldNotFound, TransactionNotFound
from app.ledger.outcomes import Outcome

router = APIRouter(prefix="/v1", tags=["ledger"])

# Organisations take from their own accounts only (docs/authorization.md).
POSTERS = ("admin", "org")
TRANSACTION_POSTERS = Allowed(POSTERS, "post transactions")
HOLD_PLACERS = Allowed(POSTERS, "place holds")


class ReceiptHook(Protocol):
    """Adds a signed `receipt` member to a posting answer; set by the app as
    `app.state.receipt_hook` (the ledger knows nothing of how receipts are made)."""

    async def __call__(self, payload: bytes) -> bytes: ...


async def _with_receipt(request: Request, status_code: int, payload: bytes) -> bytes:
    hook: ReceiptHook | None = getattr(request.app.state, "receipt_hook", None)
    if hook is None or status_code >= 400:
        return payload
    return await hook(payload)


async def _answer(request: Request, outcome: Outcome) -> Response:
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    payload = await _with_receipt(request, outcome.status_code, outcome.payload)
    return payload_response(outcome.status_code, payload, headers)


async def post_transaction(request: Request) -> Response:
    """Post a balanced transaction (admins; organisations from their own accounts)."""
    code: str = request.path_params["code"]
    ctx, data = await read_posting(request, schemas.TransactionCreate, TRANSACTION_POSTERS)
    debited = [str(leg.account_id) for leg in data.legs if leg.amount < 0]
    credited = [str(leg.account_id) for leg in data.legs if leg.amount > 0]
    await _require_poster(ctx, code, debited, credited)
    outcome = await service.post_transaction(
        ctx.sequencer, code, data, ctx.idem, ctx.caller.actor()
    )
    return await _answer(request, outcome)


async def place_hold(request: Request) -> Response:
    """Reserve an amount (two-phase): it lowers `available`, not `posted`."""
    code: str = request.path_params["code"]
    ctx, data = await read_posting(request, schemas.HoldCreate, HOLD_PLACERS)
    debited, credited = [str(data.from_account_id)], [str(data.to_account_id)]
    await _require_poster(ctx, code, debited, credited)
    outcome = await service.place_hold(ctx.sequencer, code, data, ctx.idem, ctx.caller.actor())
    return await _answer(request, outcome)


# The hot path first: routes are matched in order, each match costing a few µs. These two are
# read by hand (app/http/posting_request.py) and called without FastAPI's request handler.
for _path, _endpoint, _body in (
    ("/books/{code}/transactions", post_transaction, schemas.TransactionCreate),
    ("/books/{code}/holds", place_hold, schemas.HoldCreate),
):
    router.add_api_route(
        _path,
        _endpoint,
        methods=["POST"],
        status_code=201,
        response_model=schemas.PostingRead,
        openapi_extra=documented(_body, path=("code",)),
        route_class_override=RequestRoute,
    )


@router.post(
    "/books",
    status_code=201,
    response_model=schemas.BookRead,
    dependencies=[allow(("admin",), "open books")],
)
async def create_book(
    data: schemas.BookCreate, caller: CallerDep, session: SessionDep
) -> schemas.BookRead:
    """Open a book: one region's ledger with its own sequence and chain (platform admins)."""
    require_platform(caller, "open books")
    return await service.create_book(session, data)


@router.get("/books/{code}", response_model=schemas.BookRead)
async def get_book(code: str, caller: CallerDep, session: SessionDep) -> schemas.BookRead:
    """A book and its chain head."""
    require_book(caller, code, f"book {code!r}")
    return await service.get_book(session, code)


@router.get("/books/{code}/head", response_model=schemas.BookHead)
async def get_head(code: str, caller: CallerDep, session: SessionDep) -> schemas.BookHead:
    """The last entry's `seq` and `entry_hash` (seq 0 and 64 zeros for an empty book)."""
    require_book(caller, code, f"book {code!r}")
    return (await service.get_book(session, code)).head


@router.post(
    "/books/{code}/accounts",
    status_code=201,
    response_model=schemas.AccountRead,
    dependencies=[allow(("admin",), "open accounts")],
)
async def open_account(
    code: str, data: schemas.AccountCreate, caller: CallerDep, session: SessionDep
) -> schemas.AccountRead:
    """Open an account holding one asset; `overdraft_limit` 0 means no overdraft (admins)."""
    require_book(caller, code, f"book {code!r}")
    return await service.open_account(session, code, data)


@router.get(
    "/accounts/{account_id}",
    response_model=schemas.AccountRead,
    dependencies=[allow(ALL_ROLES, "read accounts")],
)
async def get_account(
    account_id: UUID,
    caller: CallerDep,
    session: SessionDep,
    as_of_seq: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> schemas.AccountRead:
    """Balances now, or as of entry `as_of_seq` of the account's book."""
    account = await service.get_account(session, account_id, as_of_seq)
    await require_account(session, caller, account)
    return account


@router.patch(
    "/accounts/{account_id}",
    response_model=schemas.AccountRead,
    dependencies=[allow(("admin",), "change accounts")],
)
async def update_account(
    account_id: UUID, data: schemas.AccountStatusUpdate, caller: CallerDep, session: SessionDep
) -> schemas.AccountRead:
    """Freeze, unfreeze or close an account (admins)."""
    account = await service.get_account(session, account_id)
    await require_account(session, caller, account)
    return await service.set_account_status(session, account_id, data.status)


@router.get(
    "/accounts/{account_id}/entries",
    response_model=schemas.AccountEntriesPage,
)
async def account_entries(
    account_id: UUID,
    caller: CallerDep,
    session: SessionDep,
    before_seq: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> schemas.AccountEntriesPage:
    """The account's legs, newest first, each with the running balance after it."""
    account = await service.get_account(session, account_id)
    await require_account(session, caller, account)
    return await service.list_account_entries(session, account_id, before_seq, limit)


async def _require_poster(
    ctx: PostingContext, code: str, debited: list[str], credited: list[str]
) -> None:
    """Admins post in their books; organisations only from their own accounts (the role was
    checked first, by `read_posting`)."""
    caller = ctx.caller
    require_book(caller, code, f"book {code!r}")
    if caller.role != "admin":
        async with ctx.sessions() as session:
            await require_org_debits(session, caller, code, debited, credited)


@router.get("/transactions/{tx_id}", response_model=schemas.PostingRead)
async def get_transaction(
    tx_id: UUID, caller: CallerDep, session: SessionDep, request: Request
) -> Response:
    """A journal entry as posted, with its accounts' balances right after it."""
    posting = await service.get_transaction(session, tx_id)
    legs = [account_id for account_id, _ in posting.legs]
    if not await sees_any_account(session, caller, posting.book, legs):
        raise TransactionNotFound(f"transaction {tx_id} does not exist")
    payload = posting_json(posting.document)
    return payload_response(200, await _with_receipt(request, 200, payload))


@router.post(
    "/transactions/{tx_id}/reversal",
    status_code=201,
    response_model=schemas.PostingRead,
    dependencies=[allow(("admin",), "reverse transactions")],
)
async def reverse_transaction(
    tx_id: UUID, ctx: Posting, session: SessionDep, request: Request
) -> Response:
    """Post the negation of a transaction; at most one per transaction (admins)."""
    posting = await service.get_transaction(session, tx_id)
    require_book(ctx.caller, posting.book, f"transaction {tx_id}")
    service.check_reversible_by_client(posting)
    outcome = await service.reverse_transaction(
        ctx.sequencer, posting, ctx.idem, ctx.caller.actor()
    )
    return await _answer(request, outcome)


async def _visible_hold(session: AsyncSession, caller: Caller, hold_id: UUID) -> schemas.HoldRead:
    hold = await service.get_hold(session, hold_id)
    accounts = [str(hold.from_account_id), str(hold.to_account_id)]
    if not await sees_any_account(session, caller, hold.book, accounts):
        raise HoldNotFound(f"hold {hold_id} does not exist")
    return hold


@router.get("/holds/{hold_id}", response_model=schemas.HoldRead)
async def get_hold(hold_id: UUID, caller: CallerDep, session: SessionDep) -> schemas.HoldRead:
    """A hold and how it was resolved."""
    return await _visible_hold(session, caller, hold_id)


async def _resolve(
    request: Request,
    ctx: PostingContext,
    session: AsyncSession,
    hold_id: UUID,
    amount: int | None,
    void: bool,
) -> Response:
    caller = ctx.caller
    hold = await _visible_hold(session, caller, hold_id)
    if caller.role != "admin":
        debited, credited = [str(hold.from_account_id)], [str(hold.to_account_id)]
        await require_org_debits(session, caller, hold.book, debited, credited)
    outcome = await service.resolve_hold(
        ctx.sequencer, hold, ctx.idem, amount, void=void, actor=caller.actor()
    )
    return await _answer(request, outcome)


@router.post(
    "/holds/{hold_id}/post",
    response_model=schemas.PostingRead,
    dependencies=[allow(POSTERS, "resolve holds")],
)
async def post_hold(
    hold_id: UUID,
    ctx: Posting,
    session: SessionDep,
    request: Request,
    data: Annotated[schemas.HoldPost | None, Body()] = None,
) -> Response:
    """Post a pending hold, in full or for less."""
    amount = data.amount if data is not None else None
    return await _resolve(request, ctx, session, hold_id, amount, void=False)


@router.post(
    "/holds/{hold_id}/void",
    response_model=schemas.PostingRead,
    dependencies=[allow(POSTERS, "resolve holds")],
)
async def void_hold(hold_id: UUID, ctx: Posting, session: SessionDep, request: Request) -> Response:
    """Release a pending hold."""
    return await _resolve(request, ctx, session, hold_id, None, void=True)
