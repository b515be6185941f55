"""Read a book's journal from PostgreSQL in one snapshot and feed it to the verifier."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from app.kit.pg_pool import connect
from app.ledger.verify import BookSummary, BookVerifier, VerificationError, summary

# Entries per chunk: PostgreSQL reads the next chunk while this process checks the one before
# (the size matters little: docs/performance.md).
CHUNK = 500
SNAPSHOT_ID = re.compile(r"[0-9A-F]+-[0-9A-F]+-[0-9]+")
ENTRIES = (
    "SELECT seq, tx_id::text, kind, "
    "to_char(posted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
    "prev_hash, entry_hash, body, reverses::text, resolves_hold::text FROM journal_entries "
    "WHERE book_code = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq"
)
LEGS = (
    "SELECT seq, account_id::text, asset, amount, posted_after, pending_debits_after, "
    "pending_credits_after FROM journal_legs WHERE book_code = $1 AND seq BETWEEN $2 AND $3 "
    "ORDER BY seq, leg_index"
)

# Reversals whose target is missing, later, of another book or kind, or not exactly negated.
# (`feed` has checked that exactly the reversals have `reverses` set, so the unique index on
# `reverses` finds them without reading the whole book.)
BAD_REVERSALS = """
SELECT min(r.seq) FROM journal_entries r
LEFT JOIN journal_entries o ON o.tx_id = r.reverses
WHERE r.reverses IS NOT NULL AND r.book_code = $1 AND (
    o.tx_id IS NULL OR o.book_code <> r.book_code OR o.seq >= r.seq
    OR o.kind IN ('hold', 'hold.void', 'reversal', 'recognition.out', 'recognition.in')
    OR o.kind LIKE 'notice.%'
    OR (SELECT array_agg(account_id::text || ':' || (-amount) ORDER BY leg_index)
          FROM journal_legs WHERE book_code = o.book_code AND seq = o.seq)
       IS DISTINCT FROM
       (SELECT array_agg(account_id::text || ':' || amount ORDER BY leg_index)
          FROM journal_legs WHERE book_code = r.book_code AND seq = r.seq))
"""


async def stored_balances(
    conn: asyncpg.Connection, book: str
) -> dict[str, tuple[int, int, int, int]]:
    """Each account of the book: (posted, pending_debits, pending_credits, last_seq)."""
    rows = await conn.fetch(
        "SELECT id::text, posted, pending_debits, pending_credits, last_seq "
        "FROM accounts WHERE book_code = $1",
        book,
    )
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


async def book_codes(conn: asyncpg.Connection) -> list[tuple[str, int]]:
    """Every book with its head seq."""
    rows = await conn.fetch("SELECT book_code, seq FROM book_heads ORDER BY book_code")
    return [(r["book_code"], r["seq"]) for r in rows]


@dataclass(frozen=True)
class JournalReader:
    """Two connections to read a book's entries and legs side by side; reusable across books."""

    entries: asyncpg.Connection
    legs: asyncpg.Connection


@asynccontextmanager
async def open_reader(url: str) -> AsyncIterator[JournalReader]:
    """Open (both at once) and finally close the reader's connections."""
    connections = await asyncio.gather(connect(url), connect(url), return_exceptions=True)
    try:
        entries_conn, legs_conn = connections
        if isinstance(entries_conn, BaseException):
            raise entries_conn
        if isinstance(legs_conn, BaseException):
            raise legs_conn
        yield JournalReader(entries_conn, legs_conn)
    finally:
        for conn in connections:
            if isinstance(conn, asyncpg.Connection):
                await conn.close()


async def verify_book(
    url: str, book: str, progress: Callable[[int], None] | None = None
) -> BookSummary:
    """Verify one book on connections of its own; raises VerificationError at the first bad seq."""
    async with open_reader(url) as reader:
        return await verify_book_with(reader, book, progress)


async def verify_book_with(
    reader: JournalReader, book: str, progress: Callable[[int], None] | None = None
) -> BookSummary:
    """Verify one book; raises VerificationError naming the first bad seq.

    It reads on two connections that share one snapshot, the entries on one and their legs on
    the other, and sends each chunk's queries before it checks the chunk before: PostgreSQL
    reads the next chunk while this process checks the current one.
    """
    return await _verify(reader.entries, reader.legs, book, progress)


async def _verify(
    entries_conn: asyncpg.Connection,
    legs_conn: asyncpg.Connection,
    book: str,
    progress: Callable[[int], None] | None,
) -> BookSummary:
    verifier = BookVerifier(book)
    async with entries_conn.transaction(isolation="repeatable_read", readonly=True):
        snapshot = await entries_conn.fetchval("SELECT pg_export_snapshot()")
        if not SNAPSHOT_ID.fullmatch(snapshot):
            raise RuntimeError(f"unexpected snapshot id {snapshot!r}")
        async with legs_conn.transaction(isolation="repeatable_read", readonly=True):
            await legs_conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            # A chunk is a range of the primary key: read it in index order. The planner picks
            # a bitmap scan for a few hundred rows, which must then be sorted, and costs more
            # server time than reading in index order (docs/performance.md): time PostgreSQL
            # then lacks for reading ahead of the checks.
            for conn in (entries_conn, legs_conn):
                await conn.execute("SET LOCAL enable_bitmapscan = off")
            head = await entries_conn.fetchrow(
                "SELECT seq, entry_hash FROM book_heads WHERE book_code = $1", book
            )
            last = head["seq"] if head else 0

            def fetch(start: int) -> tuple[asyncio.Task[Any], asyncio.Task[Any]]:
                end = min(start + CHUNK - 1, last)
                return (
                    asyncio.ensure_future(entries_conn.fetch(ENTRIES, book, start, end)),
                    asyncio.ensure_future(legs_conn.fetch(LEGS, book, start, end)),
                )

            ahead = fetch(1) if last else None
            try:
                while ahead is not None:
                    entries, leg_rows = await ahead[0], await ahead[1]
                    next_start = entries[-1]["seq"] + 1 if entries else last + 1
                    ahead = fetch(next_start) if next_start <= last else None
                    await asyncio.sleep(0)  # the next chunk's queries go out now
                    # Both are in seq order: each entry takes the run of legs with its seq.
                    first, count = 0, len(leg_rows)
                    for r in entries:
                        seq, end = r[0], first
                        while end < count and leg_rows[end][0] == seq:
                            end += 1
                        verifier.feed(r, leg_rows[first:end])
                        first = end
                    if first != count:
                        raise VerificationError(
                            book, leg_rows[first][0], "a leg has no entry with its seq"
                        )
                    if progress is not None:
                        progress(len(entries))
            finally:
                # A failed check leaves the next chunk's queries running: let them finish,
                # so that the transactions end cleanly and the check's error is the one raised.
                if ahead is not None:
                    await asyncio.gather(*ahead, return_exceptions=True)
        stored_head = (last, head["entry_hash"] if head else "0" * 64)
        verifier.finish(stored_head, await stored_balances(entries_conn, book))
        bad = await entries_conn.fetchval(BAD_REVERSALS, book)
        if bad is not None:
            raise VerificationError(
                book, bad, "a reversal does not negate an earlier reversible entry"
            )
    return summary(verifier)
