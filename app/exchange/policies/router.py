"""HTTP routes of a book's asset policies."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from app.exchange.assets.service import require_asset
from app.exchange.policies import schemas
from app.exchange.policies import service as policies
from app.exchange.schemas import AssetPath, BookPath
from app.http.actions import ActionResult, Notice, answer_action
from app.http.caller import CallerDep
from app.http.context import Posting, SessionDep
from app.identity.authorization import ALL_ROLES, require_book
from app.identity.dependencies import allow
from app.ledger import service as ledger

router = APIRouter(prefix="/v1", tags=["exchange"])


@router.put(
    "/books/{code}/asset-policies/{asset}",
    response_model=schemas.PolicyRead,
    dependencies=[allow(("admin",), "set asset policies")],
)
async def put_asset_policy(
    code: BookPath, asset: AssetPath, data: schemas.PolicyWrite, ctx: Posting
) -> Response:
    """Set the book's policy for an asset (admins): the storage cap of a member's account, the
    yearly cap of a member's gifts, and the relationships a gift must name one of. Recorded as
    `notice.asset_policy_changed` in the book."""
    caller = ctx.caller
    require_book(caller, code, f"book {code!r}")

    async def action(session: AsyncSession) -> ActionResult:
        await ledger.get_book(session, code)
        await require_asset(session, asset)
        policy = await policies.put_policy(
            session, code, asset, data.storage_cap, data.gift_yearly_cap, data.gift_relations
        )
        body = policy.model_dump(mode="json")
        notice = Notice(code, "asset_policy_changed", policies.policy_facts(policy), caller.actor())
        return ActionResult(200, body, notice)

    return await answer_action(ctx, action)


@router.get(
    "/books/{code}/asset-policies",
    response_model=schemas.PolicyList,
    dependencies=[allow(ALL_ROLES, "read asset policies")],
)
async def list_asset_policies(
    code: BookPath, caller: CallerDep, session: SessionDep
) -> schemas.PolicyList:
    """The book's asset policies (an asset without one has no limits)."""
    require_book(caller, code, f"book {code!r}")
    await ledger.get_book(session, code)
    return schemas.PolicyList(book=code, items=await policies.list_policies(session, code))
