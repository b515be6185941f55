"""Assets: the units books count (HOUR, POINT and those admins define), their issuing
organisation and validity period (no HTTP).

Defining an asset with an issuer, or changing such an asset's validity, is recorded in the
issuer's book as `notice.asset_defined` / `notice.asset_changed`.
"""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.exchange.assets import schemas
from app.exchange.errors import AssetExists, AssetNotFound
from app.http.actions import ActionResult, Notice
from app.identity.errors import OrganisationNotFound

SELECT_ASSET = (
    "SELECT a.code, a.name, a.unit, a.issuer_organisation_id, o.book_code AS issuer_book, "
    "a.expires_after_years, a.created_at FROM assets a "
    "LEFT JOIN organisations o ON o.id = a.issuer_organisation_id"
)


async def list_assets(session: AsyncSession) -> list[schemas.AssetRead]:
    """Every asset, by code."""
    rows = await session.execute(text(f"{SELECT_ASSET} ORDER BY a.code"))
    return [schemas.AssetRead.model_validate(row._asdict()) for row in rows]


async def get_asset(session: AsyncSession, code: str, lock: bool = False) -> schemas.AssetRead:
    """One asset (locked for the transaction when `lock`)."""
    suffix = " FOR UPDATE OF a" if lock else ""
    row = (
        await session.execute(text(f"{SELECT_ASSET} WHERE a.code = :code{suffix}"), {"code": code})
    ).one_or_none()
    if row is None:
        raise AssetNotFound(f"asset {code!r} does not exist")
    return schemas.AssetRead.model_validate(row._asdict())


async def validity_years(session: AsyncSession) -> dict[str, int]:
    """The validity period of each asset that has one."""
    rows = await session.execute(
        text("SELECT code, expires_after_years FROM assets WHERE expires_after_years IS NOT NULL")
    )
    return {row.code: int(row.expires_after_years) for row in rows}


async def issuer_book(session: AsyncSession, organisation_id: uuid.UUID) -> str:
    """The book of an issuing organisation."""
    book = await session.scalar(
        text("SELECT book_code FROM organisations WHERE id = :id"), {"id": organisation_id}
    )
    if book is None:
        raise OrganisationNotFound(f"organisation {organisation_id} does not exist")
    return str(book)


async def define_asset(
    session: AsyncSession, data: schemas.AssetCreate, actor: dict[str, str]
) -> ActionResult:
    """Define a new asset; with an issuer, its book records `notice.asset_defined`."""
    book = None
    if data.issuer_organisation_id is not None:
        book = await issuer_book(session, data.issuer_organisation_id)
    created = await session.execute(
        text(
            "INSERT INTO assets (code, name, unit, issuer_organisation_id, expires_after_years) "
            "VALUES (:code, :name, :unit, :issuer, :years) ON CONFLICT DO NOTHING RETURNING 1"
        ),
        {
            "code": data.code,
            "name": data.name,
            "unit": data.unit,
            "issuer": data.issuer_organisation_id,
            "years": data.expires_after_years,
        },
    )
    if created.first() is None:
        raise AssetExists(f"asset {data.code!r} exists", code=data.code)
    asset = await get_asset(session, data.code)
    notice = None
    if book is not None:
        facts = {
            "asset": data.code,
            "name": data.name,
            "unit": data.unit,
            "issuer_organisation_id": str(data.issuer_organisation_id),
            "expires_after_years": data.expires_after_years,
        }
        notice = Notice(book, "asset_defined", facts, actor)
    return ActionResult(201, asset.model_dump(mode="json"), notice)


async def change_validity(
    session: AsyncSession, asset: schemas.AssetRead, years: int | None, actor: dict[str, str]
) -> ActionResult:
    """Set an asset's validity period (as `get_asset(lock=True)` read it); with an issuer, its
    book records `notice.asset_changed`. Setting the current value changes nothing."""
    previous = asset.expires_after_years
    if previous == years:
        return ActionResult(200, asset.model_dump(mode="json"))
    await session.execute(
        text("UPDATE assets SET expires_after_years = :years WHERE code = :code"),
        {"years": years, "code": asset.code},
    )
    changed = await get_asset(session, asset.code)
    notice = None
    if asset.issuer_book is not None:
        facts = {
            "asset": asset.code,
            "issuer_organisation_id": str(asset.issuer_organisation_id),
            "expires_after_years": years,
            "previous_expires_after_years": previous,
        }
        notice = Notice(asset.issuer_book, "asset_changed", facts, actor)
    return ActionResult(200, changed.model_dump(mode="json"), notice)


async def require_asset(session: AsyncSession, asset: str) -> None:
    """404 unless the asset is defined."""
    found = await session.execute(text("SELECT 1 FROM assets WHERE code = :c"), {"c": asset})
    if found.first() is None:
        raise AssetNotFound(f"asset {asset!r} does not exist", asset=asset)
