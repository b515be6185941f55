"""(b) postings/s through the sequencer in this process, against a plain asyncpg COPY;
(c) `verify_book` entries/s, against fetching the same bodies and hashing them with SHA-256.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hashlib
import inspect
import re
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg

from app.config import Settings
from app.db import DatabaseUrls
from app.kit.canonical_json import canonical_bytes
from app.kit.heap import settle_heap
from app.ledger import schemas, sequencer, service
from app.ledger.outcomes import IdempotencyRef
from app.ledger.sequencer import Sequencer
from app.ledger.verify_runner import CHUNK as VERIFY_CHUNK
from app.ledger.verify_runner import ENTRIES as VERIFY_ENTRIES
from app.ledger.verify_runner import LEGS as VERIFY_LEGS
from app.ledger.verify_runner import open_reader, verify_book, verify_book_with
from app.runtime import Runtime
from bench.procs import CpuProbe, cpu_seconds

ENTRY_COLUMNS = [
    "book_code",
    "seq",
    "tx_id",
    "kind",
    "posted_at",
    "prev_hash",
    "entry_hash",
    "body",
]
BASELINE_TABLE = "bench_copy_baseline"


def _statement(method: str, query: str) -> str:
    """`COPY journal_legs`, `UPDATE accounts`, `SELECT book_heads`, `COMMIT`, ..."""
    if method == "copy_records_to_table":
        return f"COPY {query}"
    verb = query.split(None, 1)[0].upper().rstrip(";") if query.strip() else "?"
    table = re.search(r"\b(?:INTO|UPDATE|FROM)\s+(\w+)", query, re.IGNORECASE)
    return f"{verb} {table.group(1)}" if table and verb != "BEGIN" else verb


@contextlib.contextmanager
def _batch_split() -> Iterator[dict[str, float]]:
    """Wall time inside the sequencer's batch steps, by wrapping them in this process only.

    apply = the per-posting rules and entry building in Python (Sequencer._apply);
    reads = the batch's lookups (idempotency keys, account/hold locks, reversals);
    write = the batch's COPYs, UPDATEs and idempotency INSERTs (_write);
    batch = all of _append_batch (the rest: acquire, BEGIN, head lock, COMMIT, loop);
    sql X = wall time awaiting each kind of statement (asyncpg.Connection methods wrapped).
    Steps the current code does not have are left out.
    """
    totals: dict[str, float] = {}
    restore: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, label: str) -> None:
        fn = owner.__dict__.get(name)
        if fn is None:
            return
        totals.setdefault(label, 0.0)
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    totals[label] += time.perf_counter() - started

            setattr(owner, name, timed_async)
        else:

            @functools.wraps(fn)
            def timed(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    totals[label] += time.perf_counter() - started

            setattr(owner, name, timed)
        restore.append((owner, name, fn))

    sql: dict[str, float] = {}
    for method in ("copy_records_to_table", "execute", "executemany", "fetch", "fetchrow"):
        original = asyncpg.Connection.__dict__[method]

        def make(original: Any, method: str) -> Any:
            @functools.wraps(original)
            async def timed_sql(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await original(self, query, *args, **kwargs)
                finally:
                    label = _statement(method, query)
                    sql[label] = sql.get(label, 0.0) + time.perf_counter() - started

            return timed_sql

        setattr(asyncpg.Connection, method, make(original, method))
        restore.append((asyncpg.Connection, method, original))
    wrap(Sequencer, "_append_batch", "batch")
    wrap(Sequencer, "_apply", "apply")
    for name in ("_stored_outcomes", "_lock_accounts", "_lock_holds", "_reversed_already"):
        wrap(sequencer, name, "reads")
    wrap(sequencer, "_write", "write")
    try:
        yield totals
    finally:
        totals.update({f"sql {k}": v for k, v in sql.items()})
        for owner, name, fn in reversed(restore):
            setattr(owner, name, fn)


@contextlib.contextmanager
def _serving_heap() -> Iterator[None]:
    """The cyclic collector as a serving process runs it (app.kit.heap.settle_heap), then as
    it was: (c) measures verify as the CLI runs it."""
    threshold = gc.get_threshold()
    settle_heap()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def _batch_stats() -> tuple[float, float]:
    from prometheus_client import REGISTRY

    total = REGISTRY.get_sample_value("timebank_ledger_batch_size_sum") or 0.0
    count = REGISTRY.get_sample_value("timebank_ledger_batch_size_count") or 0.0
    return total, count


async def _timed_load(
    owner: asyncpg.Connection,
    app_conn: asyncpg.Connection,
    tables: str,
    load: Callable[[], Awaitable[Any]],
) -> float:
    """Seconds of one `load` on the app's connection, in one transaction, into emptied `tables`."""
    await owner.execute(f"TRUNCATE {tables}")
    gc.collect()
    started = time.perf_counter()
    async with app_conn.transaction():
        await load()
    return time.perf_counter() - started


@contextlib.asynccontextmanager
async def _app_and_owner(
    urls: DatabaseUrls,
) -> AsyncIterator[tuple[asyncpg.Connection, asyncpg.Connection]]:
    """A connection as the app role and one as the owner, both closed at the end."""
    app_conn = await asyncpg.connect(urls.app)
    try:
        owner = await asyncpg.connect(urls.owner)
        try:
            yield app_conn, owner
        finally:
            await owner.close()
    finally:
        await app_conn.close()


async def _client_backends(url: str) -> list[int]:
    """The server processes of this database's client sessions (the sequencer's among them)."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return [r["pid"] for r in rows]


async def _open_book(runtime: Runtime, book: str, members: int) -> tuple[str, list[str]]:
    async with runtime.sessions() as session, session.begin():
        await service.create_book(session, schemas.BookCreate(code=book, name=book))
        issuance = await service.open_account(
            session,
            book,
            schemas.AccountCreate(asset="HOUR", owner="system:issuance", overdraft_limit=10**12),
        )
        ids = []
        for n in range(members):
            account = await service.open_account(
                session, book, schemas.AccountCreate(asset="HOUR", owner=f"person:{n}")
            )
            ids.append(str(account.id))
    return str(issuance.id), ids


def _requests(
    book: str, issuance: str, members: list[str], credential_id: str, count: int, tag: str
) -> list[tuple[schemas.TransactionCreate, IdempotencyRef]]:
    """Validated bodies and idempotency refs exactly as the HTTP route would hand them over."""
    out = []
    prefix = f"POST /v1/books/{book}/transactions\n".encode()
    for i in range(count):
        body = {
            "kind": "transfer",
            "legs": [
                {"account_id": issuance, "amount": -1},
                {"account_id": members[i % len(members)], "amount": 1},
            ],
            "memo": "",
            "meta": {},
        }
        digest = hashlib.sha256(prefix + canonical_bytes(body)).hexdigest()
        out.append(
            (
                schemas.TransactionCreate.model_validate(body),
                IdempotencyRef(credential_id, f"{tag}-{i}", digest),
            )
        )
    return out


async def _post_all(
    runtime: Runtime,
    book: str,
    requests: list[tuple[schemas.TransactionCreate, IdempotencyRef]],
    inflight: int,
) -> tuple[float, dict[int, int]]:
    statuses: dict[int, int] = {}
    pending = iter(requests)

    async def worker() -> None:
        for data, idem in pending:
            outcome = await service.post_transaction(runtime.sequencer, book, data, idem)
            statuses[outcome.status_code] = statuses.get(outcome.status_code, 0) + 1

    gc.collect()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    return time.perf_counter() - started, statuses


async def bench_postings(
    urls: DatabaseUrls,
    settings: Settings,
    *,
    book: str,
    count: int,
    inflight: int,
    members: int,
    warmup: int,
    probe: CpuProbe,
) -> dict[str, Any]:
    """Post `count` two-leg transfers through the sequencer, `inflight` at a time."""
    runtime = await Runtime.open(urls.app, settings)
    try:
        issuance, member_ids = await _open_book(runtime, book, members)
        with _serving_heap():
            credential_id = str(uuid.uuid4())  # idempotency rows only need a uuid here
            tag = uuid.uuid4().hex[:8]
            warm = _requests(book, issuance, member_ids, credential_id, warmup, f"{tag}-w")
            await _post_all(runtime, book, warm, min(inflight, warmup))
            timed = _requests(book, issuance, member_ids, credential_id, count, tag)
            backends = await _client_backends(urls.app)
            sum0, count0 = _batch_stats()
            with _batch_split() as split:
                probe.start()
                backend_cpu, own_cpu = -cpu_seconds(backends), -time.process_time()
                elapsed, statuses = await _post_all(runtime, book, timed, inflight)
                backend_cpu += cpu_seconds(backends)
                own_cpu += time.process_time()
                cpu = probe.stop()
            sum1, count1 = _batch_stats()
    finally:
        await runtime.close()
    batches = count1 - count0
    ok = statuses.get(201, 0)
    return {
        "book": book,
        "postings": count,
        "ok": ok,
        "statuses": {str(k): v for k, v in statuses.items()},
        "inflight": inflight,
        "warmup_postings": warmup,
        "first_timed_seq": warmup + 1,
        "seconds": round(elapsed, 3),
        "postings_per_s": round(ok / elapsed, 1),
        "batches": int(batches),
        "mean_batch_size": round((sum1 - sum0) / batches, 1) if batches else None,
        "max_batch_size": settings.max_batch_size,
        "with_idempotency_keys": True,
        "cpu_pct": cpu,
        # Two bounds whatever the schedule: this process's CPU (the ledger's Python: the rules,
        # the entry, the answer, asyncpg, the event loop) and PostgreSQL's own work, the CPU of
        # the client sessions' server processes (the sequencer's writes; the others sit idle),
        # without the WAL writer and the other background processes. Each, on a core of its own
        # with the other costing nothing, allows no more than `ok / cpu` postings a second.
        "own_cpu_s": round(own_cpu, 3),
        "own_us_per_posting": round(1e6 * own_cpu / ok, 1) if ok else None,
        "own_bound_postings_per_s": round(ok / own_cpu, 1) if own_cpu > 0 else None,
        "pg_sessions_cpu_s": round(backend_cpu, 3),
        "pg_sessions_us_per_posting": round(1e6 * backend_cpu / ok, 1) if ok else None,
        "pg_bound_postings_per_s": round(ok / backend_cpu, 1) if backend_cpu > 0 else None,
        "batch_split_s": _split_json(split),
    }


def _split_json(split: dict[str, float]) -> dict[str, dict[str, float]]:
    steps = {k: round(v, 3) for k, v in split.items() if not k.startswith("sql ")}
    if "batch" in steps:
        rest = split["batch"] - sum(
            v for k, v in split.items() if k not in ("batch",) and not k.startswith("sql ")
        )
        steps["rest"] = round(rest, 3)
    statements = sorted(
        ((k[4:], v) for k, v in split.items() if k.startswith("sql ")), key=lambda kv: -kv[1]
    )
    return {"steps": steps, "statements": {k: round(v, 3) for k, v in statements}}


async def bench_copy(
    urls: DatabaseUrls, settings: Settings, *, book: str, first_seq: int, count: int, reps: int
) -> dict[str, Any]:
    """COPY the very journal rows of (b) (8 columns, same bytes) into a plain table."""
    async with _app_and_owner(urls) as (app_conn, owner):
        rows = await app_conn.fetch(
            f"SELECT {', '.join(ENTRY_COLUMNS)} FROM journal_entries "
            "WHERE book_code = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
            book,
            first_seq,
            count,
        )
        records = [tuple(r) for r in rows]
        body_bytes = statistics.fmean(len(r[7]) for r in records)
        await owner.execute(
            f"DROP TABLE IF EXISTS {BASELINE_TABLE}; "
            f"CREATE TABLE {BASELINE_TABLE} (book_code text NOT NULL, seq bigint NOT NULL, "
            "tx_id uuid NOT NULL, kind text NOT NULL, posted_at timestamptz NOT NULL, "
            "prev_hash text NOT NULL, entry_hash text NOT NULL, body bytea NOT NULL); "
            f'GRANT INSERT ON {BASELINE_TABLE} TO "{settings.app_role}"'
        )
        insert = (
            f"INSERT INTO {BASELINE_TABLE} ({', '.join(ENTRY_COLUMNS)}) "
            f"VALUES ({', '.join(f'${n}' for n in range(1, len(ENTRY_COLUMNS) + 1))})"
        )
        copy = functools.partial(
            app_conn.copy_records_to_table,
            BASELINE_TABLE,
            records=records,
            columns=ENTRY_COLUMNS,
        )
        # Not the baseline: the issue's scale note ("batched inserts about 78,000 rows per
        # second") measured against the same rows, to show how far COPY is from it.
        batched_insert = functools.partial(app_conn.executemany, insert, records)
        times, insert_times = [], []
        for _ in range(reps):
            times.append(await _timed_load(owner, app_conn, BASELINE_TABLE, copy))
            insert_times.append(await _timed_load(owner, app_conn, BASELINE_TABLE, batched_insert))
        await owner.execute(f"DROP TABLE {BASELINE_TABLE}")
    median = statistics.median(times)
    return {
        "rows": len(records),
        "mean_body_bytes": round(body_bytes),
        "reps": reps,
        "seconds": [round(t, 4) for t in times],
        "rows_per_s": round(len(records) / median, 1),
        "batched_insert_rows_per_s": round(len(records) / statistics.median(insert_times), 1),
        "how": (
            "asyncpg copy_records_to_table, one COPY in one transaction, as the app role, into an "
            "ordinary logged table (journal_entries' 8 columns, no index/constraint/trigger) "
            "created by the owner; records = the timed postings' own journal rows, prebuilt; "
            "median of reps; batched_insert = asyncpg executemany of one INSERT per row, same "
            "rows and table, after each COPY (informative only)"
        ),
    }


FLOOR_TABLES = {
    "journal_entries": "bench_floor_entries",
    "journal_legs": "bench_floor_legs",
    "idempotency_keys": "bench_floor_keys",
}


async def bench_rows_floor(
    urls: DatabaseUrls, settings: Settings, *, book: str, first_seq: int, count: int, reps: int
) -> dict[str, Any]:
    """The rows the timed postings wrote (entries, legs, idempotency keys), COPY'd into copies
    of their tables with the same indexes: what merely storing them costs, with no ledger work."""
    last = first_seq + count - 1
    async with _app_and_owner(urls) as (app_conn, owner):
        entries = await owner.fetch(
            "SELECT * FROM journal_entries WHERE book_code = $1 AND seq BETWEEN $2 AND $3",
            book, first_seq, last,
        )  # fmt: skip
        legs = await owner.fetch(
            "SELECT * FROM journal_legs WHERE book_code = $1 AND seq BETWEEN $2 AND $3",
            book, first_seq, last,
        )  # fmt: skip
        keys = await owner.fetch(
            "SELECT * FROM idempotency_keys WHERE tx_id = ANY($1::uuid[])",
            [r["tx_id"] for r in entries],
        )
        rows = {
            FLOOR_TABLES["journal_entries"]: [tuple(r) for r in entries],
            FLOOR_TABLES["journal_legs"]: [tuple(r) for r in legs],
            FLOOR_TABLES["idempotency_keys"]: [tuple(r) for r in keys],
        }
        for source, copy in FLOOR_TABLES.items():
            await owner.execute(
                f"DROP TABLE IF EXISTS {copy}; "
                f"CREATE TABLE {copy} (LIKE {source} INCLUDING DEFAULTS INCLUDING INDEXES); "
                f'GRANT INSERT ON {copy} TO "{settings.app_role}"'
            )

        async def copy_all() -> None:
            for table, records in rows.items():
                await app_conn.copy_records_to_table(table, records=records)

        tables = ", ".join(FLOOR_TABLES.values())
        times = [await _timed_load(owner, app_conn, tables, copy_all) for _ in range(reps)]
        await owner.execute(f"DROP TABLE {tables}")
    median = statistics.median(times)
    return {
        "postings": len(entries),
        "rows": {table: len(records) for table, records in rows.items()},
        "seconds": [round(t, 4) for t in times],
        "postings_per_s": round(len(entries) / median, 1),
        "how": (
            "asyncpg copy_records_to_table of the timed postings' own journal_entries, "
            "journal_legs and idempotency_keys rows, in one transaction, as the app role, into "
            "copies of those tables made by the owner with LIKE ... INCLUDING INDEXES (their "
            "primary and unique keys and indexes; no CHECK, trigger, balance or head update); "
            "median of reps"
        ),
    }


async def _verify_queries(conn: asyncpg.Connection, book: str) -> None:
    """verify_book's reads (same SQL, same chunks, one after the other on one connection),
    with no checking: its I/O floor when nothing overlaps."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute("SET LOCAL enable_bitmapscan = off")  # as verify_book reads
        last = await conn.fetchval("SELECT seq FROM book_heads WHERE book_code = $1", book)
        for start in range(1, (last or 0) + 1, VERIFY_CHUNK):
            end = min(start + VERIFY_CHUNK - 1, last)
            await conn.fetch(VERIFY_ENTRIES, book, start, end)
            await conn.fetch(VERIFY_LEGS, book, start, end)


async def bench_verify(urls: DatabaseUrls, *, book: str, reps: int) -> dict[str, Any]:
    """verify_book vs fetch + SHA-256 of the same bodies, each on connections already open.

    The book's tables are vacuumed first (as the owner), so that no autovacuum started by (b)'s
    inserts runs during the timings and every read finds the same settled pages; the
    measurements then alternate within each rep, so drift on the machine hits them alike. The
    baseline's connection is open before it is timed, and so are verify's two (as `timebank
    verify` opens them once for every book); verify_book with its own connections, as one call
    from a program would run it, is reported beside it.
    """
    owner = await asyncpg.connect(urls.owner)
    try:
        await owner.execute("VACUUM (ANALYZE) journal_entries, journal_legs, accounts")
    finally:
        await owner.close()
    conn = await asyncpg.connect(urls.app)
    verify_times: list[float] = []
    with_connect: list[float] = []
    queries_only: list[float] = []
    fetch_hash: list[float] = []
    hash_only: list[float] = []
    entries = 0
    try:
        async with open_reader(urls.app) as reader:
            for _ in range(reps):
                gc.collect()
                started = time.perf_counter()
                result = await verify_book_with(reader, book)
                verify_times.append(time.perf_counter() - started)
                entries = result.entries
                gc.collect()
                started = time.perf_counter()
                await verify_book(urls.app, book)
                with_connect.append(time.perf_counter() - started)
                await _baseline_rep(conn, book, entries, queries_only, fetch_hash, hash_only)
    finally:
        await conn.close()
    verify_s = statistics.median(verify_times)
    baseline_s = statistics.median(fetch_hash)
    return {
        "entries": entries,
        "reps": reps,
        "verify_seconds": [round(t, 4) for t in verify_times],
        "verify_entries_per_s": round(entries / verify_s, 1),
        "verify_with_connect_seconds": [round(t, 4) for t in with_connect],
        "verify_with_connect_entries_per_s": round(entries / statistics.median(with_connect), 1),
        "baseline_seconds": [round(t, 4) for t in fetch_hash],
        "baseline_entries_per_s": round(entries / baseline_s, 1),
        "hash_only_entries_per_s": round(entries / statistics.median(hash_only), 1),
        "verify_queries_only_entries_per_s": round(entries / statistics.median(queries_only), 1),
        "how": (
            "tables vacuumed first; then per rep, in turn: verify_book_with on two connections "
            "opened before the timings (as `timebank verify` reads every book on one pair), "
            "verify_book opening its own two, its queries alone, and the baseline = fetch + "
            "hash on one open connection: SELECT body ... ORDER BY seq (one query, "
            "repeatable-read read-only transaction) then hashlib.sha256(body).hexdigest() per "
            "entry; median of reps"
        ),
    }


async def _baseline_rep(
    conn: asyncpg.Connection,
    book: str,
    entries: int,
    queries_only: list[float],
    fetch_hash: list[float],
    hash_only: list[float],
) -> None:
    """One rep of verify's queries alone and of the fetch + SHA-256 baseline."""
    gc.collect()
    started = time.perf_counter()
    await _verify_queries(conn, book)
    queries_only.append(time.perf_counter() - started)
    gc.collect()
    started = time.perf_counter()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(
            "SELECT body FROM journal_entries WHERE book_code = $1 ORDER BY seq", book
        )
    fetched = time.perf_counter()
    for row in rows:
        hashlib.sha256(row[0]).hexdigest()
    done = time.perf_counter()
    fetch_hash.append(done - started)
    hash_only.append(done - fetched)
    if len(rows) != entries:
        raise RuntimeError(f"baseline read {len(rows)} entries, verify {entries}")


async def sample_activity(
    url: str, role: str, measure_from: float, stop_at: float, interval_s: float = 0.01
) -> dict[str, Any]:
    """Sample pg_stat_activity of `role` (the app role sees its own sessions' state).

    Per sample the ledger's database side is classed as: "active" (a statement of the app is
    running in PostgreSQL), "idle in transaction" (a transaction, i.e. a batch holding the book
    head lock, is open but waits for the Python process to send its next statement) or "idle"
    (no batch in progress).
    """
    conn = await asyncpg.connect(url)
    classes: dict[str, int] = {}
    waits: dict[str, int] = {}
    samples = 0
    try:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        while time.perf_counter() < stop_at:
            rows = await conn.fetch(
                "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                "WHERE usename = $1 AND datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
                role,
            )
            samples += 1
            states = {r["state"] for r in rows}
            label = next((s for s in ("active", "idle in transaction") if s in states), "idle")
            classes[label] = classes.get(label, 0) + 1
            for r in rows:
                if r["state"] == "active" and r["wait_event_type"]:
                    key = f"{r['wait_event_type']}:{r['wait_event']}"
                    waits[key] = waits.get(key, 0) + 1
            await asyncio.sleep(interval_s)
    finally:
        await conn.close()
    share = {k: round(100 * v / samples, 1) for k, v in sorted(classes.items())} if samples else {}
    return {
        "samples": samples,
        "pct_of_samples": share,
        "active_wait_events": dict(sorted(waits.items(), key=lambda kv: -kv[1])[:5]),
    }


async def server_facts(url: str) -> dict[str, str]:
    conn = await asyncpg.connect(url)
    try:
        facts = {"version": await conn.fetchval("SELECT version()")}
        for name in ("fsync", "synchronous_commit", "shared_buffers", "wal_level"):
            facts[name] = await conn.fetchval(f"SHOW {name}")
        # What one durable commit costs here (an xid forces a WAL flush at COMMIT).
        times = []
        for _ in range(50):
            started = time.perf_counter()
            async with conn.transaction():
                await conn.fetchval("SELECT pg_current_xact_id()")
            times.append(time.perf_counter() - started)
        facts["commit_ms_median"] = f"{1000 * statistics.median(times):.2f}"
        return facts
    finally:
        await conn.close()
