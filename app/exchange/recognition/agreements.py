"""Recognition agreements between books (通存通兑), no HTTP.

An agreement says that `to_book` accepts `from_asset` of `from_book` as `to_asset` at
num/den; it is directional (the reverse direction is another agreement) and published as a
`notice.recognition_agreed` entry in both books (`notice.recognition_ended` when it ends).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.exchange.errors import AssetNotFound
from app.exchange.recognition import errors, schemas
from app.http.actions import Notice
from app.http.caller import Caller
from app.identity.authorization import reaches_book, require_book
from app.ledger import errors as ledger_errors

NOTICE_AGREED = "recognition_agreed"
NOTICE_ENDED = "recognition_ended"


def agreement_view(row: Row[Any]) -> schemas.AgreementRead:
    """An agreement as the API shows it."""
    return schemas.AgreementRead.model_validate(
        {
            "id": row.id,
            "from_book": row.from_book,
            "from_asset": row.from_asset,
            "to_book": row.to_book,
            "to_asset": row.to_asset,
            "ratio": {"num": row.ratio_num, "den": row.ratio_den},
            "status": row.status,
            "created_by": row.created_by,
            "created_at": row.created_at,
            "ended_at": row.ended_at,
        }
    )


def sees_agreement(caller: Caller, row: Row[Any]) -> bool:
    """An agreement is visible to whoever reaches either of its books."""
    return reaches_book(caller, row.from_book) or reaches_book(caller, row.to_book)


async def agreement_row(
    session: AsyncSession, agreement_id: uuid.UUID, lock: str = ""
) -> Row[Any] | None:
    """An agreement's row (optionally locked `FOR SHARE` / `FOR UPDATE`), None if unknown."""
    return (
        await session.execute(
            text(f"SELECT * FROM recognition_agreements WHERE id = :id {lock}"),
            {"id": agreement_id},
        )
    ).one_or_none()


async def visible_agreement(
    session: AsyncSession, caller: Caller, agreement_id: uuid.UUID, lock: str = ""
) -> Row[Any]:
    """An agreement within the caller's reach; 404 (as if unknown) otherwise."""
    row = await agreement_row(session, agreement_id, lock)
    if row is None or not sees_agreement(caller, row):
        raise errors.AgreementNotFound(f"recognition agreement {agreement_id} does not exist")
    return row


def _notices(row: Row[Any], what: str, facts: dict[str, Any], caller: Caller) -> list[Notice]:
    return [Notice(book, what, facts, caller.actor()) for book in (row.from_book, row.to_book)]


async def create_agreement(
    session: AsyncSession, caller: Caller, data: schemas.AgreementCreate
) -> tuple[schemas.AgreementRead, list[Notice]]:
    """Record an agreement (an admin reaching both books); returns it and its two notices."""
    for book in (data.from_book, data.to_book):
        require_book(caller, book, f"book {book!r}")
    books = set(
        (
            await session.execute(
                text("SELECT code FROM books WHERE code IN (:a, :b)"),
                {"a": data.from_book, "b": data.to_book},
            )
        ).scalars()
    )
    for book in (data.from_book, data.to_book):
        if book not in books:
            raise ledger_errors.BookNotFound(f"book {book!r} does not exist")
    assets = set(
        (
            await session.execute(
                text("SELECT code FROM assets WHERE code IN (:a, :b)"),
                {"a": data.from_asset, "b": data.to_asset},
            )
        ).scalars()
    )
    for asset in (data.from_asset, data.to_asset):
        if asset not in assets:
            raise AssetNotFound(f"asset {asset!r} does not exist", asset=asset)
    agreement_id = uuid.uuid4()
    try:
        async with session.begin_nested():
            await session.execute(
                text(
                    "INSERT INTO recognition_agreements (id, from_book, from_asset, to_book, "
                    "to_asset, ratio_num, ratio_den, created_by) VALUES (:id, :fb, :fa, :tb, "
                    ":ta, :num, :den, CAST(:by AS uuid))"
                ),
                {
                    "id": agreement_id,
                    "fb": data.from_book,
                    "fa": data.from_asset,
                    "tb": data.to_book,
                    "ta": data.to_asset,
                    "num": data.ratio_num,
                    "den": data.ratio_den,
                    "by": caller.credential.id,
                },
            )
    except IntegrityError:
        # The partial unique index: another active agreement (perhaps committed concurrently).
        raise errors.AgreementExists(
            f"book {data.to_book!r} already accepts {data.from_asset} of book "
            f"{data.from_book!r} as {data.to_asset} under an active agreement"
        ) from None
    row = await agreement_row(session, agreement_id)
    assert row is not None  # inserted above, in this transaction
    facts = {
        "agreement_id": str(agreement_id),
        "from_book": data.from_book,
        "from_asset": data.from_asset,
        "to_book": data.to_book,
        "to_asset": data.to_asset,
        "ratio": {"num": data.ratio_num, "den": data.ratio_den},
    }
    return agreement_view(row), _notices(row, NOTICE_AGREED, facts, caller)


async def end_agreement(
    session: AsyncSession, caller: Caller, agreement_id: uuid.UUID
) -> tuple[schemas.AgreementRead, list[Notice]]:
    """End an active agreement (an admin reaching either book). The row lock waits for the
    transfers under way, so no transfer is recorded under an agreement after it ended."""
    row = await visible_agreement(session, caller, agreement_id, "FOR UPDATE")
    if row.status != "active":
        raise errors.AgreementEnded(f"recognition agreement {agreement_id} has already ended")
    await session.execute(
        text("UPDATE recognition_agreements SET status = 'ended', ended_at = now() WHERE id = :id"),
        {"id": agreement_id},
    )
    ended = await agreement_row(session, agreement_id)
    assert ended is not None  # locked above, in this transaction
    facts = {"agreement_id": str(agreement_id)}
    return agreement_view(ended), _notices(ended, NOTICE_ENDED, facts, caller)


async def list_agreements(
    session: AsyncSession,
    caller: Caller,
    book: str | None,
    status: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> schemas.AgreementPage:
    """Agreements touching a book the caller reaches (or `book`), oldest first, a page of up
    to `limit` after `after`."""
    if book is not None:
        require_book(caller, book, f"book {book!r}")
    scope = book or caller.book
    rows = await session.execute(
        text(
            "SELECT * FROM recognition_agreements a "
            "WHERE (CAST(:book AS text) IS NULL OR :book IN (a.from_book, a.to_book)) "
            "AND (CAST(:status AS text) IS NULL OR a.status = :status) "
            "AND (CAST(:after AS uuid) IS NULL OR (a.created_at, a.id) > "
            "(SELECT created_at, id FROM recognition_agreements WHERE id = CAST(:after AS uuid))) "
            "ORDER BY a.created_at, a.id LIMIT :limit"
        ),
        {"book": scope, "status": status, "after": after, "limit": limit + 1},
    )
    items = [agreement_view(row) for row in rows]
    more = len(items) > limit
    return schemas.AgreementPage(
        items=items[:limit], next_after=items[limit - 1].id if more else None
    )
