"""Group commit: the only writer of a book's chain.

Concurrent posts to a book are queued and appended in batches, one database transaction per
batch; the chain head is locked once per batch, so several processes can post to one book and
each batch still sees the true head. Each request in a batch succeeds or fails on its own.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from app import metrics
from app.errors import (
    IdempotencyInFlight,
    IdempotencyKeyReused,
    InternalError,
    ServiceUnavailable,
    TimebankError,
)
from app.kit.clock import rfc3339_micro, utc_now
from app.ledger import errors
from app.ledger.journal import (
    KIND_HOLD,
    KIND_HOLD_VOID,
    BalanceState,
    entry_bytes,
    entry_object,
    hash_bytes,
)
from app.ledger.posting import AccountState, Applied, Draft, HoldState, apply_draft

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class IdempotencyRef:
    """Who asked, with which key, for which request (hash of method, path and body)."""

    credential_id: str
    key: str
    request_hash: str


@dataclass(slots=True)
class Outcome:
    """The answer to a posting: an HTTP status and a JSON body (a result or a problem)."""

    status_code: int
    body: dict[str, Any]
    replayed: bool = False


@dataclass(slots=True)
class _Pending:
    draft: Draft
    idem: IdempotencyRef | None
    success_status: int
    future: asyncio.Future[Outcome]
    tx_id: str = field(default_factory=lambda: str(uuid.uuid4()))


def balance_json(account_id: str, asset: str, balance: BalanceState) -> dict[str, Any]:
    """An account's balances as the API shows them."""
    return {
        "account_id": account_id,
        "asset": asset,
        "posted": balance.posted,
        "pending": balance.pending_credits - balance.pending_debits,
        "pending_debits": balance.pending_debits,
        "pending_credits": balance.pending_credits,
        "available": balance.available,
    }


def posting_body(
    entry: dict[str, Any], entry_hash: str, balances: list[dict[str, Any]]
) -> dict[str, Any]:
    """The shape of every posting answer (also rebuilt by reads from the stored journal)."""
    status = {KIND_HOLD: "pending", KIND_HOLD_VOID: "voided"}.get(entry["kind"], "posted")
    return {
        "id": entry["tx_id"],
        "book": entry["book"],
        "seq": entry["seq"],
        "kind": entry["kind"],
        "status": status,
        "entry": entry,
        "entry_hash": entry_hash,
        "balances": balances,
    }


def problem_outcome(error: TimebankError) -> Outcome:
    return Outcome(error.status, error.problem())


class _Batch:
    """The rows one batch will write, gathered while its requests are applied."""

    def __init__(self, head_seq: int, head_hash: str, head_time: datetime | None) -> None:
        self.seq = head_seq
        self.hash = head_hash
        self.time = head_time
        self.entries: list[tuple[Any, ...]] = []
        self.legs: list[tuple[Any, ...]] = []
        self.new_holds: list[tuple[Any, ...]] = []
        self.resolved_holds: list[tuple[Any, ...]] = []
        self.idempotency: list[tuple[Any, ...]] = []
        self.results: list[tuple[_Pending, Outcome]] = []
        self.changed_accounts: dict[str, AccountState] = {}

    def timestamp(self) -> datetime:
        # posted_at never goes backwards within a book, even if clocks of processes differ.
        now = utc_now()
        if self.time is not None and now < self.time:
            now = self.time
        self.time = now
        return now


class Sequencer:
    """Per book, one queue and one worker that appends batches of postings."""

    def __init__(self, pool: asyncpg.Pool, max_batch: int = 512, wait_s: float = 10.0) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._wait_s = wait_s
        self._queues: dict[str, asyncio.Queue[_Pending]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._inflight: dict[tuple[str, str], tuple[str, asyncio.Future[Outcome]]] = {}
        self._closed = False

    async def submit(
        self, draft: Draft, idem: IdempotencyRef | None = None, success_status: int = 201
    ) -> Outcome:
        """Append a draft to its book's chain; returns the result or the refusal."""
        if self._closed:
            raise ServiceUnavailable("the ledger is shutting down")
        loop = asyncio.get_running_loop()
        pending = _Pending(draft, idem, success_status, loop.create_future())
        if idem is not None:
            slot = (idem.credential_id, idem.key)
            running = self._inflight.get(slot)
            if running is not None:
                return await _join_inflight(running, idem, self._wait_s)
            self._inflight[slot] = (idem.request_hash, pending.future)
            pending.future.add_done_callback(lambda _f: self._inflight.pop(slot, None))
        self._queue(draft.book).put_nowait(pending)
        return await asyncio.shield(pending.future)

    def _queue(self, book: str) -> asyncio.Queue[_Pending]:
        queue = self._queues.get(book)
        if queue is None:
            queue = self._queues[book] = asyncio.Queue()
            self._workers[book] = asyncio.create_task(self._run(book, queue))
        return queue

    async def close(self) -> None:
        """Finish queued work and stop the workers."""
        self._closed = True
        for queue in self._queues.values():
            await queue.join()
        for task in self._workers.values():
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)

    async def _run(self, book: str, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self._max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await self._append(book, batch)
            except Exception:  # the worker must survive anything one batch does
                log.exception("ledger.batch_failed", book=book, size=len(batch))
                for item in batch:
                    if not item.future.done():
                        item.future.set_result(problem_outcome(InternalError("posting failed")))
            finally:
                for _ in batch:
                    queue.task_done()

    async def _append(self, book: str, items: list[_Pending]) -> None:
        metrics.BATCH_SIZE.observe(len(items))
        try:
            results = await self._append_batch(book, items)
        except asyncpg.PostgresError as exc:
            if len(items) == 1:
                results = [await self._explain_failure(book, items[0], exc)]
            else:
                # Something only the database caught: isolate it by retrying one at a time.
                log.warning("ledger.batch_retry_singly", book=book, size=len(items), error=str(exc))
                for item in items:
                    await self._append(book, [item])
                return
        for item, outcome in results:
            metrics.POSTINGS.labels(result="ok" if outcome.status_code < 400 else "refused").inc()
            if not item.future.done():
                item.future.set_result(outcome)

    async def _explain_failure(
        self, book: str, item: _Pending, exc: asyncpg.PostgresError
    ) -> tuple[_Pending, Outcome]:
        constraint = getattr(exc, "constraint_name", None) or ""
        if isinstance(exc, asyncpg.UniqueViolationError) and constraint.startswith(
            "idempotency_keys"
        ):
            # The same key committed meanwhile in another book: answer as a replay would.
            async with self._pool.acquire() as conn:
                found = await _stored_outcomes(conn, [item])
            if item.idem and (item.idem.credential_id, item.idem.key) in found:
                return item, _replay(found[(item.idem.credential_id, item.idem.key)], item.idem)
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
        self, book: str, items: list[_Pending]
    ) -> list[tuple[_Pending, Outcome]]:
        async with self._pool.acquire() as conn, conn.transaction():
            head = await conn.fetchrow(
                "SELECT seq, entry_hash, posted_at FROM book_heads WHERE book_code = $1 FOR UPDATE",
                book,
            )
            if head is None:
                missing = errors.BookNotFound(f"book {book!r} does not exist")
                return [(item, problem_outcome(missing)) for item in items]
            batch = _Batch(head["seq"], head["entry_hash"], head["posted_at"])
            stored = await _stored_outcomes(conn, items)
            accounts = await _lock_accounts(conn, items)
            holds = await _lock_holds(conn, items)
            reversed_ids = await _reversed_already(conn, items)
            for item in items:
                outcome = _dedupe(item, stored)
                if outcome is None:
                    outcome = self._apply(book, item, batch, accounts, holds, reversed_ids)
                    if item.idem is not None:
                        slot = (item.idem.credential_id, item.idem.key)
                        stored[slot] = (item.idem.request_hash, outcome.status_code, outcome.body)
                batch.results.append((item, outcome))
            await _write(conn, book, batch)
        return batch.results

    def _apply(
        self,
        book: str,
        item: _Pending,
        batch: _Batch,
        accounts: dict[str, AccountState],
        holds: dict[str, HoldState],
        reversed_ids: set[str],
    ) -> Outcome:
        draft = item.draft
        now = batch.timestamp()
        try:
            if draft.reverses is not None and draft.reverses in reversed_ids:
                raise errors.AlreadyReversed(f"transaction {draft.reverses} is already reversed")
            applied = apply_draft(draft, accounts, holds, now)
        except TimebankError as refusal:
            outcome = problem_outcome(refusal)
            _record_idempotency(batch, item, outcome)
            return outcome
        if draft.reverses is not None:
            reversed_ids.add(draft.reverses)
        outcome = _append_entry(book, item, applied, batch, now)
        accounts.update(applied.touched)
        batch.changed_accounts.update(applied.touched)
        if applied.new_hold is not None:
            applied.new_hold.id = item.tx_id
            holds[item.tx_id] = applied.new_hold
        if applied.resolved_hold is not None:
            holds[applied.resolved_hold[0]].status = applied.resolved_hold[1]
        _record_idempotency(batch, item, outcome)
        return outcome


def _append_entry(
    book: str, item: _Pending, applied: Applied, batch: _Batch, now: datetime
) -> Outcome:
    seq = batch.seq + 1
    entry = entry_object(
        book=book,
        seq=seq,
        tx_id=item.tx_id,
        kind=applied.kind,
        posted_at=rfc3339_micro(now),
        legs=applied.legs,
        memo=item.draft.memo,
        meta=applied.meta,
        prev_hash=batch.hash,
    )
    body = entry_bytes(entry)
    entry_hash = hash_bytes(body)
    resolves = applied.resolved_hold[0] if applied.resolved_hold else None
    batch.entries.append(
        (
            book,
            seq,
            item.tx_id,
            applied.kind,
            now,
            batch.hash,
            entry_hash,
            body,
            item.draft.reverses,
            resolves,
        )
    )
    final: dict[str, dict[str, Any]] = {}
    for index, (leg, after) in enumerate(zip(applied.legs, applied.leg_balances, strict=True)):
        batch.legs.append(
            (
                book,
                seq,
                index,
                leg.account_id,
                leg.asset,
                leg.amount,
                after.posted,
                after.pending_debits,
                after.pending_credits,
            )
        )
    for account_id, state in applied.touched.items():
        state.last_seq = seq
        final[account_id] = balance_json(account_id, state.asset, state.balance)
    if applied.new_hold is not None:
        hold = applied.new_hold
        batch.new_holds.append(
            (
                item.tx_id,
                book,
                seq,
                hold.from_account_id,
                hold.to_account_id,
                hold.asset,
                hold.amount,
                hold.expires_at,
            )
        )
    if applied.resolved_hold is not None:
        hold_id, status, posted = applied.resolved_hold
        batch.resolved_holds.append((hold_id, status, item.tx_id, posted))
    batch.seq, batch.hash = seq, entry_hash
    result = posting_body(entry, entry_hash, list(final.values()))
    return Outcome(item.success_status, result)


def _record_idempotency(batch: _Batch, item: _Pending, outcome: Outcome) -> None:
    if item.idem is not None and outcome.status_code < 500:
        batch.idempotency.append(
            (
                item.idem.credential_id,
                item.idem.key,
                item.idem.request_hash,
                outcome.status_code,
                json.dumps(outcome.body),
            )
        )


def _dedupe(
    item: _Pending, stored: dict[tuple[str, str], tuple[str, int, dict[str, Any]]]
) -> Outcome | None:
    """The answer for a key already used (stored, or earlier in this batch), else None."""
    if item.idem is None:
        return None
    found = stored.get((item.idem.credential_id, item.idem.key))
    return None if found is None else _replay(found, item.idem)


def _reused(idem: IdempotencyRef) -> TimebankError:
    return IdempotencyKeyReused(f"Idempotency-Key {idem.key!r} was used for another request")


def _replay(stored: tuple[str, int, dict[str, Any]], idem: IdempotencyRef) -> Outcome:
    request_hash, status_code, body = stored
    if request_hash != idem.request_hash:
        return problem_outcome(_reused(idem))
    return Outcome(status_code, body, replayed=True)


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
    return Outcome(first.status_code, first.body, replayed=True)


async def _stored_outcomes(
    conn: asyncpg.Connection, items: Sequence[_Pending]
) -> dict[tuple[str, str], tuple[str, int, dict[str, Any]]]:
    keyed = [item.idem for item in items if item.idem is not None]
    if not keyed:
        return {}
    rows = await conn.fetch(
        "SELECT k.credential_id::text AS cid, k.key, k.request_hash, k.status_code, k.response "
        "FROM idempotency_keys k JOIN unnest($1::uuid[], $2::text[]) AS q(cid, key) "
        "ON k.credential_id = q.cid AND k.key = q.key",
        [i.credential_id for i in keyed],
        [i.key for i in keyed],
    )
    return {
        (r["cid"], r["key"]): (r["request_hash"], r["status_code"], json.loads(r["response"]))
        for r in rows
    }


async def _lock_accounts(
    conn: asyncpg.Connection, items: Sequence[_Pending]
) -> dict[str, AccountState]:
    ids: set[str] = set()
    for item in items:
        ids.update(account_id for account_id, _ in item.draft.legs)
    hold_ids = [item.draft.hold_id for item in items if item.draft.hold_id]
    if hold_ids:
        rows = await conn.fetch(
            "SELECT from_account_id::text AS f, to_account_id::text AS t FROM holds "
            "WHERE id = ANY($1::uuid[])",
            hold_ids,
        )
        for row in rows:
            ids.update((row["f"], row["t"]))
    # Sorted ids: every batch locks accounts in one order, so batches never deadlock.
    rows = await conn.fetch(
        "SELECT id::text AS id, book_code, asset, status, overdraft_limit, posted, "
        "pending_debits, pending_credits, last_seq FROM accounts "
        "WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
        sorted(ids),
    )
    return {
        r["id"]: AccountState(
            r["id"],
            r["book_code"],
            r["asset"],
            r["status"],
            r["overdraft_limit"],
            BalanceState(r["posted"], r["pending_debits"], r["pending_credits"]),
            r["last_seq"],
        )
        for r in rows
    }


async def _lock_holds(conn: asyncpg.Connection, items: Sequence[_Pending]) -> dict[str, HoldState]:
    hold_ids = sorted({item.draft.hold_id for item in items if item.draft.hold_id})
    if not hold_ids:
        return {}
    rows = await conn.fetch(
        "SELECT id::text AS id, book_code, from_account_id::text AS f, to_account_id::text AS t,"
        " asset, amount, expires_at, status FROM holds WHERE id = ANY($1::uuid[]) "
        "ORDER BY id FOR UPDATE",
        hold_ids,
    )
    return {
        r["id"]: HoldState(
            r["id"],
            r["book_code"],
            r["f"],
            r["t"],
            r["asset"],
            r["amount"],
            r["expires_at"],
            r["status"],
        )
        for r in rows
    }


async def _reversed_already(conn: asyncpg.Connection, items: Sequence[_Pending]) -> set[str]:
    targets = [item.draft.reverses for item in items if item.draft.reverses]
    if not targets:
        return set()
    rows = await conn.fetch(
        "SELECT reverses::text AS r FROM journal_entries WHERE reverses = ANY($1::uuid[])",
        targets,
    )
    return {r["r"] for r in rows}


async def _write(conn: asyncpg.Connection, book: str, batch: _Batch) -> None:
    if batch.entries:
        await conn.copy_records_to_table(
            "journal_entries",
            records=batch.entries,
            columns=[
                "book_code",
                "seq",
                "tx_id",
                "kind",
                "posted_at",
                "prev_hash",
                "entry_hash",
                "body",
                "reverses",
                "resolves_hold",
            ],
        )
        if batch.legs:
            await conn.copy_records_to_table(
                "journal_legs",
                records=batch.legs,
                columns=[
                    "book_code",
                    "seq",
                    "leg_index",
                    "account_id",
                    "asset",
                    "amount",
                    "posted_after",
                    "pending_debits_after",
                    "pending_credits_after",
                ],
            )
        changed = batch.changed_accounts
        if changed:
            await conn.execute(
                "UPDATE accounts a SET posted = u.posted, pending_debits = u.pd, "
                "pending_credits = u.pc, last_seq = u.last_seq "
                "FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])"
                " AS u(id, posted, pd, pc, last_seq) WHERE a.id = u.id",
                list(changed),
                [a.balance.posted for a in changed.values()],
                [a.balance.pending_debits for a in changed.values()],
                [a.balance.pending_credits for a in changed.values()],
                [a.last_seq for a in changed.values()],
            )
        if batch.new_holds:
            await conn.executemany(
                "INSERT INTO holds (id, book_code, seq, from_account_id, to_account_id, asset, "
                "amount, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                batch.new_holds,
            )
        if batch.resolved_holds:
            await conn.executemany(
                "UPDATE holds SET status = $2, resolved_by = $3, posted_amount = $4 WHERE id = $1",
                batch.resolved_holds,
            )
        await conn.execute(
            "UPDATE book_heads SET seq = $2, entry_hash = $3, posted_at = $4 WHERE book_code = $1",
            book,
            batch.seq,
            batch.hash,
            batch.time,
        )
    if batch.idempotency:
        await conn.executemany(
            "INSERT INTO idempotency_keys (credential_id, key, request_hash, status_code, "
            "response) VALUES ($1, $2, $3, $4, $5::jsonb)",
            batch.idempotency,
        )
