"""HTTP routes of kiosk redemption (docs/kiosk.md): the catalogue and its stock, members'
redeem codes, redemptions and the daily report.

Who may do what (docs/authorization.md): everyone of the site's book reads its items; an admin
of the book, or the site's own `org` or `kiosk` credential, changes them; only the site's
kiosk redeems and confirms, and it sees no other site's redemptions; a member's redeem codes
come from their mini-program.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Annotated, Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from app.exchange.postings import require_not_erased
from app.http.actions import ActionResult, action_id, answer_action, run_action
from app.http.caller import CallerDep
from app.http.context import Posting, SessionDep
from app.http.responses import json_response, replayable_response
from app.identity.access import visible_member
from app.identity.authorization import ALL_ROLES, require_site_reader, require_site_staff
from app.identity.dependencies import allow
from app.identity.schemas import CredentialRead
from app.kiosk import catalogue, codes, pairing, redemptions, report, schemas
from app.kiosk.access import require_item_staff, visible_redemption, visible_site
from app.kit.schemas import Day

router = APIRouter(prefix="/v1", tags=["kiosk"])

STAFF = ("admin", "org", "kiosk")
REPORT_READERS = ("admin", "auditor", "org", "kiosk")
REDEMPTION_READERS = ("admin", "auditor", "org", "kiosk", "miniprogram")


@router.get(
    "/kiosk/site",
    response_model=schemas.SiteRead,
    dependencies=[allow(("kiosk",), "ask for its kiosk site")],
)
async def own_site(caller: CallerDep, session: SessionDep) -> schemas.SiteRead:
    """The site of the calling kiosk credential (what the kiosk page signs in to)."""
    site = await visible_site(session, caller, uuid.UUID(str(caller.organisation_id)))
    return schemas.SiteRead(site_id=site.id, book=site.book, name=site.name)


@router.get(
    "/kiosk/sites/{site_id}/items",
    response_model=schemas.ItemList,
    dependencies=[allow(ALL_ROLES, "read kiosk items")],
)
async def list_items(site_id: UUID, caller: CallerDep, session: SessionDep) -> schemas.ItemList:
    """The site's items with their stock and what is available (any role of the book)."""
    await visible_site(session, caller, site_id)
    return schemas.ItemList(items=await catalogue.list_items(session, site_id))


@router.post(
    "/kiosk/sites/{site_id}/items",
    status_code=201,
    response_model=schemas.ItemRead,
    dependencies=[allow(STAFF, "list kiosk items")],
)
async def create_item(site_id: UUID, data: schemas.ItemCreate, ctx: Posting) -> Response:
    """List an item at the site with its price and stock (its initial stock is recorded)."""
    caller = ctx.caller

    async def action(session: AsyncSession) -> ActionResult:
        site = await visible_site(session, caller, site_id)
        require_site_staff(caller, str(site.id), "list its items")
        item = await catalogue.create_item(session, site, data, caller.credential.id)
        return ActionResult(201, item.model_dump(mode="json"))

    return await answer_action(ctx, action)


@router.patch(
    "/kiosk/items/{item_id}",
    response_model=schemas.ItemRead,
    dependencies=[allow(STAFF, "change kiosk items")],
)
async def update_item(item_id: UUID, data: schemas.ItemUpdate, ctx: Posting) -> Response:
    """Rename, reprice, withdraw or offer again an item (stock changes are recorded moves)."""
    caller = ctx.caller

    async def action(session: AsyncSession) -> ActionResult:
        await require_item_staff(session, caller, item_id, "change its items")
        item = await catalogue.update_item(session, item_id, data)
        return ActionResult(200, item.model_dump(mode="json"))

    return await answer_action(ctx, action)


@router.post(
    "/kiosk/items/{item_id}/stock",
    status_code=201,
    response_model=schemas.StockChanged,
    dependencies=[allow(STAFF, "change kiosk stock")],
)
async def change_stock(item_id: UUID, data: schemas.StockChange, ctx: Posting) -> Response:
    """Restock or correct an item's stock on hand, with why; never below what is held."""
    caller = ctx.caller

    async def action(session: AsyncSession) -> ActionResult:
        await require_item_staff(session, caller, item_id, "change its stock")
        item, move = await catalogue.change_stock(session, item_id, data, caller.credential.id)
        body = {"item": item.model_dump(mode="json"), "move": move.model_dump(mode="json")}
        return ActionResult(201, body)

    return await answer_action(ctx, action)


@router.post(
    "/members/{member_id}/redeem-codes",
    status_code=201,
    response_model=schemas.RedeemCodeRead,
    dependencies=[allow(("admin", "miniprogram"), "ask for redeem codes")],
)
async def create_redeem_code(member_id: UUID, ctx: Posting, request: Request) -> Response:
    """A single-use code for the member to show at a kiosk (their mini-program, or an admin),
    valid for `TIMEBANK_REDEEM_CODE_TTL_S` (60 s). The path names the member, as on every
    member route; a mini-program's `X-Member-Id`, if sent, must name the same one."""
    caller = ctx.caller
    state = request.app.state

    async def action(session: AsyncSession) -> ActionResult:
        row = await visible_member(session, caller, member_id)
        require_not_erased(member_id, row.status)
        issued = await codes.issue(
            session,
            state.personal_data,
            member_id,
            caller.credential.id,
            state.clock(),
            state.settings.redeem_code_ttl_s,
        )
        return ActionResult(201, issued.model_dump(mode="json"))

    return await answer_action(ctx, action)


@router.post(
    "/kiosk/sites/{site_id}/pairing-codes",
    status_code=201,
    response_model=schemas.PairingCodeRead,
    dependencies=[allow(("admin", "org"), "pair kiosks")],
)
async def create_pairing_code(site_id: UUID, ctx: Posting, request: Request) -> Response:
    """A code that pairs one kiosk with this site: typed at the kiosk, it gets the kiosk a
    credential of its own (the code works once, for `TIMEBANK_KIOSK_PAIRING_TTL_S`)."""
    caller = ctx.caller
    state = request.app.state

    async def action(session: AsyncSession) -> ActionResult:
        site = await visible_site(session, caller, site_id)
        require_site_staff(caller, str(site.id), "pair its kiosks")
        issued = await pairing.issue(
            session,
            state.personal_data,
            site,
            caller.credential.id,
            state.clock(),
            state.settings.kiosk_pairing_ttl_s,
        )
        return ActionResult(201, issued.model_dump(mode="json"))

    return await answer_action(ctx, action)


@router.post("/kiosk/pairings", status_code=201, response_model=CredentialRead)
async def pair_kiosk(data: schemas.Pairing, request: Request) -> Response:
    """Trade a pairing code for a kiosk credential of its site (no token needed: the code is
    the authority; its token is in this answer only)."""
    state = request.app.state
    answer = await pairing.pair(
        state.sessions, state.sequencer, state.personal_data, data, state.clock()
    )
    return replayable_response(answer.status_code, answer.body, answer.replayed)


@router.post(
    "/kiosk/code-checks",
    response_model=schemas.CodeCheckRead,
    dependencies=[allow(("kiosk",), "check redeem codes")],
)
async def check_code(
    data: schemas.CodeCheck, caller: CallerDep, session: SessionDep, request: Request
) -> schemas.CodeCheckRead:
    """What the member whose code was scanned can spend at this kiosk, before the basket is
    chosen (showing the code is their consent; the code stays unused)."""
    state = request.app.state
    site = await visible_site(session, caller, uuid.UUID(str(caller.organisation_id)))
    code_id = codes.decode(state.personal_data, data.code)
    member_id, expires_at = await codes.peek(session, code_id, state.clock())
    return await redemptions.points_of(session, site, member_id, expires_at)


@router.post(
    "/kiosk/redemptions",
    status_code=201,
    response_model=schemas.RedemptionRead,
    dependencies=[allow(("kiosk",), "redeem")],
)
async def redeem(data: schemas.RedemptionCreate, ctx: Posting, request: Request) -> Response:
    """Scan a member's code with a basket: check stock and balance, hold the points and
    reserve the stock until confirmed, cancelled, or `TIMEBANK_KIOSK_REDEMPTION_TTL_S` (120 s)."""
    caller = ctx.caller
    state = request.app.state
    async with ctx.sessions() as session:
        site = await visible_site(session, caller, uuid.UUID(str(caller.organisation_id)))
    prepared = await redemptions.prepare(ctx.sessions, state.personal_data, site, data)
    redemption_id = action_id(ctx.idem, "kiosk_redemption")

    async def action(session: AsyncSession) -> ActionResult:
        redemption = await redemptions.redeem(
            session,
            ctx.sequencer,
            caller,
            redemption_id,
            prepared,
            data,
            state.clock(),
            state.settings.kiosk_redemption_ttl_s,
        )
        return ActionResult(201, redemption.model_dump(mode="json"))

    return await answer_action(ctx, action)


@router.get(
    "/kiosk/sites/{site_id}/redemptions",
    response_model=schemas.RedemptionList,
    dependencies=[allow(REPORT_READERS, "read redemptions")],
)
async def list_redemptions(
    site_id: UUID,
    caller: CallerDep,
    session: SessionDep,
    status: Annotated[schemas.RedemptionStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> schemas.RedemptionList:
    """The site's redemptions, newest first: a kiosk picks up a pending one after a reload
    (the book's admins and auditors, and the site's own credentials)."""
    site = await visible_site(session, caller, site_id)
    require_site_reader(caller, str(site.id), "read its redemptions")
    items = await redemptions.list_for_site(session, site_id, status, limit)
    return schemas.RedemptionList(items=items)


@router.get(
    "/kiosk/redemptions/{redemption_id}",
    response_model=schemas.RedemptionRead,
    dependencies=[allow(REDEMPTION_READERS, "read redemptions")],
)
async def get_redemption(
    redemption_id: UUID, caller: CallerDep, session: SessionDep
) -> schemas.RedemptionRead:
    """A redemption (the site's credentials, the member's mini-program, admins, auditors)."""
    return await visible_redemption(session, caller, redemption_id, lock=False)


@router.post(
    "/kiosk/redemptions/{redemption_id}/confirm",
    response_model=schemas.RedemptionConfirmed,
    dependencies=[allow(("kiosk",), "confirm redemptions")],
)
async def confirm(redemption_id: UUID, ctx: Posting, request: Request) -> Response:
    """The member agreed: post the hold, take the stock, answer with the signed receipt."""
    caller = ctx.caller
    state = request.app.state

    async def sign(entry: dict[str, Any], body: bytes, entry_hash: str) -> str:
        token, _, _ = await state.audit.receipts.sign(entry, body, entry_hash)
        return str(token)

    async def action(session: AsyncSession) -> ActionResult:
        row = await visible_redemption(session, caller, redemption_id, lock=True)
        done = await redemptions.confirm(session, ctx.sequencer, caller, row, state.clock())
        body = {
            "redemption": done.redemption.model_dump(mode="json"),
            "book": done.book,
            "seq": done.seq,
            "tx_id": done.tx_id,
            "entry_hash": done.entry_hash,
        }
        return ActionResult(200, body)

    # The receipt is signed once the confirmation has committed (nothing slow while the book's
    # head is locked), on the first answer and on replays alike: it is the same every time.
    answer = await run_action(ctx.sessions, ctx.sequencer, ctx.idem, action)
    async with ctx.sessions() as session:
        receipt = await redemptions.receipt(session, sign, str(answer.body["tx_id"]))
    body = schemas.RedemptionConfirmed.model_validate({**answer.body, "receipt": receipt})
    return replayable_response(answer.status_code, body.model_dump(mode="json"), answer.replayed)


@router.post(
    "/kiosk/redemptions/{redemption_id}/cancel",
    response_model=schemas.RedemptionSettled,
    dependencies=[allow(("admin", "kiosk"), "cancel redemptions")],
)
async def cancel(redemption_id: UUID, ctx: Posting) -> Response:
    """Void the hold and give the stock back (the site's kiosk, or an admin)."""
    caller = ctx.caller

    async def action(session: AsyncSession) -> ActionResult:
        row = await visible_redemption(session, caller, redemption_id, lock=True)
        settled = await redemptions.cancel(session, ctx.sequencer, caller, row)
        return ActionResult(200, settled.model_dump(mode="json"))

    return await answer_action(ctx, action)


@router.get(
    "/kiosk/sites/{site_id}/report",
    responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
    dependencies=[allow(REPORT_READERS, "read kiosk reports")],
)
async def daily_report(
    site_id: UUID,
    caller: CallerDep,
    session: SessionDep,
    request: Request,
    day: Annotated[Day, Query(alias="date", description="the service day")],
    fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> Response:
    """The site's day: redemptions, points taken, items out and stock left, reconciled with
    the journal and the stock moves (账物相符)."""
    site = await visible_site(session, caller, site_id)
    require_site_reader(caller, str(site.id), "read its reports")
    zone = ZoneInfo(request.app.state.settings.service_timezone)
    found = await report.daily_report(session, site, day, zone)
    if fmt == "csv":
        # A download with its own name (a link in the console saves it, like the book export).
        name = f"{site.book}-kiosk-{site.id}-{day.isoformat()}.csv"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        return Response(
            report.report_csv(found), media_type="text/csv; charset=utf-8", headers=headers
        )
    return json_response(200, dataclasses.asdict(found))
