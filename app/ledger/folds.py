"""Running totals folded from a book's journal (no HTTP): where each kind of totals stands, and
one step of folding more entries into them.

A fold is a statement that reads the entries of one book with `seq` in (`:after`, `:upto`]
and adds what they contribute to its totals table, cutting days in the time zone `:tz`. Its
totals and its position (`journal_folds.folded_seq`) move in one transaction, under the
position's row lock, so several processes never fold the same entries twice. A reader sums the
totals and runs the same fold's SELECT over the entries after the position, in one snapshot:
whatever the follower's lag, nothing is missed or counted twice. The journal's entries of a
book become visible in `seq` order without gaps (the sequencer commits them so), so "every
entry up to the largest `seq` seen" is exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

# Entries folded per transaction: a few milliseconds of PostgreSQL's time, never the loop's.
FOLD_CHUNK = 5000
# The scope of a totals row that counts for the whole book (others: an organisation's owner).
WHOLE_BOOK = ""
# The `upto` of a read's own fold: every entry after the position.
LAST_SEQ = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Fold:
    """One kind of running totals: its name in `journal_folds`, its totals table (keyed by
    `book_code`), the INSERT that adds entries (`:after`, `:upto`] of `:book` to it, and the
    other parameters that INSERT takes, given the book and the time zone."""

    name: str
    table: str
    params: Callable[[str, str], dict[str, Any]]
    insert_sql: str


POSITION = """
SELECT folded_seq, timezone FROM journal_folds WHERE book_code = :book AND name = :name
"""
CLAIM = """
SELECT folded_seq, timezone FROM journal_folds
 WHERE book_code = :book AND name = :name FOR UPDATE SKIP LOCKED
"""
BEHIND = """
SELECT h.book_code FROM book_heads h
  LEFT JOIN journal_folds f ON f.book_code = h.book_code AND f.name = :name
 WHERE h.seq > coalesce(f.folded_seq, 0) OR f.timezone <> :tz
 ORDER BY h.book_code
"""


def day_condition(span: tuple[date | None, date | None], params: dict[str, Any]) -> str:
    """` AND day >= :day_from AND day <= :day_to` for the bounds of `span` given (each put in
    `params`): the days of a totals table's rows, inclusive."""
    day_from, day_to = span
    condition = ""
    if day_from is not None:
        condition += " AND day >= :day_from"
        params["day_from"] = day_from
    if day_to is not None:
        condition += " AND day <= :day_to"
        params["day_to"] = day_to
    return condition


async def read_params(
    session: AsyncSession,
    fold: Fold,
    book: str,
    timezone: str,
    scope: str,
    span: tuple[date | None, date | None],
) -> tuple[dict[str, Any], str]:
    """What a read of `fold`'s totals binds, and its day condition: the fold's parameters, the
    scope, the entries after the position (`after`, `upto`), and the days of `span`."""
    params = fold.params(book, timezone) | {"scope": scope, "upto": LAST_SEQ}
    params["after"] = await folded_seq(session, book, fold.name, timezone)
    return params, day_condition(span, params)


async def folded_seq(session: AsyncSession, book: str, name: str, timezone: str) -> int:
    """The `seq` up to which the totals `name` of `book` hold, cut in `timezone`; 0 when none
    hold (never folded, or folded in another time zone): the reader then folds every entry."""
    row = (await session.execute(text(POSITION), {"book": book, "name": name})).first()
    if row is None or row.timezone != timezone:
        return 0
    return int(row.folded_seq)


async def fold_step(
    session: AsyncSession, fold: Fold, book: str, timezone: str, chunk: int = FOLD_CHUNK
) -> int:
    """Fold up to `chunk` more entries of `book` into `fold`'s totals and commit; how many
    were folded (0 when caught up, or when another process holds the book's position).

    Totals cut in another time zone are dropped and folded again from the start."""
    params: dict[str, Any] = {"book": book, "name": fold.name, "tz": timezone}
    async with session.begin():
        await session.execute(
            text(
                "INSERT INTO journal_folds (book_code, name, folded_seq, timezone) "
                "VALUES (:book, :name, 0, :tz) ON CONFLICT DO NOTHING"
            ),
            params,
        )
        row = (await session.execute(text(CLAIM), params)).first()
        if row is None:
            return 0
        after = int(row.folded_seq)
        if row.timezone != timezone:
            # The table name is the fold's own constant, never input.
            await session.execute(text(f"DELETE FROM {fold.table} WHERE book_code = :book"), params)
            after = 0
        upto = await session.scalar(
            text(
                "SELECT max(seq) FROM journal_entries "
                "WHERE book_code = :book AND seq > :after AND seq <= :after + :chunk"
            ),
            {"book": book, "after": after, "chunk": chunk},
        )
        if upto is not None:
            values = fold.params(book, timezone) | {"after": after, "upto": upto}
            await session.execute(text(fold.insert_sql), values)
        await session.execute(
            text(
                "UPDATE journal_folds SET folded_seq = :seq, timezone = :tz "
                "WHERE book_code = :book AND name = :name"
            ),
            {**params, "seq": upto if upto is not None else after},
        )
    return 0 if upto is None else int(upto) - after


async def fold_behind(
    sessions: async_sessionmaker[AsyncSession],
    folds: list[Fold],
    timezone: str,
    max_chunks: int = 20,
    chunk: int = FOLD_CHUNK,
) -> int:
    """Fold every book that is behind, up to `max_chunks` steps of `chunk` entries per book and
    fold (the rest at the next call); how many entries were folded."""
    folded = 0
    for fold in folds:
        async with sessions() as session:
            found = await session.scalars(text(BEHIND), {"name": fold.name, "tz": timezone})
            books = list(found)
            await session.rollback()
            for book in books:
                for _ in range(max_chunks):
                    step = await fold_step(session, fold, book, timezone, chunk)
                    folded += step
                    if step == 0:
                        break
    return folded
