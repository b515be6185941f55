"""A kiosk site's items and their stock (no HTTP).

Stock on hand changes only through a recorded move (`kiosk_stock_moves`, append-only: the
initial count, restocks, corrections, redemptions), each with who and why, in the same
transaction as the item's row, which is locked while it changes: stock never goes below zero
and the moves always add up to it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.exchange.assets.service import require_asset
from app.identity.organisations import get_organisation
from app.identity.schemas import OrganisationRead
from app.kiosk import errors, schemas
from app.kiosk.schemas import ItemRead, RedemptionLine, StockMoveRead

KIOSK_SITE = "kiosk_site"

ITEM_COLUMNS = (
    "id, site_id, book_code AS book, name, asset, price, stock, reserved, "
    "CASE WHEN stock IS NULL THEN NULL ELSE stock - reserved END AS available, status, "
    "created_at, updated_at"
)
MOVE_COLUMNS = (
    "id, item_id, kind, delta, stock_after, reason, redemption_id, created_by, created_at"
)


@dataclass(frozen=True, slots=True)
class Site:
    """A kiosk site: the organisation whose items a kiosk offers, in its book."""

    id: uuid.UUID
    book: str
    name: str


def site_of(organisation: OrganisationRead) -> Site:
    """The kiosk site an organisation is (422 unless of kind `kiosk_site`)."""
    if organisation.kind != KIOSK_SITE:
        raise errors.NotAKioskSite(f"organisation {organisation.id} is a {organisation.kind}")
    return Site(organisation.id, organisation.book, organisation.name)


async def site(session: AsyncSession, site_id: uuid.UUID) -> Site:
    """A kiosk site (an organisation of kind `kiosk_site`)."""
    return site_of(await get_organisation(session, site_id))


async def list_items(session: AsyncSession, site_id: uuid.UUID) -> list[ItemRead]:
    """The site's items, by name."""
    rows = await session.execute(
        text(f"SELECT {ITEM_COLUMNS} FROM kiosk_items WHERE site_id = :s ORDER BY name, id"),
        {"s": site_id},
    )
    return [ItemRead.model_validate(row._asdict()) for row in rows]


async def get_item(session: AsyncSession, item_id: uuid.UUID, lock: bool = False) -> ItemRead:
    """An item; 404 if unknown."""
    row = (
        await session.execute(
            text(
                f"SELECT {ITEM_COLUMNS} FROM kiosk_items WHERE id = :id"
                + (" FOR UPDATE" if lock else "")
            ),
            {"id": item_id},
        )
    ).one_or_none()
    if row is None:
        raise errors.ItemNotFound(f"item {item_id} does not exist")
    return ItemRead.model_validate(row._asdict())


async def _record_move(
    session: AsyncSession,
    item_id: uuid.UUID,
    kind: str,
    delta: int,
    stock_after: int | None,
    reason: str,
    created_by: str,
    redemption_id: uuid.UUID | None = None,
) -> StockMoveRead:
    row = (
        await session.execute(
            text(
                "INSERT INTO kiosk_stock_moves (id, item_id, kind, delta, stock_after, reason, "
                "redemption_id, created_by) VALUES (:id, :item, :kind, :delta, :after, :reason, "
                f":redemption, CAST(:by AS uuid)) RETURNING {MOVE_COLUMNS}"
            ),
            {
                "id": uuid.uuid4(),
                "item": item_id,
                "kind": kind,
                "delta": delta,
                "after": stock_after,
                "reason": reason,
                "redemption": redemption_id,
                "by": created_by,
            },
        )
    ).one()
    return StockMoveRead.model_validate(row._asdict())


async def create_item(
    session: AsyncSession, site_row: Site, data: schemas.ItemCreate, created_by: str
) -> ItemRead:
    """A new item at the site, its initial stock recorded as the first move."""
    await require_asset(session, data.asset)
    item_id = uuid.uuid4()
    await session.execute(
        text(
            "INSERT INTO kiosk_items (id, site_id, book_code, name, asset, price, stock, status) "
            "VALUES (:id, :site, :book, :name, :asset, :price, :stock, :status)"
        ),
        {
            "id": item_id,
            "site": site_row.id,
            "book": site_row.book,
            "name": data.name,
            "asset": data.asset,
            "price": data.price,
            "stock": data.stock,
            "status": data.status,
        },
    )
    await _record_move(
        session, item_id, "initial", data.stock or 0, data.stock, "listed", created_by
    )
    return await get_item(session, item_id)


async def update_item(
    session: AsyncSession, item_id: uuid.UUID, data: schemas.ItemUpdate
) -> ItemRead:
    """Change an item's name, price or status (not its stock: see `change_stock`)."""
    await get_item(session, item_id, lock=True)
    fields = data.model_dump(exclude_unset=True, exclude_none=True)
    if fields:
        assignments = ", ".join(f"{name} = :{name}" for name in fields)
        await session.execute(
            text(f"UPDATE kiosk_items SET {assignments}, updated_at = now() WHERE id = :id"),
            {**fields, "id": item_id},
        )
    return await get_item(session, item_id)


async def change_stock(
    session: AsyncSession, item_id: uuid.UUID, data: schemas.StockChange, created_by: str
) -> tuple[ItemRead, StockMoveRead]:
    """A restock or correction of an item's stock on hand, recorded; the item and the move.
    What pending redemptions hold back cannot be corrected away."""
    item = await get_item(session, item_id, lock=True)
    if data.kind == "restock" and data.delta <= 0:
        raise errors.StockBelowZero("a restock adds pieces: delta must be positive")
    if item.stock is None:
        raise errors.StockBelowZero("the item has unlimited stock; set a count by listing anew")
    after = item.stock + data.delta
    if after < item.reserved:
        raise errors.StockBelowZero(
            f"{item.stock} on hand, {item.reserved} held by pending redemptions: "
            f"{data.delta} would leave less than none",
            stock=item.stock,
            reserved=item.reserved,
        )
    await session.execute(
        text("UPDATE kiosk_items SET stock = :after, updated_at = now() WHERE id = :id"),
        {"after": after, "id": item_id},
    )
    move = await _record_move(
        session, item_id, data.kind, data.delta, after, data.reason, created_by
    )
    return await get_item(session, item_id), move


async def lock_basket(
    session: AsyncSession, site_id: uuid.UUID, lines: list[schemas.BasketLine]
) -> list[tuple[ItemRead, int]]:
    """The basket's items, in the order asked, each with its quantity, locked in id order (so
    concurrent baskets cannot deadlock); refused if one is not at the site, not active, or
    short of stock."""
    quantities: dict[uuid.UUID, int] = {}
    for line in lines:
        quantities[line.item_id] = quantities.get(line.item_id, 0) + line.quantity
    basket = []
    for item_id in sorted(quantities):
        try:
            item = await get_item(session, item_id, lock=True)
        except errors.ItemNotFound:
            item = None
        if item is None or item.site_id != site_id:
            raise errors.ItemNotFound(f"item {item_id} does not exist at this site")
        if item.status != "active":
            raise errors.ItemInactive(f"{item.name} is not offered now", item_id=str(item_id))
        wanted = quantities[item_id]
        if item.available is not None and item.available < wanted:
            raise errors.OutOfStock(
                f"{item.name}: {item.available} available, {wanted} asked",
                item_id=str(item_id),
                available=item.available,
            )
        basket.append((item, wanted))
    order = list(quantities)  # dicts keep the order of first appearance
    basket.sort(key=lambda entry: order.index(entry[0].id))
    assets = {item.asset for item, _ in basket}
    if len(assets) > 1:
        raise errors.MixedAssets(f"the basket is priced in {', '.join(sorted(assets))}")
    return basket


async def lock_lines(session: AsyncSession, lines: Sequence[RedemptionLine]) -> None:
    """Lock a redemption's items in id order, as `lock_basket` does, before its posting: what
    settles it then only updates rows it holds (the book's head is locked after them)."""
    await session.execute(
        text(
            "SELECT 1 FROM kiosk_items WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR UPDATE"
        ),
        {"ids": sorted({str(line.item_id) for line in lines})},
    )


async def reserve(session: AsyncSession, item_id: uuid.UUID, quantity: int) -> None:
    """Hold back stock for a pending redemption (the item locked by `lock_basket`)."""
    await session.execute(
        text(
            "UPDATE kiosk_items SET reserved = reserved + :q, updated_at = now() "
            "WHERE id = :id AND stock IS NOT NULL"
        ),
        {"q": quantity, "id": item_id},
    )


async def release(session: AsyncSession, lines: Sequence[RedemptionLine]) -> None:
    """Give back what a cancelled or expired redemption held."""
    for line in sorted(lines, key=lambda line: str(line.item_id)):
        await session.execute(
            text(
                "UPDATE kiosk_items SET reserved = reserved - :q, updated_at = now() "
                "WHERE id = :id AND stock IS NOT NULL"
            ),
            {"q": line.quantity, "id": line.item_id},
        )


async def take(
    session: AsyncSession,
    lines: Sequence[RedemptionLine],
    redemption_id: uuid.UUID,
    created_by: str,
) -> None:
    """Take a confirmed redemption's pieces out of stock (they were reserved), recorded."""
    for line in sorted(lines, key=lambda line: str(line.item_id)):
        item_id = line.item_id
        after = await session.scalar(
            text(
                "UPDATE kiosk_items SET stock = stock - :q, reserved = reserved - :q, "
                "updated_at = now() WHERE id = :id AND stock IS NOT NULL RETURNING stock"
            ),
            {"q": line.quantity, "id": item_id},
        )
        await _record_move(
            session,
            item_id,
            "redemption",
            -line.quantity,
            after,
            "redeemed",
            created_by,
            redemption_id,
        )
