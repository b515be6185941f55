"""The SQL of one group-commit batch: read the state, write everything with a guard.

One read of every row a batch needs (`load_state`, with `lock` taking the head first and then
every row), and one statement that writes every row with data-modifying CTEs
(`write_batch`); the write fails with serialization_failure, writing nothing, unless the head
and each changed account are as read. When the sequencer takes which path:
app/ledger/sequencer.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from app.ledger.answers import posting_from_row, posting_json
from app.ledger.journal import BalanceState
from app.ledger.posting import AccountState, HoldState

# An entry with its accounts' balances right after it (the last leg of each account).
POSTINGS = """
SELECT e.tx_id::text AS tx_id, e.body, e.entry_hash,
       (SELECT json_agg(json_build_array(l.account_id, l.asset, l.posted_after,
                                         l.pending_debits_after, l.pending_credits_after))
          FROM (SELECT DISTINCT ON (account_id) * FROM journal_legs
                 WHERE book_code = e.book_code AND seq = e.seq
                 ORDER BY account_id, leg_index DESC) l)::text AS balances
  FROM journal_entries e WHERE e.tx_id = ANY($1::uuid[])
"""

# Each part finds its rows through an index, whatever the planner thinks of the arrays' sizes:
# accounts by a semi-join on their ids (an OR of the three lists scanned the whole table), and
# stored answers one probe per key (LATERAL ... LIMIT 1; a hash join scanned every key).
# Locked: the book's head is locked first (the select list is evaluated left to right): it
# serialises every writer of the book's accounts and holds, so the row locks after it cannot
# deadlock with another batch. Unlocked (no {lock}): one statement, so one snapshot.
_READ_STATE = """
SELECT
  (SELECT row_to_json(h)::text FROM (
     SELECT seq, entry_hash, posted_at FROM book_heads WHERE book_code = $6 {lock}) h)
     AS head,
  (SELECT coalesce(json_agg(a), '[]') FROM (
     SELECT id, book_code, asset, status, overdraft_limit, posted, pending_debits,
            pending_credits, last_seq
       FROM accounts
      WHERE id IN (SELECT unnest($1::uuid[])
                   UNION SELECT from_account_id FROM holds WHERE id = ANY($2::uuid[])
                   UNION SELECT to_account_id FROM holds WHERE id = ANY($2::uuid[]))
      ORDER BY id {lock}) a) AS accounts,
  (SELECT coalesce(json_agg(h), '[]') FROM (
     SELECT id, book_code, from_account_id, to_account_id, asset, amount, expires_at, status
       FROM holds WHERE id = ANY($2::uuid[]) ORDER BY id {lock}) h) AS holds,
  (SELECT coalesce(json_agg(k), '[]') FROM (
     SELECT k.credential_id, k.key, k.request_hash, k.status_code, k.tx_id,
            k.response::text AS response
       FROM unnest($3::uuid[], $4::text[]) AS q(cid, key)
       CROSS JOIN LATERAL (
         SELECT * FROM idempotency_keys k
          WHERE k.credential_id = q.cid AND k.key = q.key LIMIT 1) k) k) AS stored,
  (SELECT coalesce(json_agg(reverses), '[]') FROM journal_entries
    WHERE reverses = ANY($5::uuid[])) AS reversed
"""
READ_STATE_LOCKED = _READ_STATE.format(lock="FOR UPDATE")
READ_STATE = _READ_STATE.format(lock="")

WRITE_BATCH = """
WITH
 entries AS (
   INSERT INTO journal_entries (book_code, posted_at, seq, tx_id, kind, prev_hash, entry_hash,
                                body, reverses, resolves_hold)
   SELECT $1, $2, * FROM unnest($3::bigint[], $4::uuid[], $5::text[], $6::text[], $7::text[],
                                $8::bytea[], $9::uuid[], $10::uuid[])),
 legs AS (
   INSERT INTO journal_legs (book_code, seq, leg_index, account_id, asset, amount, posted_after,
                             pending_debits_after, pending_credits_after)
   SELECT $1, * FROM unnest($11::bigint[], $12::smallint[], $13::uuid[], $14::text[],
                            $15::bigint[], $16::bigint[], $17::bigint[], $18::bigint[])),
 balances AS (
   UPDATE accounts t SET posted = u.posted, pending_debits = u.pd, pending_credits = u.pc,
                         last_seq = u.last_seq
     FROM unnest($19::uuid[], $20::bigint[], $21::bigint[], $22::bigint[], $23::bigint[],
                 $47::text[], $48::bigint[])
          AS u(id, posted, pd, pc, last_seq, status, lim)
    WHERE t.id = u.id AND t.status = u.status AND t.overdraft_limit = u.lim
   RETURNING 1),
 new_holds AS (
   INSERT INTO holds (id, book_code, seq, from_account_id, to_account_id, asset, amount,
                      expires_at, status, resolved_by, posted_amount)
   SELECT u.id, $1, u.seq, u.f, u.t, u.asset, u.amount, u.exp, u.status, u.by, u.posted
     FROM unnest($24::uuid[], $25::bigint[], $26::uuid[], $27::uuid[], $28::text[],
                 $29::bigint[], $30::timestamptz[], $31::text[], $32::uuid[], $33::bigint[])
          AS u(id, seq, f, t, asset, amount, exp, status, by, posted)),
 resolved_holds AS (
   UPDATE holds t SET status = u.status, resolved_by = u.by, posted_amount = u.posted
     FROM unnest($34::uuid[], $35::text[], $36::uuid[], $37::bigint[])
          AS u(id, status, by, posted)
    WHERE t.id = u.id),
 head AS (
   UPDATE book_heads SET seq = $38, entry_hash = $39, posted_at = $2
    WHERE book_code = $1 AND seq = $46 AND cardinality($3::bigint[]) > 0
   RETURNING 1),
 answers AS (
   INSERT INTO idempotency_keys (credential_id, key, request_hash, status_code, response, tx_id)
   SELECT * FROM unnest($40::uuid[], $41::text[], $42::text[], $43::int[], $44::jsonb[],
                        $45::uuid[]))
SELECT ledger_expect((SELECT count(*) FROM head) = least(cardinality($3::bigint[]), 1),
                     'the book head')
     + ledger_expect((SELECT count(*) FROM balances) = cardinality($19::uuid[]), 'an account')
"""


class ChainHead(NamedTuple):
    """A book's head: its last entry's seq and hash, and when it was posted (None: no entry)."""

    seq: int
    entry_hash: str
    posted_at: datetime | None

    def same_entry(self, other: ChainHead) -> bool:
        """Whether both name the same last entry."""
        return self.seq == other.seq and self.entry_hash == other.entry_hash


@dataclass
class BatchState:
    """The rows a batch read and locked."""

    head: ChainHead | None
    accounts: dict[str, AccountState]
    holds: dict[str, HoldState]
    stored: dict[tuple[str, str], tuple[str, int, bytes]]
    reversed_ids: set[str]


@dataclass
class BatchRows:
    """What a batch will write, a tuple per row (turned into columns once, when written)."""

    book: str
    posted_at: datetime
    entries: list[tuple[Any, ...]] = field(default_factory=list)
    legs: list[tuple[Any, ...]] = field(default_factory=list)
    new_holds: dict[str, list[Any]] = field(default_factory=dict)
    resolved_holds: list[tuple[str, str, str, int | None]] = field(default_factory=list)
    answers: list[tuple[Any, ...]] = field(default_factory=list)

    def resolve_hold(self, hold_id: str, status: str, by: str, posted: int | None) -> None:
        new = self.new_holds.get(hold_id)
        if new is not None:  # placed and resolved in one batch: write its final state
            new[7:10] = [status, by, posted]
        else:
            self.resolved_holds.append((hold_id, status, by, posted))


def _decoded(value: Any) -> Any:
    """A json column's value: text on the sequencer's connections, already decoded on a
    SQLAlchemy session's (its driver adapter registers a json codec)."""
    return json.loads(value) if isinstance(value, str) else value


async def load_state(
    conn: asyncpg.Connection,
    book: str,
    account_ids: Iterable[str],
    hold_ids: Iterable[str],
    keys: list[tuple[str, str]],
    reversal_targets: Iterable[str],
    lock: bool = True,
) -> BatchState:
    """Read (and with `lock`, lock) the head and the accounts and holds a batch touches, its
    stored answers and reversals."""
    row = await conn.fetchrow(
        READ_STATE_LOCKED if lock else READ_STATE,
        list(account_ids),
        list(hold_ids),
        [cid for cid, _ in keys],
        [key for _, key in keys],
        list(reversal_targets),
        book,
    )
    head = None
    if row["head"] is not None:
        h = _decoded(row["head"])
        posted_at = datetime.fromisoformat(h["posted_at"]) if h["posted_at"] else None
        head = ChainHead(h["seq"], h["entry_hash"], posted_at)
    accounts = {
        a["id"]: AccountState(
            a["id"],
            a["book_code"],
            a["asset"],
            a["status"],
            a["overdraft_limit"],
            BalanceState(a["posted"], a["pending_debits"], a["pending_credits"]),
            a["last_seq"],
        )
        for a in _decoded(row["accounts"])
    }
    holds = {
        h["id"]: HoldState(
            h["id"],
            h["book_code"],
            h["from_account_id"],
            h["to_account_id"],
            h["asset"],
            h["amount"],
            datetime.fromisoformat(h["expires_at"]),
            h["status"],
        )
        for h in _decoded(row["holds"])
    }
    keys_found = _decoded(row["stored"])
    postings = await read_postings(conn, [k["tx_id"] for k in keys_found if k["tx_id"]])
    stored = {
        (k["credential_id"], k["key"]): (
            k["request_hash"],
            k["status_code"],
            posting_json(postings[k["tx_id"]]) if k["tx_id"] else k["response"].encode(),
        )
        for k in keys_found
    }
    return BatchState(head, accounts, holds, stored, set(_decoded(row["reversed"])))


async def read_postings(conn: asyncpg.Connection, tx_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Posting answers rebuilt from the journal, by transaction id."""
    if not tx_ids:
        return {}
    rows = await conn.fetch(POSTINGS, tx_ids)
    return {r["tx_id"]: posting_from_row(r["body"], r["entry_hash"], r["balances"]) for r in rows}


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows of `width` values as `width` columns (empty columns when there are no rows)."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


async def write_batch(
    conn: asyncpg.Connection,
    rows: BatchRows,
    changed: Iterable[AccountState],
    new_head: tuple[int, str],
    read_seq: int,
) -> None:
    """Write a batch's entries, legs, balances, holds, head and answers in one statement.

    It fails with asyncpg.SerializationError, writing nothing, unless the head is still at
    `read_seq` and each changed account has the status and limit the batch read; `new_head` is
    the (seq, entry_hash) of the batch's last entry.
    """
    new_head_seq, new_head_hash = new_head
    # The head first (the guard reads `head` first), then accounts in id order: the order in
    # which a locked read takes them, so that two batches never wait on each other in a cycle.
    changed = sorted(changed, key=lambda account: account.id)
    new_holds: list[Sequence[Any]] = list(zip(*rows.new_holds.values(), strict=True))
    resolved: list[Sequence[Any]] = list(zip(*rows.resolved_holds, strict=True))
    await conn.execute(
        WRITE_BATCH,
        rows.book,
        rows.posted_at,
        *_columns(rows.entries, 8),
        *_columns(rows.legs, 8),
        [a.id for a in changed],
        [a.balance.posted for a in changed],
        [a.balance.pending_debits for a in changed],
        [a.balance.pending_credits for a in changed],
        [a.last_seq for a in changed],
        *(list(column) for column in new_holds or [()] * 10),
        *(list(column) for column in resolved or [()] * 4),
        new_head_seq,
        new_head_hash,
        *_columns(rows.answers, 6),
        read_seq,
        [a.status for a in changed],
        [a.overdraft_limit for a in changed],
    )
