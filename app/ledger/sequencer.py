"""Group commit: the only writer of a book's chain.

Concurrent posts to a book are queued and appended in batches, one database transaction per
batch; each request in a batch succeeds or fails on its own.

A batch reads its state without locks and writes everything in one guarded statement
(`store.write_batch`) that commits only if the book's head and each account it changes are as
read; the head row is locked only inside that statement. If anything moved (another process's
batch, a frozen account), nothing is written and the batch is read and applied again; after
`OPTIMISTIC_ATTEMPTS` refusals it is redone under locks, head first, and the book's next
`CONTENDED_BATCHES` batches go that way from the start. Several server processes thus
serialise on the head row, each holding it only inside its writes.

A batch whose accounts this sequencer's last batches of the book wrote skips the read: it is
applied on the state they left (`appender.remembered_state`) and written with the same guard.
What that memory cannot know goes to the database: a batch that resolves a hold or reverses an
entry is read; one that refuses a posting is read and applied again (a refusal writes nothing,
so nothing guards it); a key answered before fails the write on its unique index and the batch
is then read.

An action that must commit with its own rows appends inside the caller's transaction instead
(`append_within`, docs/consistency.md): it locks the head (heads in book order), reads under
locks and writes with the same statement.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import uuid

import asyncpg
import structlog

from app.kit.clock import utc_now
from app.kit.outages import describe, is_outage, log_failure, unavailable
from app.kit.pg_pool import close_pool, create_pool
from app.kit.problems import (
    IdempotencyInFlight,
    InternalError,
    ServiceUnavailable,
    TimebankError,
)
from app.ledger import errors, metrics, store
from app.ledger.appender import Appender, Pending, Remembered, remembered_state
from app.ledger.outcomes import (
    IdempotencyRef,
    Outcome,
    join_inflight,
    problem_outcome,
    refusal,
    replay,
)
from app.ledger.posting import Draft

log = structlog.get_logger(__name__)
_POSTED = metrics.POSTINGS.labels(result="ok")
_REFUSED = metrics.POSTINGS.labels(result="refused")
# Optimistic tries of a batch before it takes locks: each costs a read and a guarded write,
# and holds the book's head only inside that write.
OPTIMISTIC_ATTEMPTS = 3
# The most accounts a sequencer remembers between batches, all books together (see
# remembered_state; its memory: docs/performance.md): a batch that would exceed it leaves its
# book to be read.
REMEMBERED_ACCOUNTS = 100_000
# After the guard refuses one of a book's writes, its next batches are read under locks, not
# tried on memory or read without them: another process is likely writing the book (or an
# account's status or limit changed). While two processes take turns on a book most guarded
# writes are refused, and each refusal costs a read, an apply and a write again; under locks
# the other process waits instead (docs/performance.md).
CONTENDED_BATCHES = 100


def _answer_all(results: list[tuple[Pending, Outcome]]) -> None:
    for item, outcome in results:
        if not item.future.done():
            item.future.set_result(outcome)


def _closed(conn: asyncpg.Connection) -> bool:
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:  # the pool took it back as the server closed it
        return True


def _fail_all(items: list[Pending], error: ServiceUnavailable) -> None:
    # Raised to each waiter (a 503 wherever the posting came from: a route, an approval, a
    # sweep), never stored under its key: a retry with the same key is taken afresh, or gets
    # the answer stored if the write committed before the connection was lost.
    for item in items:
        if not item.future.done():
            item.future.set_exception(error)
            item.future.exception()  # retrieved: a waiter that was cancelled never will


class _Unremembered(Exception):
    """A batch applied on remembered state refused a posting: it is read and applied again."""


class _LinkedRefusal(Exception):
    """Rolls back a linked posting when either entry is refused."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.status_code)
        self.outcome = outcome


class Sequencer:
    """Per book, one queue and one worker that appends batches of postings.

    The workers share the server's event loop: with a thread of their own, the interpreter lock
    would change hands on every round trip (docs/performance.md).
    """

    def __init__(
        self, dsn: str, max_batch: int = 512, wait_s: float = 10.0, connections: int = 4
    ) -> None:
        self._dsn = dsn
        self._connections = connections
        self._max_batch = max_batch
        self._wait_s = wait_s
        self._queues: dict[str, asyncio.Queue[Pending]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._inflight: dict[tuple[str, str], tuple[str, asyncio.Future[Outcome]]] = {}
        self._closed = False
        self._pool: asyncpg.Pool | None = None
        # Per book, what this sequencer's last batch left: see appender.remembered_state.
        self._remembered: dict[str, Remembered] = {}
        self._contended: dict[str, int] = {}  # book -> batches left to read under locks

    async def start(self) -> None:
        """Open the sequencer's own connections."""
        # The pool replaces connections the server closed (a restart) when they are acquired.
        self._pool = await create_pool(self._dsn, min_size=1, max_size=self._connections)

    async def submit(
        self, draft: Draft, idem: IdempotencyRef | None = None, success_status: int = 201
    ) -> Outcome:
        """Append a draft to its book's chain; returns the result or the refusal."""
        if self._closed or self._pool is None:
            raise ServiceUnavailable("the ledger is not running")
        pending = Pending(draft, idem, success_status, asyncio.get_running_loop().create_future())
        if idem is not None:
            slot = (idem.credential_id, idem.key)
            running = self._inflight.get(slot)
            if running is not None:
                return await join_inflight(running, idem, self._wait_s)
            self._inflight[slot] = (idem.request_hash, pending.future)
            pending.future.add_done_callback(lambda _f: self._inflight.pop(slot, None))
        queue = self._queues.get(draft.book)
        if queue is None:
            queue = self._queues[draft.book] = asyncio.Queue()
            # A fresh context: the worker serves every later request of the book, and must not
            # log under the request id and credential of the one that started it.
            self._workers[draft.book] = asyncio.create_task(
                self._run(draft.book, queue), context=contextvars.Context()
            )
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
            Pending(
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
        item = Pending(
            draft,
            idem,
            success_status,
            asyncio.get_running_loop().create_future(),
            str(uuid.uuid4()),
        )
        return (await self._append_locked(conn, [item], linked=False))[0]

    async def _append_locked(
        self, conn: asyncpg.Connection, items: list[Pending], linked: bool
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
                self.forget()
                raise
            # The caller's transaction is aborted: it must end, with nothing of this written.
            outcome = (await self._explain_failure(None, items[0].draft.book, items[0], exc))[1]
            raise refusal(outcome) from exc
        for outcome in outcomes:
            (_POSTED if outcome.status_code < 400 else _REFUSED).inc()
        return outcomes

    async def _apply_locked(
        self, conn: asyncpg.Connection, items: list[Pending], books: list[str], linked: bool
    ) -> list[Outcome]:
        states: dict[str, store.BatchState] = {}
        for book in books:
            mine = [item for item in items if item.draft.book == book]
            states[book] = await store.load_state(
                conn,
                book,
                {account_id for i in mine for account_id, _ in i.draft.legs}
                | {i.draft.overflow_to for i in mine if i.draft.overflow_to}
                # An account a draft is conditioned on need not be one of its legs.
                | {account_id for i in mine for account_id in i.draft.unmoved_since},
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
            now = max(now, state.head.posted_at or now)
        appenders: dict[str, Appender] = {}
        read_seqs: dict[str, int] = {}
        for book, state in states.items():
            assert state.head is not None
            seq, head_hash, _ = state.head
            read_seqs[book] = seq
            appenders[book] = Appender(book, seq, head_hash, store.BatchRows(book, now))
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

    def forget(self) -> None:
        """Forget what the last batches left of every book: after an outage the database may
        not hold what this process believes. A primary that died may or may not have passed a
        commit in flight to the standby that replaced it, and an answer lost with a connection
        says nothing of its commit. Each book's next batch reads its head and accounts."""
        self._remembered.clear()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise ServiceUnavailable("the ledger is not running")
        return self._pool

    async def _run(self, book: str, queue: asyncio.Queue[Pending]) -> None:
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
                            "ledger.batch_failed",
                            error=describe(exc),
                            outage=True,
                            book=book,
                            size=len(batch),
                        )
                        self.forget()
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

    async def _append(self, conn: asyncpg.Connection, book: str, items: list[Pending]) -> None:
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
        item: Pending,
        exc: asyncpg.PostgresError,
    ) -> tuple[Pending, Outcome]:
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
                return item, replay(found[slot], item.idem)
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
        self, conn: asyncpg.Connection, book: str, items: list[Pending]
    ) -> list[tuple[Pending, Outcome]]:
        # Version 4 UUIDs from one read of the system's random source per batch.
        randomness = os.urandom(16 * len(items))
        for index, item in enumerate(items):
            if not item.tx_id:
                raw = randomness[16 * index : 16 * index + 16]
                item.tx_id = str(uuid.UUID(bytes=raw, version=4))
        # From memory first: the state this sequencer's last batch left, written with the
        # guard below, one round trip (see appender.remembered_state). Then optimistic: read without
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
        remembered = remembered_state(memory, items) if memory is not None else None
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
        items: list[Pending],
        lock: bool,
        state: store.BatchState | None = None,
        memory: Remembered | None = None,
    ) -> list[tuple[Pending, Outcome]]:
        """Apply and write a batch on `state`, or on the state read now (with `memory` of the
        accounts of earlier batches, if the head has not moved since)."""
        drafts = [item.draft for item in items]
        remembered = state is not None
        if state is None:
            state = await store.load_state(
                conn,
                book,
                {account_id for d in drafts for account_id, _ in d.legs}
                | {d.overflow_to for d in drafts if d.overflow_to}
                | {account_id for d in drafts for account_id in d.unmoved_since},
                {d.hold_id for d in drafts if d.hold_id},
                [(i.idem.credential_id, i.idem.key) for i in items if i.idem is not None],
                [d.reverses for d in drafts if d.reverses],
                lock=lock,
            )
            if memory is not None and state.head is not None and memory.head.same_entry(state.head):
                # No entry since: what this sequencer last wrote of the others is current.
                state.accounts = {**memory.accounts, **state.accounts}
        if state.head is None:
            missing = errors.BookNotFound(f"book {book!r} does not exist")
            return [(item, problem_outcome(missing)) for item in items]
        seq, head_hash, last_posted_at = state.head
        # One timestamp per batch, never before the book's last one.
        now = utc_now()
        if last_posted_at is not None:
            now = max(now, last_posted_at)
        appender = Appender(book, seq, head_hash, store.BatchRows(book, now))
        results = [(item, appender.apply(item, state)) for item in items]
        if remembered and any(o.status_code >= 400 and not o.replayed for _, o in results):
            # Only what is written is guarded: a refusal may rest on a status changed since.
            raise _Unremembered
        await store.write_batch(
            conn,
            appender.rows,
            appender.changed.values(),
            (appender.seq, appender.hash),
            seq,
        )
        contended = self._contended.get(book, 0)
        if contended:
            self._contended[book] = contended - 1
        elif (
            not lock
            and len(state.accounts)
            + sum(len(memory.accounts) for memory in self._remembered.values())
            <= REMEMBERED_ACCOUNTS
        ):
            # Committed (no transaction around it): the book as this batch left it.
            posted_at = now if appender.rows.entries else last_posted_at
            self._remembered[book] = Remembered(
                store.ChainHead(appender.seq, appender.hash, posted_at), state.accounts
            )
        return results


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
