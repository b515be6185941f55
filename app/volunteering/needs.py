"""Residents' needs (需求库): registered by communities and social-work stations, met by projects.

A need describes what is needed and for which target group, never who: its description is
refused when it looks like it holds a phone or resident ID number (`JournalText`).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.identity.errors import OrganisationNotFound
from app.volunteering import errors, schemas
from app.volunteering.schemas import Catalog, CatalogEntry, NeedRead

URGENCY_RANK = {"low": 1, "normal": 2, "high": 3, "urgent": 4}
URGENCY_OF = {rank: name for name, rank in URGENCY_RANK.items()}
# Kinds of organisation that register needs.
NEED_REGISTRARS = ("community", "social_work_station")


async def catalog(session: AsyncSession) -> Catalog:
    """The service categories and the target groups of needs, in their listed order."""

    async def listed(table: str) -> list[CatalogEntry]:
        rows = await session.execute(
            text(f"SELECT code, name_zh, name_en FROM {table} ORDER BY position, code")
        )
        return [CatalogEntry.model_validate(row._asdict()) for row in rows]

    return Catalog(
        categories=await listed("service_categories"),
        target_groups=await listed("need_target_groups"),
    )


async def require_listed(session: AsyncSession, table: str, field: str, code: str) -> None:
    """422 unless `code` is a row of the catalogue `table`."""
    found = await session.execute(
        text(f"SELECT 1 FROM {table} WHERE code = :c"),
        {"c": code},
    )
    if found.first() is None:
        raise errors.UnknownCategory(
            f"{field} {code!r} is not listed (GET /v1/service-catalog)",
            errors=[{"field": f"body/{field}", "message": "not listed", "code": "unknown"}],
        )


async def organisation_in_book(session: AsyncSession, organisation_id: uuid.UUID, book: str) -> str:
    """The organisation's kind; 404 unless it is an organisation of `book`."""
    row = (
        await session.execute(
            text("SELECT kind FROM organisations WHERE id = :id AND book_code = :b"),
            {"id": organisation_id, "b": book},
        )
    ).one_or_none()
    if row is None:
        raise OrganisationNotFound(f"organisation {organisation_id} does not exist")
    return str(row.kind)


async def require_community(
    session: AsyncSession, book: str, community_id: uuid.UUID | None
) -> None:
    """A community named by a need or project must be a `community` organisation of the book."""
    if community_id is None:
        return
    kind = (
        await session.execute(
            text("SELECT kind FROM organisations WHERE id = :id AND book_code = :b"),
            {"id": community_id, "b": book},
        )
    ).scalar_one_or_none()
    if kind != "community":
        raise errors.InvalidCommunity(
            f"{community_id} is not a community of book {book!r}",
            errors=[{"field": "body/community_id", "message": "not a community", "code": "kind"}],
        )


_SELECT = """
SELECT n.id, n.book_code AS book, n.organisation_id, n.community_id, n.category,
       n.target_group, n.description, n.urgency, n.status, n.created_at, n.updated_at,
       coalesce(array_agg(pn.project_id ORDER BY pn.project_id)
                FILTER (WHERE pn.project_id IS NOT NULL), '{}') AS project_ids
FROM needs n LEFT JOIN project_needs pn ON pn.need_id = n.id
"""


def _need(row: Row[Any]) -> NeedRead:
    need: dict[str, Any] = row._asdict()
    need["urgency"] = URGENCY_OF[need["urgency"]]
    return NeedRead.model_validate(need)


async def get_need(session: AsyncSession, need_id: uuid.UUID) -> NeedRead:
    """A need and the projects that address it."""
    row = (
        await session.execute(text(_SELECT + " WHERE n.id = :id GROUP BY n.id"), {"id": need_id})
    ).one_or_none()
    if row is None:
        raise errors.NeedNotFound(f"need {need_id} does not exist")
    return _need(row)


async def create_need(
    session: AsyncSession, data: schemas.NeedCreate, organisation_id: uuid.UUID, created_by: str
) -> NeedRead:
    """Register a need for `organisation_id` (a community or social-work station)."""
    await require_listed(session, "service_categories", "category", data.category)
    await require_listed(session, "need_target_groups", "target_group", data.target_group)
    await require_community(session, data.book, data.community_id)
    need_id = uuid.uuid4()
    await session.execute(
        text(
            "INSERT INTO needs (id, book_code, organisation_id, community_id, category, "
            "target_group, description, urgency, created_by) VALUES (:id, :b, :o, :c, :cat, "
            ":tg, :d, :u, CAST(:by AS uuid))"
        ),
        {
            "id": need_id,
            "b": data.book,
            "o": organisation_id,
            "c": data.community_id,
            "cat": data.category,
            "tg": data.target_group,
            "d": data.description,
            "u": URGENCY_RANK[data.urgency],
            "by": created_by,
        },
    )
    return await get_need(session, need_id)


async def set_need_status(session: AsyncSession, need_id: uuid.UUID, status: str) -> NeedRead:
    """Move a need to `status` (open, matched, met, closed)."""
    await session.execute(
        text("UPDATE needs SET status = :s, updated_at = now() WHERE id = :id"),
        {"s": status, "id": need_id},
    )
    return await get_need(session, need_id)


async def list_needs(
    session: AsyncSession,
    book: str | None,
    status: str | None,
    unmet: bool,
    after: uuid.UUID | None,
    limit: int,
) -> list[NeedRead]:
    """Needs of a book; `unmet`: open needs no project addresses, most urgent and oldest first
    (the matching view), else by id for keyset pages."""
    where: list[str] = ["true"]
    params: dict[str, Any] = {"limit": limit + 1}
    if book is not None:
        where.append("n.book_code = :book")
        params["book"] = book
    if status is not None:
        where.append("n.status = :status")
        params["status"] = status
    if unmet:
        where.append(
            "n.status = 'open' AND NOT EXISTS "
            "(SELECT 1 FROM project_needs x WHERE x.need_id = n.id)"
        )
        order = "n.urgency DESC, n.created_at, n.id"
    else:
        order = "n.id"
        if after is not None:
            where.append("n.id > :after")
            params["after"] = after
    query = f"{_SELECT} WHERE {' AND '.join(where)} GROUP BY n.id ORDER BY {order} LIMIT :limit"
    return [_need(row) for row in await session.execute(text(query), params)]
