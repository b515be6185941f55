"""Read a book's journal from PostgreSQL in one snapshot and feed it to the verifier."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg

from app.ledger.verify import BookVerifier, LegRow, VerificationError, summary

CHUNK = 5000

# Reversals whose target is missing, later, of another book or kind, or not exactly negated.
BAD_REVERSALS = """
SELECT min(r.seq) FROM journal_entries r
LEFT JOIN journal_entries o ON o.tx_id = r.reverses
WHERE r.book_code = $1 AND r.kind = 'reversal' AND (
    o.tx_id IS NULL OR o.book_code <> r.book_code OR o.seq >= r.seq
    OR o.kind IN ('hold', 'hold.void', 'reversal') OR o.kind LIKE 'notice.%'
    OR (SELECT array_agg(account_id::text || ':' || (-amount) ORDER BY leg_index)
          FROM journal_legs WHERE book_code = o.book_code AND seq = o.seq)
       IS DISTINCT FROM
       (SELECT array_agg(account_id::text || ':' || amount ORDER BY leg_index)
          FROM journal_legs WHERE book_code = r.book_code AND seq = r.seq))
"""


async def book_codes(conn: asyncpg.Connection) -> list[tuple[str, int]]:
    """Every book with its head seq."""
    rows = await conn.fetch("SELECT book_code, seq FROM book_heads ORDER BY book_code")
    return [(r["book_code"], r["seq"]) for r in rows]


async def verify_book(
    conn: asyncpg.Connection, book: str, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Verify one book; raises VerificationError naming the first bad seq."""
    verifier = BookVerifier(book)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        head = await conn.fetchrow(
            "SELECT seq, entry_hash FROM book_heads WHERE book_code = $1", book
        )
        last = head["seq"] if head else 0
        start = 1
        while True:
            entries = await conn.fetch(
                "SELECT seq, tx_id::text, kind, "
                "to_char(posted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
                "prev_hash, entry_hash, body, "
                "reverses::text, resolves_hold::text FROM journal_entries "
                "WHERE book_code = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
                book,
                start,
                CHUNK,
            )
            if not entries:
                break
            end = entries[-1]["seq"]
            legs: dict[int, list[LegRow]] = {}
            for r in await conn.fetch(
                "SELECT seq, account_id::text, asset, amount, posted_after, "
                "pending_debits_after, pending_credits_after FROM journal_legs "
                "WHERE book_code = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq, leg_index",
                book,
                start,
                end,
            ):
                legs.setdefault(r[0], []).append(r[1:])
            for r in entries:
                verifier.feed(r, legs.get(r[0], ()))
            if progress is not None:
                progress(len(entries))
            start = end + 1
        accounts = {
            r[0]: (r[1], r[2], r[3], r[4])
            for r in await conn.fetch(
                "SELECT id::text, posted, pending_debits, pending_credits, last_seq "
                "FROM accounts WHERE book_code = $1",
                book,
            )
        }
        stored_head = (last, head["entry_hash"] if head else "0" * 64)
        verifier.finish(stored_head, accounts)
        bad = await conn.fetchval(BAD_REVERSALS, book)
        if bad is not None:
            raise VerificationError(
                book, bad, "a reversal does not negate an earlier reversible entry"
            )
    return summary(verifier)
