"""The transparency log of a server process: keys, receipts, the log follower, proofs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import httpx
import structlog
from prometheus_client import Gauge

from app.audit import merkle, schemas, tlog, witnessing
from app.audit.checkpoint import TlogProof
from app.audit.errors import BeyondLogSize, LogInconsistent
from app.audit.keys import JwkSet, jwks
from app.audit.keystore import KeyRing, StoredKey, ensure_key
from app.audit.note import Verifier
from app.audit.passphrase import signing_key_passphrase
from app.audit.receipting import Receipts
from app.config import Settings
from app.kit.clock import rfc3339_micro
from app.kit.outages import log_failure
from app.kit.pg_pool import acquire, close_pool, create_pool
from app.kit.problems import ValidationFailed
from app.ledger.errors import BookNotFound

log = structlog.get_logger("timebank.audit")
# Set from the database when metrics are scraped: how far the log follower is behind.
LAG = Gauge(
    "timebank_log_behind_entries",
    "Journal entries of the book not yet in its transparency log (alert when it stays high)",
    ["book"],
    multiprocess_mode="mostrecent",
)
LAG_SQL = (
    "SELECT h.book_code, h.seq - l.tree_size AS behind "
    "FROM book_heads h JOIN log_heads l USING (book_code)"
)

# Books whose journal is ahead of their tree.
BEHIND = """
SELECT l.book_code FROM log_heads l JOIN book_heads h USING (book_code)
 WHERE h.seq > l.tree_size ORDER BY l.book_code
"""
# Books whose tree grew past their last checkpoint, which is older than the interval.
UNSIGNED = """
SELECT l.book_code FROM log_heads l
  LEFT JOIN LATERAL (SELECT tree_size, signed_at FROM checkpoints c
                      WHERE c.book_code = l.book_code ORDER BY tree_size DESC LIMIT 1) c ON true
 WHERE l.tree_size > coalesce(c.tree_size, 0)
   AND (c.signed_at IS NULL OR c.signed_at <= now() - make_interval(secs => $1))
 ORDER BY l.book_code
"""


@dataclass(frozen=True, slots=True)
class Heads:
    """Where a book's journal ends (its head's seq) and how much of it its tree holds."""

    journal_seq: int
    tree_size: int


def invalid(field: str, message: str) -> ValidationFailed:
    """A 422 naming one query parameter."""
    return ValidationFailed(
        message, errors=[{"field": f"query/{field}", "message": message, "code": "out_of_range"}]
    )


@dataclass
class AuditLog:
    """What the audit routes and the background follower share in one process."""

    pool: asyncpg.Pool
    # The key ring reads through a connection of its own: a task holding one of `pool` may
    # need the ring, and must never wait for another connection of the same pool.
    ring_pool: asyncpg.Pool
    ring: KeyRing
    receipts: Receipts
    log_origin: str
    checkpoint_interval_s: float

    @classmethod
    async def open(cls, app_url: str, settings: Settings) -> AuditLog:
        """Connect, make the first signing key if there is none, and check that every key can
        be decrypted (a wrong passphrase stops the start, rather than every receipt)."""
        passphrase = await asyncio.to_thread(signing_key_passphrase, settings)
        # Both pools replace connections a restart closed when they are acquired.
        pool = await create_pool(app_url, min_size=1, max_size=4)
        ring_pool = await create_pool(app_url, min_size=1, max_size=1)
        try:
            async with acquire(pool) as conn:
                await ensure_key(conn, passphrase)
            ring = KeyRing(ring_pool, passphrase, settings.signing_key_rotation_lead_s)
            for key in await ring.refresh():
                ring.signer(key)
        except BaseException:
            await pool.close()
            await ring_pool.close()
            raise
        return cls(
            pool,
            ring_pool,
            ring,
            Receipts(ring),
            settings.log_origin,
            settings.checkpoint_interval,
        )

    async def close(self) -> None:
        """Close the connections (within a bound: see `close_pool`)."""
        await close_pool(self.pool)
        await close_pool(self.ring_pool)

    def origin(self, book: str) -> str:
        """The checkpoint origin (and key name) of a book that has no checkpoint yet."""
        return f"{self.log_origin}/{book}"

    async def follow_once(self) -> None:
        """Integrate every book that is behind its journal, then sign the checkpoints due.
        Books another process is working on are left to it."""
        async with acquire(self.pool) as conn:
            for row in await conn.fetch(BEHIND):
                await tlog.integrate(
                    conn, row["book_code"], skip_locked=True, chunk=tlog.FOLLOW_CHUNK
                )
            for row in await conn.fetch(UNSIGNED, self.checkpoint_interval_s):
                book = row["book_code"]
                try:
                    await tlog.sign_checkpoint_now(
                        conn,
                        book,
                        self.ring,
                        self.origin(book),
                        min_age_s=self.checkpoint_interval_s,
                        skip_locked=True,
                    )
                except LogInconsistent:
                    continue  # refused and logged; the other books still get checkpoints

    async def follow(
        self, interval_s: float, keep_going: Callable[[], bool] = lambda: True
    ) -> None:
        """Follow the journals every `interval_s` for as long as `keep_going()` (a server's own
        follower, or the `timebank follow-log` process), and ask the books' witnesses to
        cosign new checkpoints beside it (a slow witness never holds up the log)."""

        async def log_loop() -> None:
            while keep_going():
                await asyncio.sleep(interval_s)
                try:
                    await self.follow_once()
                except Exception as exc:  # keep following through a database restart
                    log_failure(log, "audit.follow_failed", exc)

        async def witness_loop() -> None:
            async with httpx.AsyncClient() as client:
                while keep_going():
                    await asyncio.sleep(interval_s)
                    try:
                        await witnessing.ask_due(self.pool, client)
                    except Exception as exc:
                        log_failure(log, "audit.witnesses_failed", exc)

        await asyncio.gather(log_loop(), witness_loop())

    async def refresh_gauges(self) -> None:
        """Set the gauges that are read from the database (the witnesses', the log's lag)
        before a scrape."""
        await witnessing.refresh_gauges(self.pool)
        async with acquire(self.pool) as conn:
            rows = await conn.fetch(LAG_SQL)
        for row in rows:
            LAG.labels(row["book_code"]).set(row["behind"])

    async def keys(self) -> list[StoredKey]:
        """Every signing key ever made, oldest first (read now)."""
        return await self.ring.refresh()

    async def jwks(self) -> JwkSet:
        """The JWK Set of every key ever used, with validity periods."""
        return jwks(key.published() for key in await self.keys())

    async def vkeys(self, book: str) -> list[str]:
        """The book's checkpoint verifier keys (C2SP vkey), one per signing key."""
        async with acquire(self.pool) as conn:
            last = await tlog.last_checkpoint(conn, book)
        name = last.origin if last is not None else self.origin(book)
        return [Verifier.from_public_key(name, k.public_key).vkey() for k in await self.keys()]

    async def sign_checkpoint(self, book: str) -> tuple[tlog.SignedCheckpoint, bool]:
        """Integrate the book and sign a checkpoint of it unless its size is already signed."""
        async with acquire(self.pool) as conn:
            await tlog.integrate(conn, book)
            signed, new = await tlog.sign_checkpoint_now(conn, book, self.ring, self.origin(book))
        if signed is None:
            raise BookNotFound(f"book {book!r} does not exist")
        return signed, new

    async def covering(self, book: str, seq: int, field: str = "seq") -> tlog.SignedCheckpoint:
        """The latest checkpoint, signed now if it does not cover entry `seq` yet; a `seq` past
        the journal's head is refused as `beyond-log-size` naming `field`."""
        async with acquire(self.pool) as conn:
            await self._within_head(conn, book, {field: seq})
            return await tlog.checkpoint_covering(conn, book, seq, self.ring, self.origin(book))

    async def latest(self, book: str) -> tlog.SignedCheckpoint | None:
        """The book's latest checkpoint, if any."""
        async with acquire(self.pool) as conn:
            return await tlog.last_checkpoint(conn, book)

    async def heads(self, book: str) -> Heads:
        """The book's journal head seq and the size of its integrated tree."""
        async with acquire(self.pool) as conn:
            return await _heads(conn, book)

    async def _within_head(self, conn: asyncpg.Connection, book: str, sizes: dict[str, int]) -> int:
        """Refuse (`beyond-log-size`) any of these seqs or sizes past the journal's head, then
        bring the tree up to the largest: every entry the journal holds is provable at once.
        Returns the integrated tree's size."""
        heads = await _heads(conn, book)
        head_seq, tree_size = heads.journal_seq, heads.tree_size
        for field, size in sizes.items():
            if size > head_seq:
                raise BeyondLogSize(book, field, size, head_seq, tree_size)
        wanted = max(sizes.values(), default=0)
        if tree_size < wanted:
            await tlog.integrate(conn, book)
            head = await tlog.log_head(conn, book)
            tree_size = 0 if head is None else head.tree_size
            if tree_size < wanted:  # the journal holds entries the tree cannot take
                raise LogInconsistent(
                    f"book {book!r}: the journal reaches seq {head_seq} but its tree stops at "
                    f"{tree_size}"
                )
        return tree_size

    async def inclusion(
        self, book: str, seq: int, tree_size: int | None
    ) -> schemas.InclusionProofRead:
        """The RFC 9162 inclusion proof of entry `seq` in the tree of `tree_size` entries
        (default: the latest checkpoint's, signed now if it does not cover `seq`)."""
        if tree_size is None:
            tree_size = (await self.covering(book, seq)).tree_size
        async with acquire(self.pool) as conn:
            await self._within_head(conn, book, {"tree_size": tree_size, "seq": seq})
            if not 1 <= seq <= tree_size:
                raise invalid("seq", f"seq must be between 1 and tree_size ({tree_size})")
            leaf, root, proof = await tlog.from_stored(
                conn,
                book,
                lambda sh: (
                    sh(seq - 1, seq),
                    merkle.root(tree_size, sh),
                    merkle.inclusion_proof(seq - 1, tree_size, sh),
                ),
            )
        return schemas.InclusionProofRead(
            book=book,
            seq=seq,
            leaf_index=seq - 1,
            tree_size=tree_size,
            leaf_hash=leaf.hex(),
            root=root.hex(),
            proof=[h.hex() for h in proof],
        )

    async def consistency(
        self, book: str, first: int, second: int | None
    ) -> schemas.ConsistencyProofRead:
        """The RFC 9162 consistency proof from the tree of `first` to that of `second`
        (default: the latest checkpoint's size, signed now if it does not cover `first`)."""
        if second is None:
            second = (await self.covering(book, first, "first")).tree_size
        async with acquire(self.pool) as conn:
            await self._within_head(conn, book, {"second": second, "first": first})
            if not 0 <= first <= second:
                raise invalid("first", f"first must be between 0 and second ({second})")
            first_root, second_root, proof = await tlog.from_stored(
                conn,
                book,
                lambda sh: (
                    merkle.root(first, sh),
                    merkle.root(second, sh),
                    merkle.consistency_proof(first, second, sh),
                ),
            )
        return schemas.ConsistencyProofRead(
            book=book,
            first=first,
            second=second,
            first_root=first_root.hex(),
            second_root=second_root.hex(),
            proof=[h.hex() for h in proof],
        )

    async def bundle(self, book: str, seq: int) -> str:
        """The c2sp.org/tlog-proof@v1 bundle of entry `seq` against the latest checkpoint."""
        checkpoint = await self.covering(book, seq)
        async with acquire(self.pool) as conn:
            proof = await tlog.from_stored(
                conn, book, lambda sh: merkle.inclusion_proof(seq - 1, checkpoint.tree_size, sh)
            )
        return TlogProof(seq - 1, tuple(proof), checkpoint.note).text()


async def heads_of(conn: asyncpg.Connection, book: str) -> Heads | None:
    """The book's journal size and integrated tree size (None: no such book)."""
    row = await conn.fetchrow(
        "SELECT h.seq, coalesce(l.tree_size, 0) AS tree_size FROM book_heads h "
        "LEFT JOIN log_heads l USING (book_code) WHERE h.book_code = $1",
        book,
    )
    return None if row is None else Heads(int(row["seq"]), int(row["tree_size"]))


async def _heads(conn: asyncpg.Connection, book: str) -> Heads:
    heads = await heads_of(conn, book)
    if heads is None:
        raise BookNotFound(f"book {book!r} does not exist")
    return heads


def checkpoint_read(
    checkpoint: tlog.SignedCheckpoint, vkey: str | None = None
) -> schemas.CheckpointRead:
    """A stored checkpoint as the API shows it (without `vkey` when None: dump it with
    `exclude_none`)."""
    return schemas.CheckpointRead(
        book=checkpoint.book,
        origin=checkpoint.origin,
        tree_size=checkpoint.tree_size,
        root=checkpoint.root.hex(),
        note=checkpoint.note,
        kid=checkpoint.kid,
        signed_at=rfc3339_micro(checkpoint.signed_at),
        vkey=vkey,
    )
