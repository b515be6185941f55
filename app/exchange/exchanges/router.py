"""HTTP routes of quotes and exchanges."""

from __future__ import annotations

from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from app.exchange import errors
from app.exchange.exchanges import schemas
from app.exchange.exchanges import service as exchanges
from app.http.actions import ActionResult, answer_action
from app.http.caller import CallerDep
from app.http.context import Posting, SessionDep
from app.http.responses import json_response
from app.identity.access import acting_member, visible_member
from app.identity.dependencies import allow
from app.identity.errors import MemberNotFound

router = APIRouter(prefix="/v1", tags=["exchange"])

TRADERS = ("admin", "org", "miniprogram")


def _terms(request: Request) -> exchanges.Terms:
    settings = request.app.state.settings
    return exchanges.Terms(
        request.app.state.clock(),
        ZoneInfo(settings.service_timezone),
        settings.exchange_quote_ttl_s,
    )


@router.post(
    "/exchange/quotes",
    status_code=201,
    response_model=schemas.QuoteRead,
    dependencies=[allow(TRADERS, "ask for exchange quotes")],
)
async def create_quote(
    data: schemas.QuoteCreate, caller: CallerDep, session: SessionDep, request: Request
) -> Response:
    """Price an exchange for a member: what they would give and receive under the rule in
    force (named, or found by the asset pair in the member's book), valid for 60 s."""
    member = await visible_member(session, caller, acting_member(caller, data.member_id))
    quote = await exchanges.create_quote(
        session,
        request.app.state.personal_data,
        caller,
        member,
        data.amount,
        data.rule_id,
        (data.from_asset, data.to_asset),
        data.hardship,
        _terms(request),
    )
    return json_response(201, quote.model_dump(mode="json"))


@router.get(
    "/exchange/quotes/{quote_id}",
    response_model=schemas.QuoteRead,
    dependencies=[allow((*TRADERS, "auditor"), "read exchange quotes")],
)
async def get_quote(
    quote_id: UUID, caller: CallerDep, session: SessionDep, request: Request
) -> schemas.QuoteRead:
    """A quote and whether it is open, expired or executed."""
    quote = await exchanges.get_quote(session, quote_id, request.app.state.clock())
    try:
        await visible_member(session, caller, quote.member_id)
    except MemberNotFound:
        raise errors.QuoteNotFound(f"quote {quote_id} does not exist") from None
    return quote


@router.post(
    "/exchanges",
    status_code=201,
    response_model=schemas.ExchangeRead,
    dependencies=[allow(TRADERS, "exchange")],
)
async def execute_exchange(
    data: schemas.ExchangeCreate, ctx: Posting, request: Request
) -> Response:
    """Execute a quote at its terms: one `exchange` entry, the member's units to the rule's
    pool and the pool's units to the member. Refused when the quote expired, the rule was
    retired, a cap is reached or the pool cannot pay."""
    caller = ctx.caller
    terms = _terms(request)
    async with ctx.sessions() as session:
        quote = await exchanges.quote_row(session, data.quote_id)
        try:
            await visible_member(session, caller, quote.member_id)
        except MemberNotFound:
            raise errors.QuoteNotFound(f"quote {data.quote_id} does not exist") from None
    prepared = await exchanges.prepare_execution(ctx.sessions, data.quote_id)

    async def action(session: AsyncSession) -> ActionResult:
        done, entry = await exchanges.execute_quote(
            session, ctx.sequencer, caller, data.quote_id, terms, prepared
        )
        return ActionResult(201, {"quote": done.model_dump(mode="json"), "entry": entry})

    return await answer_action(ctx, action)
