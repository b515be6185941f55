"""Each book's Merkle tree in PostgreSQL: integrating new entries, proofs, checkpoints.

The log follows the journal (like Certificate Transparency's integrator): it reads entries
after its current size, stores the complete subtrees they create (`merkle_subtrees`) and
moves the book's `log_heads` row, in one transaction that locks that row, so several processes
never integrate or sign the same book at once. Proofs then read O(log n) stored subtrees, in
one query. Checkpoints are signed only after checking the tree against the last one signed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import asyncpg
import structlog

from app.audit import merkle
from app.audit.checkpoint import Checkpoint, sign_checkpoint
from app.audit.errors import LogInconsistent
from app.audit.keystore import KeyRing

log = structlog.get_logger("timebank.audit")
T = TypeVar("T")
CHUNK = 5000
# What a follower integrates per transaction. Small, because a server process that follows the
# log itself (TIMEBANK_FOLLOW_LOG_IN_SERVER) hashes on the loop that serves its requests, and a
# large chunk holds that loop for milliseconds (docs/performance.md).
FOLLOW_CHUNK = 256
_PLACEHOLDER = bytes(merkle.HASH_SIZE)

SELECT_SUBTREES = """
SELECT level, index, hash FROM merkle_subtrees
 WHERE book_code = $1
   AND (level, index) IN (SELECT * FROM unnest($2::smallint[], $3::bigint[]))
"""
# A checkpoint's note as it is served: the log's signed note, then the cosignature lines its
# witnesses returned, by witness name (docs/witness.md). Still a valid note for a reader who
# knows only the log's key: unknown signature lines are ignored.
COSIGNED_NOTE = """note || coalesce(
    (SELECT string_agg(w.line, '' ORDER BY w.witness) FROM checkpoint_cosignatures w
      WHERE w.book_code = checkpoints.book_code AND w.tree_size = checkpoints.tree_size),
    '') AS note"""
LAST_CHECKPOINT = f"""
SELECT tree_size, root, origin, {COSIGNED_NOTE}, signed_at, kid FROM checkpoints
 WHERE book_code = $1 ORDER BY tree_size DESC LIMIT 1
"""
CHECKPOINT_COLUMNS = "book_code, tree_size, root, origin, note, signed_at, kid"


@dataclass(frozen=True)
class LogHead:
    """The size of a book's integrated tree and its root."""

    tree_size: int
    root: bytes


@dataclass(frozen=True)
class SignedCheckpoint:
    """A stored checkpoint: the signed note and what it states."""

    book: str
    tree_size: int
    root: bytes
    origin: str
    note: str
    signed_at: datetime
    kid: str

    @classmethod
    def from_row(cls, book: str, row: asyncpg.Record) -> SignedCheckpoint:
        return cls(
            book,
            row["tree_size"],
            bytes(row["root"]),
            row["origin"],
            row["note"],
            row["signed_at"],
            row["kid"],
        )


def _level_index(start: int, end: int) -> tuple[int, int]:
    width = end - start
    if width <= 0 or width & (width - 1) or start % width:
        raise ValueError(f"[{start}, {end}) is not an aligned complete subtree")
    return width.bit_length() - 1, start // width


async def fetch_subtrees(
    conn: asyncpg.Connection, book: str, wanted: set[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    """The stored hashes of these (level, index) subtrees (missing ones are left out)."""
    if not wanted:
        return {}
    levels, indexes = zip(*wanted, strict=True)
    rows = await conn.fetch(SELECT_SUBTREES, book, list(levels), list(indexes))
    return {(r["level"], r["index"]): bytes(r["hash"]) for r in rows}


async def from_stored(
    conn: asyncpg.Connection, book: str, compute: Callable[[merkle.SubtreeHash], T]
) -> T:
    """Run a proof or root computation of app.audit.merkle over the stored subtrees.

    Which subtrees it reads depends only on the sizes, so a first dry run lists them, one
    query fetches them all, and a second run computes with them.
    """
    wanted: set[tuple[int, int]] = set()

    def record(start: int, end: int) -> bytes:
        wanted.add(_level_index(start, end))
        return _PLACEHOLDER

    compute(record)
    found = await fetch_subtrees(conn, book, wanted)

    def stored(start: int, end: int) -> bytes:
        key = _level_index(start, end)
        if key not in found:
            raise LookupError(f"subtree {key} of book {book!r} is not stored")
        return found[key]

    return compute(stored)


async def _integrate_chunk(
    conn: asyncpg.Connection, book: str, skip_locked: bool, chunk: int
) -> int:
    """Integrate up to `chunk` new entries in one transaction; returns how many."""
    lock = "FOR UPDATE SKIP LOCKED" if skip_locked else "FOR UPDATE"
    async with conn.transaction():
        head = await conn.fetchrow(
            f"SELECT tree_size FROM log_heads WHERE book_code = $1 {lock}", book
        )
        if head is None:
            return 0
        size = head["tree_size"]
        rows = await conn.fetch(
            "SELECT seq, body FROM journal_entries WHERE book_code = $1 AND seq > $2 "
            "ORDER BY seq LIMIT $3",
            book,
            size,
            chunk,
        )
        if not rows:
            return 0
        if rows[0]["seq"] != size + 1 or rows[-1]["seq"] != size + len(rows):
            raise LogInconsistent(f"book {book!r}: the journal has a gap after seq {size}")
        known = await fetch_subtrees(conn, book, set(merkle.peaks(size)))

        def get(level: int, index: int) -> bytes:
            return known[(level, index)]

        leaves = [hashlib.sha256(b"\x00" + bytes(r["body"])).digest() for r in rows]
        new = merkle.append_subtrees(size, leaves, get)
        for subtree in new:
            known[(subtree.level, subtree.index)] = subtree.hash
        new_size = size + len(rows)
        root = merkle.root(new_size, lambda s, e: known[_level_index(s, e)])
        await conn.copy_records_to_table(
            "merkle_subtrees",
            records=[(book, s.level, s.index, s.hash) for s in new],
            columns=["book_code", "level", "index", "hash"],
        )
        await conn.execute(
            "UPDATE log_heads SET tree_size = $2, root = $3, updated_at = now() "
            "WHERE book_code = $1",
            book,
            new_size,
            root,
        )
        return len(rows)


async def integrate(
    conn: asyncpg.Connection, book: str, skip_locked: bool = False, chunk: int | None = None
) -> int:
    """Bring a book's tree up to its journal (one transaction per `chunk` entries, CHUNK by
    default); returns how many entries were added. With `skip_locked`, leave a book another
    process is working on."""
    size = chunk or CHUNK
    total = 0
    while True:
        added = await _integrate_chunk(conn, book, skip_locked, size)
        total += added
        if added < size:
            return total


async def log_head(conn: asyncpg.Connection, book: str) -> LogHead | None:
    """The integrated size and root of a book's tree (None: no such book)."""
    row = await conn.fetchrow("SELECT tree_size, root FROM log_heads WHERE book_code = $1", book)
    return None if row is None else LogHead(row["tree_size"], bytes(row["root"]))


async def last_checkpoint(conn: asyncpg.Connection, book: str) -> SignedCheckpoint | None:
    """The book's checkpoint of the largest size."""
    row = await conn.fetchrow(LAST_CHECKPOINT, book)
    return None if row is None else SignedCheckpoint.from_row(book, row)


async def checkpoints_between(
    conn: asyncpg.Connection, book: str, low: int, high: int, limit: int
) -> list[SignedCheckpoint]:
    """The book's checkpoints of sizes `low` to `high`, smallest first, at most `limit`."""
    rows = await conn.fetch(
        f"SELECT tree_size, root, origin, {COSIGNED_NOTE}, signed_at, kid FROM checkpoints "
        "WHERE book_code = $1 AND tree_size BETWEEN $2 AND $3 ORDER BY tree_size LIMIT $4",
        book,
        low,
        high,
        limit,
    )
    return [SignedCheckpoint.from_row(book, row) for row in rows]


async def check_tree(
    conn: asyncpg.Connection, book: str, head: LogHead, last: SignedCheckpoint | None
) -> None:
    """Raise LogInconsistent unless the stored subtrees give the head's root and the tree is
    an extension of the last checkpoint (a consistency proof from the stored subtrees,
    verified against the root that checkpoint signed)."""
    size = head.tree_size
    try:
        root = await from_stored(conn, book, lambda sh: merkle.root(size, sh))
        if root != head.root:
            raise LogInconsistent(f"book {book!r}: stored subtrees do not give the head's root")
        if last is None:
            return
        if last.tree_size > size:
            raise LogInconsistent(
                f"book {book!r}: the tree ({size}) is smaller than its last checkpoint "
                f"({last.tree_size})"
            )
        proof = await from_stored(
            conn, book, lambda sh: merkle.consistency_proof(last.tree_size, size, sh)
        )
    except LookupError as exc:
        raise LogInconsistent(f"book {book!r}: {exc}") from None
    if not merkle.verify_consistency(last.tree_size, size, proof, last.root, root):
        raise LogInconsistent(
            f"book {book!r}: the tree of size {size} is not consistent with the checkpoint "
            f"of size {last.tree_size}"
        )


async def sign_checkpoint_now(
    conn: asyncpg.Connection,
    book: str,
    ring: KeyRing,
    origin: str,
    min_age_s: float | None = None,
    skip_locked: bool = False,
) -> tuple[SignedCheckpoint | None, bool]:
    """Sign a checkpoint of the book's integrated tree unless the last one has that size (or,
    with `min_age_s`, is younger than that). Returns (the latest checkpoint, whether it is
    new); (None, False) when there is none or the book is locked and `skip_locked`."""
    lock = "FOR UPDATE SKIP LOCKED" if skip_locked else "FOR UPDATE"
    async with conn.transaction():
        row = await conn.fetchrow(
            f"SELECT tree_size, root, now() AS now FROM log_heads WHERE book_code = $1 {lock}",
            book,
        )
        if row is None:
            return None, False
        head = LogHead(row["tree_size"], bytes(row["root"]))
        last = await last_checkpoint(conn, book)
        if last is not None:
            young = min_age_s is not None and (row["now"] - last.signed_at).total_seconds() < (
                min_age_s
            )
            if last.tree_size == head.tree_size or young:
                return last, False
        try:
            await check_tree(conn, book, head, last)
        except LogInconsistent as exc:
            # A log must never sign two inconsistent checkpoints: refuse, loudly.
            log.error("audit.checkpoint_refused", book=book, reason=exc.detail)
            raise
        # The origin of a book never changes once signed, whatever the settings say now.
        name = last.origin if last is not None else origin
        stored, signer = await ring.key_at(int(time.time()))
        checkpoint = Checkpoint(name, head.tree_size, head.root)
        note = sign_checkpoint(checkpoint, name, signer.private_key)
        saved = await conn.fetchrow(
            f"INSERT INTO checkpoints ({CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, now(), "
            f"$6) RETURNING {CHECKPOINT_COLUMNS}",
            book,
            head.tree_size,
            head.root,
            name,
            note,
            stored.kid,
        )
        return SignedCheckpoint.from_row(book, saved), True


async def checkpoint_covering(
    conn: asyncpg.Connection, book: str, seq: int, ring: KeyRing, origin: str
) -> SignedCheckpoint:
    """The latest checkpoint if it covers entry `seq`; otherwise the tree is brought up to
    the journal and a checkpoint signed now."""
    last = await last_checkpoint(conn, book)
    if last is not None and last.tree_size >= seq:
        return last
    await integrate(conn, book)
    signed, _ = await sign_checkpoint_now(conn, book, ring, origin)
    if signed is None or signed.tree_size < seq:
        raise LogInconsistent(f"book {book!r}: no checkpoint can cover seq {seq}")
    return signed
