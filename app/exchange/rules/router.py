"""HTTP routes of exchange rules: publish, retire, read."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from app.exchange.rules import schemas
from app.exchange.rules import service as rules
from app.http.actions import ActionResult, Notice, answer_action
from app.http.caller import CallerDep
from app.http.context import Posting, SessionDep
from app.identity.dependencies import allow

router = APIRouter(prefix="/v1", tags=["exchange rules"])

READERS = ("admin", "auditor", "org", "miniprogram", "kiosk")


def _result(status: int, rule: schemas.RuleRead, notices: list[Notice]) -> ActionResult:
    return ActionResult(status, rule.model_dump(mode="json"), notices[0], more_notices=notices[1:])


@router.post(
    "/exchange-rules",
    status_code=201,
    response_model=schemas.RuleRead,
    dependencies=[allow(("admin",), "publish exchange rules")],
)
async def publish_rule(data: schemas.RuleCreate, ctx: Posting, request: Request) -> Response:
    """Publish an exchange rule (an admin of every book it applies in). A code already
    published gets a new version and its previous version is retired. The rule's JCS form and
    SHA-256 go into each book's chain as `notice.rule_published`."""
    caller = ctx.caller
    now = request.app.state.clock()
    zone = request.app.state.settings.service_timezone

    async def action(session: AsyncSession) -> ActionResult:
        rule, notices = await rules.publish_rule(session, caller, data, now, zone)
        return _result(201, rule, notices)

    return await answer_action(ctx, action)


@router.post(
    "/exchange-rules/{rule_id}/retire",
    response_model=schemas.RuleRead,
    dependencies=[allow(("admin",), "retire exchange rules")],
)
async def retire_rule(
    rule_id: UUID, data: schemas.RuleRetire, ctx: Posting, request: Request
) -> Response:
    """Retire a rule (`notice.rule_retired` in each of its books): quotes and exchanges under
    it are refused from then on."""
    caller = ctx.caller
    now = request.app.state.clock()

    async def action(session: AsyncSession) -> ActionResult:
        rule, notices = await rules.retire_rule(session, caller, rule_id, data.reason, now)
        return _result(200, rule, notices)

    return await answer_action(ctx, action)


@router.get(
    "/exchange-rules",
    response_model=list[schemas.RuleRead],
    dependencies=[allow(READERS, "read exchange rules")],
)
async def list_rules(
    caller: CallerDep,
    session: SessionDep,
    request: Request,
    code: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_-]{0,63}$")] = None,
    in_force: bool | None = None,
) -> list[schemas.RuleRead]:
    """Rules of the books the caller reaches, every version, newest first per code."""
    return await rules.list_rules(session, caller, request.app.state.clock(), code, in_force)


@router.get(
    "/exchange-rules/{rule_id}",
    response_model=schemas.RuleRead,
    dependencies=[allow(READERS, "read exchange rules")],
)
async def get_rule(
    rule_id: UUID, caller: CallerDep, session: SessionDep, request: Request
) -> schemas.RuleRead:
    """One rule version, with the document its hash covers."""
    return await rules.get_rule(session, caller, rule_id, request.app.state.clock())
