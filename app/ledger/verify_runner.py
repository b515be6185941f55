"""Read a book's journal from PostgreSQL in one snapshot and feed it to the verifier."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg

from app.ledger.verify import BookVerifier, EntryRow, LegRow, VerificationError, summary

CHUNK = 5000

# Each entry with the bytes its body must start and end with, rebuilt from the stored columns
# (keys in RFC 8785 order), and its legs as arrays.
ENTRIES = """
SELECT e.seq, e.tx_id::text, e.kind, t.posted_at, e.prev_hash, e.entry_hash, e.body,
       e.reverses::text, e.resolves_hold::text,
       convert_to('{"book":' || to_json(e.book_code)::text || ',"kind":' || to_json(e.kind)::text
                  || ',"legs":[' || coalesce(l.legs_json, '') || '],"memo":', 'UTF8'),
       convert_to('"posted_at":"' || t.posted_at || '","prev_hash":"' || e.prev_hash
                  || '","seq":' || e.seq || ',"tx_id":"' || e.tx_id || '"}', 'UTF8'),
       l.accounts, l.assets, l.amounts, l.posted, l.pending_debits, l.pending_credits
  FROM journal_entries e
 CROSS JOIN LATERAL (SELECT to_char(e.posted_at AT TIME ZONE 'UTC',
                                    'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS posted_at) t
  LEFT JOIN LATERAL (
       SELECT string_agg('{"account_id":"' || account_id || '","amount":' || amount
                         || ',"asset":' || to_json(asset)::text || '}', ',' ORDER BY leg_index)
                  AS legs_json,
              array_agg(account_id::text ORDER BY leg_index) AS accounts,
              array_agg(asset ORDER BY leg_index) AS assets,
              array_agg(amount ORDER BY leg_index) AS amounts,
              array_agg(posted_after ORDER BY leg_index) AS posted,
              array_agg(pending_debits_after ORDER BY leg_index) AS pending_debits,
              array_agg(pending_credits_after ORDER BY leg_index) AS pending_credits
         FROM journal_legs WHERE book_code = e.book_code AND seq = e.seq) l ON true
 WHERE e.book_code = $1 AND e.seq >= $2
 ORDER BY e.seq LIMIT $3
"""

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
            rows = await conn.fetch(ENTRIES, book, start, CHUNK)
            if not rows:
                break
            for r in rows:
                legs = [LegRow._make(leg) for leg in zip(*r[11:17], strict=True)] if r[11] else []
                verifier.feed(EntryRow._make(r[:11]), legs)
            if progress is not None:
                progress(len(rows))
            start = rows[-1][0] + 1
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
