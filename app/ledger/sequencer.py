"""Group commit: the only writer of a book's chain.

Concurrent posts to a book are queued and appended in batches, one database transaction per
batch; the chain head is locked once per batch, so several processes can post to one book and
each batch still sees the true head. Each request in a batch succeeds or fails on its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from app.kit.canonical_json import compact_json
from app.kit.clock import rfc3339_micro, utc_now
from app.kit.outages import describe, is_outage, log_failure, unavailable
from app.kit.pg_pool import CONNECT_TIMEOUT_S, close_pool
from app.kit.problems import (
    PROBLEM_BASE,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    InternalError,
    ServiceUnavailable,
    TimebankError,
    all_problem_types,
)
from app.ledger import errors, metrics, store
from app.ledger.answers import balance_json, posting_payload
from app.ledger.journal import entry_bytes, entry_object, hash_bytes
from app.ledger.posting import AccountState, Applied, Draft, apply_draft

log = structlog.get_logger(__name__)
_POSTED = metrics.POSTINGS.labels(result="ok")
_REFUSED = metrics.POSTINGS.labels(result="refused")
# Optimistic tries of a batch before it takes locks: each costs a read and a guarded write,
# and holds the book's head only inside that write.
OPTIMISTIC_ATTEMPTS = 3
# The most accounts a sequencer remembers between batches, all books together (about 27 MB;
# see _remembered_state): a batch that would exceed it leaves its book to be read.
REMEMBERED_ACCOUNTS = 100_000
# After the guard refuses one of a book's writes, its next batches are read under locks, not
# tried on memory or read without them: another process is likely writing the book (or an
# account's status or limit changed). While two processes take turns on a book most guarded
# writes are refused, and each refusal costs a read, an apply and a write again; under locks
# the other process waits instead. (`--workers 2`, four runs each: batches read again
# 1,161-1,630 -> 22-43 a run, p99 72-88 -> 57-76 ms, throughput unchanged.)
CONTENDED_BATCHES = 100


@dataclass(frozen=True, slots=True)
class IdempotencyRef:
    """Who asked, with which key, for which request (hash of method, path and body)."""

    credential_id: str
    key: str
    request_hash: str


@dataclass(slots=True)
class Outcome:
    """The answer to a posting: an HTTP status and its JSON document, serialised once."""

    status_code: int
    payload: bytes
    replayed: bool = False

    @property
    def body(self) -> dict[str, Any]:
        """The answer as a JSON object."""
        document: dict[str, Any] = json.loads(self.payload)
        return document


@dataclass(slots=True)
class _Pending:
    draft: Draft
    idem: IdempotencyRef | None
    success_status: int
    future: asyncio.Future[Outcome]
    tx_id: str = ""


# A book's head (seq, entry_hash, posted_at) and accounts, as a batch left them.
_Remembered = tuple[tuple[int, str, datetime | None], dict[str, AccountState]]


def _answer_all(results: list[tuple[_Pending, Outcome]]) -> None:
    for item, outcome in results:
        if not item.future.done():
            item.future.set_result(outcome)


def _closed(conn: asyncpg.Connection) -> bool:
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:  # the pool took it back as the server closed it
        return True


def _fail_all(items: list[_Pending], error: ServiceUnavailable) -> None:
    # Raised to each waiter (a 503 wherever the posting came from: a route, an approval, a
    # sweep), never stored under its key: a retry with the same key is taken afresh, or gets
    # the answer stored if the write committed before the connection was lost.
    for item in items:
        if not item.future.done():
            item.future.set_exception(error)
            item.future.exception()  # retrieved: a waiter that was cancelled never will


def problem_outcome(error: TimebankError) -> Outcome:
    return Outcome(error.status, compact_json(error.problem()))


class _Unremembered(Exception):
    """A batch applied on remembered state refused a posting: it is read and applied again."""


class _LinkedRefusal(Exception):
    """Rolls back a linked posting when either entry is refused."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.status_code)
        self.outcome = outcome


class Sequencer:
    """Per book, one queue and one worker that appends batches of postings.

    The workers share the server's event loop: a thread of their own measured slower, since
    the interpreter lock then changes hands on every round trip.
    """

    def __init__(
        self, dsn: str, max_batch: int = 512, wait_s: float = 10.0, connections: int = 4
    ) -> None:
        self._dsn = dsn
        self._connections = connections
        self._max_batch = max_batch
        self._wait_s = wait_s
        self._queues: dict[str, asyncio.Queue[_Pending]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._inflight: dict[tuple[str, str], tuple[str, asyncio.Future[Outcome]]] = {}
        self._closed = False
        self._pool: asyncpg.Pool | None = None
        # Per book, what this sequencer's last batch left: see _remembered_state.
        self._remembered: dict[str, _Remembered] = {}
        self._contended: dict[str, int] = {}  # book -> batches left to read under locks

    async def start(self) -> None:
        """Open the sequencer's own connections."""
        # The pool replaces connections the server closed (a restart) when they are acquired.
        self._pool = await asyncpg.create_pool(
            self._dsn, min_size=1, max_size=self._connections, timeout=CONNECT_TIMEOUT_S
        )

    async def submit(
        self, draft: Draft, idem: IdempotencyRef | None = None, success_status: int = 201
    ) -> Outcome:
        """Append a draft to its book's chain; returns the result or the refusal."""
        if self._closed or self._pool is None:
            raise ServiceUnavailable("the ledger is not running")
        pending = _Pending(draft, idem, success_status, asyncio.get_running_loop().create_future())
        if idem is not None:
            slot = (idem.credential_id, idem.key)
            running = self._inflight.get(slot)
            if running is not None:
                return await _join_inflight(running, idem, self._wait_s)
            self._inflight[slot] = (idem.request_hash, pending.future)
            pending.future.add_done_callback(lambda _f: self._inflight.pop(slot, None))
        queue = self._queues.get(draft.book)
        if queue is None:
            queue = self._queues[draft.book] = asyncio.Queue()
            self._workers[draft.book] = asyncio.create_task(self._run(draft.book, queue))
        queue.put_nowait(pending)
        return await asyncio.shield(pending.future)

    async def append_linked_within(
        self, conn: asyncpg.Connection, drafts: list[Draft], idem: IdempotencyRef
    ) -> list[Outcome]:
        """Append one entry to each of two books inside the caller's open transaction on `conn`
        (see `append_within`): both entries or neither, and the caller's own rows with them.

        Each entry's meta gains `counterpart`: the other entry's book, seq and tx id. Idempotent
        on `idem` (the entries' answers are kept under `<key>#0` and `<key>#1`).
        """
        if len(drafts) != 2 or drafts[0].book == drafts[1].book:
            raise ValueError("a linked posting is one entry in each of two books")
        items = [
            _Pending(
                draft,
                IdempotencyRef(idem.credential_id, f"{idem.key}#{index}", idem.request_hash),
                201,
                asyncio.get_running_loop().create_future(),
                str(uuid.uuid4()),
            )
            for index, draft in enumerate(drafts)
        ]
        return await self._append_locked(conn, items, linked=True)

    async def append_within(
        self,
        conn: asyncpg.Connection,
        draft: Draft,
        idem: IdempotencyRef | None = None,
        success_status: int = 201,
    ) -> Outcome:
        """Append a draft inside the caller's open transaction on `conn`: the entry commits or
        rolls back with the caller's own rows, so an action is never half done.

        The book's head stays locked until the caller's transaction ends: the caller locks its
        own rows first, appends, then only writes rows it has already locked or new ones, and
        commits at once; it never locks ledger rows (heads, accounts, holds) itself. A refusal
        writes nothing (not even its answer under `idem`); a failure of the write raises.
        """
        item = _Pending(
            draft,
            idem,
            success_status,
            asyncio.get_running_loop().create_future(),
            str(uuid.uuid4()),
        )
        return (await self._append_locked(conn, [item], linked=False))[0]

    async def _append_locked(
        self, conn: asyncpg.Connection, items: list[_Pending], linked: bool
    ) -> list[Outcome]:
        if self._closed:
            raise ServiceUnavailable("the ledger is not running")
        if not conn.is_in_transaction():
            raise RuntimeError("append_within needs the caller's open transaction")
        books = sorted({item.draft.book for item in items})
        for book in books:  # it moves their heads: what the queues remember would be refused
            self._remembered.pop(book, None)
        # Heads are locked in book order first, in a statement of their own, so two such
        # appends cannot deadlock and the reads below (a new snapshot) see every answer
        # committed before the lock was granted.
        await conn.execute(
            "SELECT 1 FROM book_heads WHERE book_code = ANY($1::text[]) "
            "ORDER BY book_code FOR UPDATE",
            books,
        )
        try:
            outcomes = await self._apply_locked(conn, items, books, linked)
        except _LinkedRefusal as refused:
            outcomes = [refused.outcome] * len(items)
        except asyncpg.TransactionRollbackError as exc:
            # A deadlock or serialization failure: nothing is wrong with the request.
            raise ServiceUnavailable(
                "the book was busy; retry with the same Idempotency-Key"
            ) from exc
        except asyncpg.PostgresError as exc:
            if is_outage(exc):  # answered 503 where the request is answered
                raise
            # The caller's transaction is aborted: it must end, with nothing of this written.
            outcome = (await self._explain_failure(None, items[0].draft.book, items[0], exc))[1]
            raise refusal(outcome) from exc
        for outcome in outcomes:
            (_POSTED if outcome.status_code < 400 else _REFUSED).inc()
        return outcomes

    async def _apply_locked(
        self, conn: asyncpg.Connection, items: list[_Pending], books: list[str], linked: bool
    ) -> list[Outcome]:
        states: dict[str, store.BatchState] = {}
        for book in books:
            mine = [item for item in items if item.draft.book == book]
            states[book] = await store.load_state(
                conn,
                book,
                {account_id for i in mine for account_id, _ in i.draft.legs}
                | {i.draft.overflow_to for i in mine if i.draft.overflow_to},
                {i.draft.hold_id for i in mine if i.draft.hold_id},
                [(i.idem.credential_id, i.idem.key) for i in mine if i.idem is not None],
                [i.draft.reverses for i in mine if i.draft.reverses],
            )
        now = utc_now()
        for book, state in states.items():
            if state.head is None:
                raise _LinkedRefusal(
                    problem_outcome(errors.BookNotFound(f"book {book!r} does not exist"))
                )
            now = max(now, state.head[2] or now)
        appenders: dict[str, _Appender] = {}
        read_seqs: dict[str, int] = {}
        for book, state in states.items():
            assert state.head is not None
            seq, head_hash, _ = state.head
            read_seqs[book] = seq
            appenders[book] = _Appender(book, seq, head_hash, store.BatchRows(book, now))
        if linked:
            for item, other in ((items[0], items[1]), (items[1], items[0])):
                item.draft.meta["counterpart"] = {
                    "book": other.draft.book,
                    "seq": appenders[other.draft.book].seq + 1,
                    "tx_id": other.tx_id,
                }
        outcomes = []
        for item in items:
            outcome = appenders[item.draft.book].apply(item, states[item.draft.book])
            if outcome.status_code >= 400:
                if linked:
                    raise _LinkedRefusal(outcome)
                # Nothing is written: the caller's transaction decides what a refusal means.
                return [outcome]
            outcomes.append(outcome)
        if all(outcome.replayed for outcome in outcomes):
            return outcomes
        for book in books:
            appender = appenders[book]
            await store.write_batch(
                conn,
                appender.rows,
                appender.changed.values(),
                (appender.seq, appender.hash),
                read_seqs[book],
            )
        return outcomes

    async def close(self, timeout_s: float = 10.0) -> None:
        """Finish queued work (for at most `timeout_s`: a database that stopped answering
        must not hold a shutdown for ever), stop the workers and close the connections; what
        is still queued then is answered 503, never written."""
        self._closed = True
        try:
            async with asyncio.timeout(timeout_s):
                for queue in self._queues.values():
                    await queue.join()
        except TimeoutError:
            log.warning("ledger.close_timed_out", timeout_s=timeout_s)
        for task in self._workers.values():
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        for queue in self._queues.values():
            left = [queue.get_nowait() for _ in range(queue.qsize())]
            _fail_all(left, ServiceUnavailable("the ledger is shutting down"))
        if self._pool is not None:
            await close_pool(self._pool, timeout_s)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise ServiceUnavailable("the ledger is not running")
        return self._pool

    async def _run(self, book: str, queue: asyncio.Queue[_Pending]) -> None:
        conn: asyncpg.Connection | None = None
        try:
            while True:
                batch = [await queue.get()]
                while len(batch) < self._max_batch and not queue.empty():
                    batch.append(queue.get_nowait())
                try:
                    # Keep the connection while work is queued: no pool round trips per batch.
                    if conn is None or _closed(conn):
                        conn = await self.pool.acquire()
                    await self._append(conn, book, batch)
                    if queue.empty():
                        await self._release(conn)
                        conn = None
                except Exception as exc:  # the worker must survive anything one batch does
                    outage = unavailable(exc) or _unusable(exc)
                    if outage is not None:  # a warning: it repeats while the database is down
                        log.warning(
                            "ledger.batch_failed", error=describe(exc), book=book, size=len(batch)
                        )
                        _fail_all(batch, outage)
                    else:
                        log.error("ledger.batch_failed", exc_info=exc, book=book, size=len(batch))
                        failed = problem_outcome(InternalError("posting failed"))
                        _answer_all([(item, failed) for item in batch])
                    if conn is not None:
                        await self._release(conn, broken=outage is not None)
                        conn = None
                finally:
                    for _ in batch:
                        queue.task_done()
        finally:
            if conn is not None:
                await self._release(conn)

    async def _release(self, conn: asyncpg.Connection, broken: bool = False) -> None:
        """Give a connection back to the pool, which connects afresh for the next batch in its
        place if it is closed. One a database outage broke is terminated first: releasing
        would reset it, waiting on a server that may not answer. A connection the server
        closed is released too: only that returns its slot to the pool (asyncpg's
        `PoolConnectionHolder.release`), which would otherwise shrink by one each time."""
        try:
            if broken and not _closed(conn):
                conn.terminate()
            await self.pool.release(conn)
        except Exception as exc:  # the worker goes on whatever happens here
            log_failure(log, "ledger.release_failed", exc)

    async def _append(self, conn: asyncpg.Connection, book: str, items: list[_Pending]) -> None:
        metrics.BATCH_SIZE.observe(len(items))
        try:
            results = await self._append_batch(conn, book, items)
        except asyncpg.PostgresError as exc:
            if is_outage(exc):  # no other connection would do better: the batch's waiters get 503
                raise
            if len(items) == 1:
                results = [await self._explain_failure(conn, book, items[0], exc)]
            else:
                # Something only the database caught: isolate it by retrying one at a time.
                log.warning("ledger.batch_retry_singly", book=book, size=len(items), error=str(exc))
                for item in items:
                    await self._append(conn, book, [item])
                return
        for _, outcome in results:
            (_POSTED if outcome.status_code < 400 else _REFUSED).inc()
        _answer_all(results)

    async def _explain_failure(
        self,
        conn: asyncpg.Connection | None,
        book: str,
        item: _Pending,
        exc: asyncpg.PostgresError,
    ) -> tuple[_Pending, Outcome]:
        constraint = getattr(exc, "constraint_name", None) or ""
        if item.idem is not None and constraint.startswith("idempotency_keys"):
            if conn is None:  # in an aborted transaction: the caller's retry will replay it
                return item, problem_outcome(
                    IdempotencyInFlight("the same key was answered meanwhile; retry")
                )
            # The same key committed meanwhile in another book: answer as a replay would.
            slot = (item.idem.credential_id, item.idem.key)
            found = (await store.load_state(conn, book, (), (), [slot], (), lock=False)).stored
            if slot in found:
                return item, _replay(found[slot], item.idem)
        known: dict[str, TimebankError] = {
            "accounts_within_limit": errors.InsufficientFunds("balance below its limit"),
            "journal_entries_reverses_key": errors.AlreadyReversed("already reversed"),
            "journal_entries_resolves_hold_key": errors.HoldNotPending("hold already resolved"),
        }
        if constraint in known:
            return item, problem_outcome(known[constraint])
        log.error("ledger.posting_failed", book=book, error=str(exc), constraint=constraint)
        return item, problem_outcome(InternalError("the posting could not be stored"))

    async def _append_batch(
        self, conn: asyncpg.Connection, book: str, items: list[_Pending]
    ) -> list[tuple[_Pending, Outcome]]:
        # Version 4 UUIDs from one read of the system's random source per batch.
        randomness = os.urandom(16 * len(items))
        for index, item in enumerate(items):
            if not item.tx_id:
                raw = randomness[16 * index : 16 * index + 16]
                item.tx_id = str(uuid.UUID(bytes=raw, version=4))
        # From memory first: the state this sequencer's last batch left, written with the
        # guard below, one round trip (see _remembered_state). Then optimistic: read without
        # locks and write with a guard, two round trips. If anything it read moved meanwhile
        # (another process's batch, an account frozen), the batch is read and applied again;
        # after OPTIMISTIC_ATTEMPTS such refusals, or on any other error, it is redone from
        # scratch under locks. After any refusal the book's next CONTENDED_BATCHES batches
        # are read under locks from the start.
        memory = self._remembered.pop(book, None)
        if self._contended.get(book):
            metrics.BATCH_RELOCKS.labels(reason="contended").inc()
            async with conn.transaction():
                return await self._attempt_batch(conn, book, items, lock=True)
        remembered = _remembered_state(memory, items) if memory is not None else None
        if remembered is not None:
            try:
                return await self._attempt_batch(conn, book, items, lock=False, state=remembered)
            except asyncpg.SerializationError:  # the guard: the head or an account moved
                metrics.BATCH_REREADS.inc()
                self._contended[book] = CONTENDED_BATCHES
            except (asyncpg.PostgresError, _Unremembered) as exc:
                if is_outage(exc):
                    raise
                # A key used before (its unique index), or a refusal: read it all.
                metrics.BATCH_REREADS.inc()
        for _ in range(OPTIMISTIC_ATTEMPTS):
            try:
                return await self._attempt_batch(conn, book, items, lock=False, memory=memory)
            except asyncpg.SerializationError:
                metrics.BATCH_REREADS.inc()
                self._contended[book] = CONTENDED_BATCHES
            except asyncpg.PostgresError as exc:
                if is_outage(exc):
                    raise
                metrics.BATCH_RELOCKS.labels(reason="error").inc()
                log.info("ledger.batch_relocked", book=book, size=len(items), error=str(exc))
                break
        else:
            metrics.BATCH_RELOCKS.labels(reason="moved").inc()
        async with conn.transaction():
            return await self._attempt_batch(conn, book, items, lock=True)

    async def _attempt_batch(
        self,
        conn: asyncpg.Connection,
        book: str,
        items: list[_Pending],
        lock: bool,
        state: store.BatchState | None = None,
        memory: _Remembered | None = None,
    ) -> list[tuple[_Pending, Outcome]]:
        """Apply and write a batch on `state`, or on the state read now (with `memory` of the
        accounts of earlier batches, if the head has not moved since)."""
        drafts = [item.draft for item in items]
        remembered = state is not None
        if state is None:
            state = await store.load_state(
                conn,
                book,
                {account_id for d in drafts for account_id, _ in d.legs}
                | {d.overflow_to for d in drafts if d.overflow_to},
                {d.hold_id for d in drafts if d.hold_id},
                [(i.idem.credential_id, i.idem.key) for i in items if i.idem is not None],
                [d.reverses for d in drafts if d.reverses],
                lock=lock,
            )
            if memory is not None and state.head is not None and memory[0][:2] == state.head[:2]:
                # No entry since: what this sequencer last wrote of the others is current.
                state.accounts = {**memory[1], **state.accounts}
        if state.head is None:
            missing = errors.BookNotFound(f"book {book!r} does not exist")
            return [(item, problem_outcome(missing)) for item in items]
        seq, head_hash, last_posted_at = state.head
        # One timestamp per batch, never before the book's last one.
        now = utc_now()
        if last_posted_at is not None:
            now = max(now, last_posted_at)
        appender = _Appender(book, seq, head_hash, store.BatchRows(book, now))
        results = [(item, appender.apply(item, state)) for item in items]
        if remembered and any(o.status_code >= 400 and not o.replayed for _, o in results):
            # Only what is written is guarded: a refusal may rest on a status changed since.
            raise _Unremembered
        await store.write_batch(
            conn, appender.rows, appender.changed.values(), (appender.seq, appender.hash), seq
        )
        contended = self._contended.get(book, 0)
        if contended:
            self._contended[book] = contended - 1
        elif (
            not lock
            and len(state.accounts)
            + sum(len(accounts) for _, accounts in self._remembered.values())
            <= REMEMBERED_ACCOUNTS
        ):
            # Committed (no transaction around it): the book as this batch left it.
            posted_at = now if appender.rows.entries else last_posted_at
            self._remembered[book] = ((appender.seq, appender.hash, posted_at), state.accounts)
        return results


class _Appender:
    """Applies a batch's requests in order, chaining entries and gathering the rows to write."""

    def __init__(self, book: str, seq: int, head_hash: str, rows: store.BatchRows) -> None:
        self.book, self.seq, self.hash, self.rows = book, seq, head_hash, rows
        self.posted_at = rfc3339_micro(rows.posted_at)
        self.changed: dict[str, AccountState] = {}

    def apply(self, item: _Pending, state: store.BatchState) -> Outcome:
        if item.idem is not None:
            found = state.stored.get((item.idem.credential_id, item.idem.key))
            if found is not None:  # answered before, or earlier in this batch
                return _replay(found, item.idem)
        outcome = self._post(item, state)
        if item.idem is not None and outcome.status_code < 500:
            idem = item.idem
            state.stored[(idem.credential_id, idem.key)] = (
                idem.request_hash,
                outcome.status_code,
                outcome.payload,
            )
            success = outcome.status_code < 400
            self.rows.answers.append(
                (
                    idem.credential_id,
                    idem.key,
                    idem.request_hash,
                    outcome.status_code,
                    None if success else outcome.payload.decode(),
                    item.tx_id if success else None,
                )
            )
        return outcome

    def _post(self, item: _Pending, state: store.BatchState) -> Outcome:
        draft = item.draft
        try:
            if draft.reverses is not None and draft.reverses in state.reversed_ids:
                raise errors.AlreadyReversed(f"transaction {draft.reverses} is already reversed")
            applied = apply_draft(draft, state.accounts, state.holds, self.rows.posted_at)
        except TimebankError as refusal:
            return problem_outcome(refusal)
        if draft.reverses is not None:
            state.reversed_ids.add(draft.reverses)
        state.accounts.update(applied.touched)
        self.changed.update(applied.touched)
        if applied.new_hold is not None:
            applied.new_hold.id = item.tx_id
            state.holds[item.tx_id] = applied.new_hold
        if applied.resolved_hold is not None:
            state.holds[applied.resolved_hold[0]].status = applied.resolved_hold[1]
        return Outcome(item.success_status, self._entry(item, applied))

    def _entry(self, item: _Pending, applied: Applied) -> bytes:
        seq = self.seq + 1
        entry = entry_object(
            book=self.book,
            seq=seq,
            tx_id=item.tx_id,
            kind=applied.kind,
            posted_at=self.posted_at,
            legs=applied.legs,
            memo=item.draft.memo,
            meta=applied.meta,
            prev_hash=self.hash,
        )
        body = entry_bytes(entry)
        entry_hash = hash_bytes(body)
        resolves = applied.resolved_hold[0] if applied.resolved_hold else None
        reverses = item.draft.reverses
        self.rows.entries.append(
            (seq, item.tx_id, applied.kind, self.hash, entry_hash, body, reverses, resolves)
        )
        self.rows.legs.extend(
            [
                (seq, index, leg.account_id, leg.asset, leg.amount, *after.as_tuple())
                for index, (leg, after) in enumerate(
                    zip(applied.legs, applied.leg_balances, strict=True)
                )
            ]
        )
        balances = []
        for account_id, account in applied.touched.items():
            account.last_seq = seq
            balances.append(balance_json(account_id, account.asset, account.balance))
        if applied.new_hold is not None:
            hold = applied.new_hold
            self.rows.new_holds[item.tx_id] = [
                item.tx_id,
                seq,
                hold.from_account_id,
                hold.to_account_id,
                hold.asset,
                hold.amount,
                hold.expires_at,
                "pending",
                None,
                None,
            ]
        if applied.resolved_hold is not None:
            hold_id, status, posted = applied.resolved_hold
            self.rows.resolve_hold(hold_id, status, item.tx_id, posted)
        self.seq, self.hash = seq, entry_hash
        return posting_payload(entry, body, entry_hash, balances)


def _remembered_state(memory: _Remembered, items: list[_Pending]) -> store.BatchState | None:
    """The state a batch would read, from what the sequencer's last batch of the book wrote,
    when it covers the batch.

    Sound because the write is guarded: it commits only if the book's head is still the
    remembered one (every change to a balance or a hold is an entry that moves it) and each
    account it changes has the remembered status and limit (changed without an entry). What
    memory cannot hold, it leaves to the database: a batch that resolves a hold or reverses an
    entry is read; an Idempotency-Key used before fails the write on its unique index, and the
    batch is then read, as after a moved head. Refusals are not written, so not guarded: a
    batch that refuses a posting is read and applied again.
    """
    head, accounts = memory
    for item in items:
        d = item.draft
        if d.hold_id is not None or d.reverses is not None:
            return None
        for account_id, _ in d.legs:
            if account_id not in accounts:
                return None
        if (d.overflow_to is not None and d.overflow_to not in accounts) or any(
            account_id not in accounts for account_id in d.unmoved_since
        ):
            return None
    # The accounts are replaced as postings apply, never changed in place (apply_draft).
    return store.BatchState(head, dict(accounts), {}, {}, set())


def _unusable(exc: Exception) -> ServiceUnavailable | None:
    """503 for a batch whose connection the driver refuses to use: this worker alone uses it,
    so "another operation is in progress" means an earlier operation died with the server
    (seen after `pg_ctl restart` under load) and nothing of this batch was sent. The
    connection is dropped; a retry with the same key is written once."""
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError):
        return ServiceUnavailable(
            "the ledger's database connection was lost; retry with the same Idempotency-Key"
        )
    return None


def _reused(idem: IdempotencyRef) -> TimebankError:
    return IdempotencyKeyReused(f"Idempotency-Key {idem.key!r} was used for another request")


def _replay(stored: tuple[str, int, bytes], idem: IdempotencyRef) -> Outcome:
    request_hash, status_code, payload = stored
    if request_hash != idem.request_hash:
        return problem_outcome(_reused(idem))
    return Outcome(status_code, payload, replayed=True)


async def _join_inflight(
    running: tuple[str, asyncio.Future[Outcome]], idem: IdempotencyRef, wait_s: float
) -> Outcome:
    request_hash, future = running
    if request_hash != idem.request_hash:
        return problem_outcome(_reused(idem))
    try:
        async with asyncio.timeout(wait_s):
            first = await asyncio.shield(future)
    except TimeoutError:
        return problem_outcome(
            IdempotencyInFlight(f"the first request with key {idem.key!r} is still running")
        )
    return Outcome(first.status_code, first.payload, replayed=True)


def refusal(outcome: Outcome) -> TimebankError:
    """The ledger's refusal, as the same problem type."""
    problem = outcome.body
    slug = str(problem.get("type", "")).removeprefix(PROBLEM_BASE)
    cls: type[TimebankError] = next(
        (c for c in all_problem_types() if c.slug == slug), InternalError
    )
    extra = {
        k: v
        for k, v in problem.items()
        if k not in ("type", "title", "status", "detail", "instance", "headers")
    }
    return cls(str(problem.get("detail", "the ledger refused the posting")), **extra)
