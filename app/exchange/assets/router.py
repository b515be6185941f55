"""HTTP routes of exchange: assets."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from app.exchange.assets import schemas
from app.exchange.assets import service as assets
from app.http.actions import ActionResult, answer_action
from app.http.caller import CallerDep
from app.http.context import Posting, SessionDep
from app.identity.authorization import (
    ALL_ROLES,
    reaches_book,
    require_books,
    require_platform,
)
from app.identity.dependencies import allow
from app.identity.errors import OrganisationNotFound

router = APIRouter(prefix="/v1", tags=["exchange"])

DEFINERS = ("admin",)


@router.post(
    "/assets",
    status_code=201,
    response_model=schemas.AssetRead,
    dependencies=[allow(DEFINERS, "define assets")],
)
async def define_asset(data: schemas.AssetCreate, ctx: Posting) -> Response:
    """Define an asset (admins). Without an issuer, platform admins only; with an issuing
    organisation, an admin reaching its book, whose journal records `notice.asset_defined`."""
    caller = ctx.caller
    if data.issuer_organisation_id is None:
        require_platform(caller, "define an asset without an issuing organisation")

    async def action(session: AsyncSession) -> ActionResult:
        if data.issuer_organisation_id is not None:
            book = await assets.issuer_book(session, data.issuer_organisation_id)
            if not reaches_book(caller, book):
                raise OrganisationNotFound(
                    f"organisation {data.issuer_organisation_id} does not exist"
                )
        return await assets.define_asset(session, data, caller.actor())

    return await answer_action(ctx, action)


@router.get(
    "/assets",
    response_model=schemas.AssetList,
    dependencies=[allow(ALL_ROLES, "read assets")],
)
async def list_assets(caller: CallerDep, session: SessionDep) -> schemas.AssetList:
    """Every asset, by code (any role)."""
    return schemas.AssetList(items=await assets.list_assets(session))


@router.get(
    "/assets/{code}",
    response_model=schemas.AssetRead,
    dependencies=[allow(ALL_ROLES, "read assets")],
)
async def get_asset(code: str, caller: CallerDep, session: SessionDep) -> schemas.AssetRead:
    """One asset (any role)."""
    return await assets.get_asset(session, code)


@router.patch(
    "/assets/{code}",
    response_model=schemas.AssetRead,
    dependencies=[allow(DEFINERS, "change assets")],
)
async def change_asset(code: str, data: schemas.AssetUpdate, ctx: Posting) -> Response:
    """Change an asset's validity period (admins: platform admins for an asset without an
    issuer, else an admin reaching the issuer's book, whose journal records
    `notice.asset_changed`). Lapse dates always follow the current value."""
    caller = ctx.caller

    async def action(session: AsyncSession) -> ActionResult:
        asset = await assets.get_asset(session, code, lock=True)
        book = asset.issuer_book
        if book is None:
            require_platform(caller, "change an asset without an issuing organisation")
        else:
            require_books(
                caller, (book,), "only an admin reaching the issuer's book may change this asset"
            )
        return await assets.change_validity(
            session, asset, data.expires_after_years, caller.actor()
        )

    return await answer_action(ctx, action)
