"""`scripts/bench --scale N`: one book grown to N entries through the real posting path, measured
at 100 k, 1 M and N entries (issue 23).

The book has 100,000 member accounts (opened with the very INSERT `ledger.service.open_account`
runs, batched) and a few members registered over HTTP. It grows by two-leg transfers from the
issuance account to a random member account, posted in this process through the sequencer
(`ledger.service.post_transaction`, the path every HTTP posting takes after its route), while
`timebank serve` runs beside it and its log follower integrates every entry into the Merkle tree.
At each milestone the growth pauses, the follower catches up, and the run measures:

- posting: HTTP transfers/s and p99 over keep-alive connections against `timebank serve`, next to
  the bare FastAPI endpoint (bench/bare_app.py) and to pgledger (bench/vendor/pgledger, a
  PostgreSQL-native ledger: `pgledger_create_transfer` over as many asyncpg connections, on the
  same PostgreSQL), and in-process postings/s and p99 through the sequencer; `--scale-rounds`
  windows of each, interleaved, medians reported;
- reads, p50/p99 over single requests: an account's balance, the issuer's first and 20th
  history page, a member account's first page, an inclusion and a consistency proof, the latest
  checkpoint, a receipt, the service and exchange statistics, a member's balances;
- the export (entries/s streamed, with and without receipts), `timebank audit verify` on it
  (offline), and `verify_book` over the whole book;
- bytes on disk per entry (database, journal tables, WAL) and the server's memory (RSS).

Targets are reported, never asserted: see TARGETS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import hashlib
import itertools
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import psutil

from app.config import Settings
from app.db import DatabaseUrls, with_user
from app.kit.canonical_json import canonical_bytes
from app.kit.heap import settle_heap
from app.ledger import schemas, service
from app.ledger.outcomes import IdempotencyRef
from app.ledger.verify_runner import verify_book
from app.runtime import Runtime
from bench.loadgen import LoadResult, run_load
from bench.procs import Server, free_port, process_tree

BOOK = "scale"
MILESTONES = (100_000, 1_000_000)
MEMBER_ACCOUNTS = 100_000
REGISTERED_MEMBERS = 20
READ_WARMUP = 10
HISTORY_DEPTH = 20  # "a deep history page": the issuer's 20th page
PGLEDGER = Path(__file__).resolve().parent / "vendor" / "pgledger"
PGLEDGER_DB = "pgledger_bench"
JOURNAL_TABLES = ("journal_entries", "journal_legs", "merkle_subtrees", "idempotency_keys")
TARGETS = {
    "posting_at_n_vs_100k": 0.9,  # throughput at N over throughput at 100 k, at least
    "read_p99_at_n_vs_100k": 1.5,  # p99 at N over p99 at 100 k, at most
    "export_verify_entries_per_s": 50_000.0,
    "http_vs_bare": 0.5,
    "http_vs_pgledger": 1.5,
    "inprocess_vs_pgledger": 5.0,
}


def log(message: str) -> None:
    from bench.run import log as run_log

    run_log(f"scale: {message}")


def milestones(n: int) -> list[int]:
    """100 k, 1 M and N, those below N."""
    return sorted({m for m in MILESTONES if m < n} | {n})


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    if not ordered:
        return {"p50_ms": 0.0, "p99_ms": 0.0}

    def at(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50_ms": at(0.5), "p99_ms": at(0.99)}


@dataclass
class Book:
    """What the run posts to and reads from."""

    issuance: str
    accounts: list[str]
    member_accounts: list[str] = field(default_factory=list)
    member_ids: list[str] = field(default_factory=list)
    credential_id: str = field(default_factory=lambda: str(uuid.uuid4()))


# ---- growing the book ---------------------------------------------------------------------------


def _transfer(issuance: str, account: str, credential_id: str, key: str) -> tuple[Any, Any]:
    body = {
        "kind": "transfer",
        "legs": [{"account_id": issuance, "amount": -1}, {"account_id": account, "amount": 1}],
        "memo": "",
        "meta": {},
    }
    digest = hashlib.sha256(
        f"POST /v1/books/{BOOK}/transactions\n".encode() + canonical_bytes(body)
    ).hexdigest()
    return schemas.TransactionCreate.model_validate(body), IdempotencyRef(
        credential_id, key, digest
    )


async def post_transfers(
    runtime: Runtime,
    book: Book,
    *,
    count: int | None,
    until: float | None,
    inflight: int,
    latencies: list[float] | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Post transfers through the sequencer, `inflight` at a time, `count` of them or until the
    monotonic clock passes `until`; the number posted (201)."""
    numbers = itertools.count()
    tag = uuid.uuid4().hex[:10]
    ok = 0
    targets = book.accounts + book.member_accounts

    async def worker() -> None:
        nonlocal ok
        for n in numbers:
            if count is not None and n >= count:
                return
            if until is not None and time.monotonic() >= until:
                return
            data, idem = _transfer(
                book.issuance, random.choice(targets), book.credential_id, f"{tag}-{n}"
            )
            started = time.perf_counter()
            outcome = await service.post_transaction(runtime.sequencer, BOOK, data, idem)
            if latencies is not None:
                latencies.append(time.perf_counter() - started)
            if outcome.status_code != 201:
                raise RuntimeError(f"posting refused: {outcome.status_code}")
            ok += 1
            if progress is not None and ok % 100_000 == 0:
                progress(ok)

    await asyncio.gather(*(worker() for _ in range(inflight)))
    return ok


async def open_accounts(urls: DatabaseUrls, count: int) -> list[str]:
    """`count` HOUR accounts of the book, with open_account's INSERT, in one transaction."""
    ids = [uuid.uuid4() for _ in range(count)]
    conn = await asyncpg.connect(urls.app)
    try:
        async with conn.transaction():
            await conn.executemany(
                "INSERT INTO accounts (id, book_code, asset, owner, overdraft_limit, meta) "
                "VALUES ($1, $2, 'HOUR', $3, 0, '{}'::jsonb)",
                [(i, BOOK, f"person:{n}") for n, i in enumerate(ids)],
            )
    finally:
        await conn.close()
    return [str(i) for i in ids]


def register_members(http: httpx.Client, count: int) -> list[tuple[str, str]]:
    """Members registered over HTTP: (member id, its HOUR account)."""
    out = []
    for n in range(count):
        answer = http.post(
            "/v1/members",
            json={
                "book": BOOK,
                "display_name": f"规模测试{n}",
                "phone": f"139{n:08d}",
                "birth_date": "1960-01-01",
                "identity": {"provider": "wechat", "subject": f"scale-{n}"},
            },
        )
        answer.raise_for_status()
        member = answer.json()
        hour = next(a["account_id"] for a in member["accounts"] if a["asset"] == "HOUR")
        out.append((member["id"], hour))
    return out


async def head_seq(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        seq = await conn.fetchval("SELECT seq FROM book_heads WHERE book_code = $1", BOOK)
        return int(seq or 0)
    finally:
        await conn.close()


async def wait_for_log(url: str, seq: int, timeout_s: float = 1800.0) -> float:
    """Seconds until the follower has integrated `seq` entries of the book."""
    conn = await asyncpg.connect(url)
    started = time.monotonic()
    try:
        while True:
            size = await conn.fetchval("SELECT tree_size FROM log_heads WHERE book_code = $1", BOOK)
            if size is not None and size >= seq:
                return round(time.monotonic() - started, 1)
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"log follower at {size} of {seq} after {timeout_s}s")
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


# ---- pgledger, the PostgreSQL-native baseline ---------------------------------------------------


async def pgledger_setup(superuser_url: str, accounts: int) -> tuple[str, str, list[str]]:
    """A database with pgledger's schema, an issuer and `accounts` accounts; its URL, the
    issuer and the accounts."""
    conn = await asyncpg.connect(superuser_url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {PGLEDGER_DB}")
        await conn.execute(f"CREATE DATABASE {PGLEDGER_DB}")
    finally:
        await conn.close()
    url = with_user(superuser_url, urlsplit(superuser_url).username or "postgres", PGLEDGER_DB)
    conn = await asyncpg.connect(url)
    try:
        for name in ("uuid-to-ulid.sql", "pgledger.sql"):
            await conn.execute((PGLEDGER / name).read_text())
        issuer = await conn.fetchval("SELECT id FROM pgledger_create_account('issuer', 'HOUR')")
        ids = [
            r["id"]
            for r in await conn.fetch(
                "SELECT (pgledger_create_account('m' || n, 'HOUR')).id "
                "FROM generate_series(1, $1) n",
                accounts,
            )
        ]
    finally:
        await conn.close()
    return url, issuer, ids


async def pgledger_window(
    url: str, issuer: str, accounts: list[str], *, connections: int, seconds: float, shape: str
) -> dict[str, Any]:
    """`pgledger_create_transfer` over `connections` connections for `seconds`: from the
    issuer (shape "issuer", as the ledger's load) or between random accounts ("pairs")."""
    pool = await asyncpg.create_pool(url, min_size=connections, max_size=connections)
    latencies: list[float] = []
    until = time.monotonic() + seconds

    async def worker() -> None:
        async with pool.acquire() as conn:
            while time.monotonic() < until:
                if shape == "issuer":
                    source, target = issuer, random.choice(accounts)
                else:
                    source, target = random.sample(accounts, 2)
                started = time.perf_counter()
                await conn.fetchval(
                    "SELECT id FROM pgledger_create_transfer($1, $2, 1)", source, target
                )
                latencies.append(time.perf_counter() - started)

    try:
        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.monotonic() - started
    finally:
        await pool.close()
    return {"tps": round(len(latencies) / elapsed, 1), **percentiles(latencies)}


# ---- one milestone -----------------------------------------------------------------------------


class ReadTimer:
    """Timed single GETs against the ledger's HTTP server."""

    def __init__(self, base: str, token: str, samples: int) -> None:
        self.http = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120
        )
        self.samples = samples

    def close(self) -> None:
        self.http.close()

    def get(self, path: str) -> httpx.Response:
        answer = self.http.get(path)
        if answer.status_code != 200:
            raise RuntimeError(f"GET {path}: {answer.status_code} {answer.text[:300]}")
        return answer

    def timed(self, paths: Callable[[], str]) -> dict[str, float]:
        for _ in range(READ_WARMUP):
            self.get(paths())
        latencies = []
        for _ in range(self.samples):
            path = paths()
            started = time.perf_counter()
            self.get(path)
            latencies.append(time.perf_counter() - started)
        return percentiles(latencies)

    def deep_cursor(self, account: str, depth: int) -> int | None:
        """The `before_seq` of the account's page number `depth` (1 = the first)."""
        before: int | None = None
        for _ in range(depth - 1):
            query = "" if before is None else f"?before_seq={before}"
            before = self.get(f"/v1/accounts/{account}/entries{query}").json()["next_before_seq"]
            if before is None:
                return None
        return before


async def sample_tx_ids(url: str, seq: int, count: int) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        seqs = sorted({random.randint(1, seq) for _ in range(count)})
        rows = await conn.fetch(
            "SELECT tx_id FROM journal_entries WHERE book_code = $1 AND seq = ANY($2::bigint[])",
            BOOK,
            seqs,
        )
    finally:
        await conn.close()
    return [str(r["tx_id"]) for r in rows]


def measure_reads(reads: ReadTimer, book: Book, seq: int, tx_ids: list[str]) -> dict[str, Any]:
    members, member_ids = book.member_accounts, book.member_ids
    deep = reads.deep_cursor(book.issuance, HISTORY_DEPTH)
    timed = {
        "balance": lambda: f"/v1/accounts/{random.choice(book.accounts)}",
        "issuer_first_page": lambda: f"/v1/accounts/{book.issuance}/entries",
        "issuer_deep_page": lambda: f"/v1/accounts/{book.issuance}/entries?before_seq={deep}",
        "member_first_page": lambda: f"/v1/accounts/{random.choice(members)}/entries",
        "inclusion_proof": lambda: (
            f"/v1/books/{BOOK}/proofs/inclusion?seq={random.randint(1, seq)}"
        ),
        "consistency_proof": lambda: (
            f"/v1/books/{BOOK}/proofs/consistency?first={random.randint(1, seq)}"
        ),
        "latest_checkpoint": lambda: f"/v1/books/{BOOK}/checkpoint",
        "receipt": lambda: f"/v1/transactions/{random.choice(tx_ids)}/receipt",
        "service_stats": lambda: f"/v1/stats/service?book={BOOK}",
        "exchange_stats": lambda: f"/v1/stats/exchange?book={BOOK}",
        "member_balances": lambda: f"/v1/members/{random.choice(member_ids)}/balances",
    }
    out: dict[str, Any] = {}
    for name, paths in timed.items():
        out[name] = reads.timed(paths)
    out["deep_page_before_seq"] = deep
    return out


def measure_export(
    reads: ReadTimer, timebank: str, env: dict[str, str], seq: int, entries: int, receipts: bool
) -> dict[str, Any]:
    """Stream an export of the book's last `entries` entries into a file, then check it with
    `timebank audit verify`; entries/s of each."""
    first = max(1, seq - entries + 1)
    query = f"from_seq={first}&to_seq={seq}" + ("" if receipts else "&receipts=false")
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as out:
        path = Path(out.name)
        started = time.perf_counter()
        with reads.http.stream("GET", f"/v1/books/{BOOK}/export?{query}") as answer:
            if answer.status_code != 200:
                answer.read()
                raise RuntimeError(f"export: {answer.status_code} {answer.text[:300]}")
            for chunk in answer.iter_bytes(1 << 20):
                out.write(chunk)
        export_s = time.perf_counter() - started
    try:
        size = path.stat().st_size
        started = time.perf_counter()
        done = subprocess.run(
            [timebank, "audit", "verify", str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        verify_s = time.perf_counter() - started
    finally:
        path.unlink(missing_ok=True)
    count = seq - first + 1
    return {
        "entries": count,
        "receipts": receipts,
        "bytes": size,
        "export_entries_per_s": round(count / export_s, 1),
        "audit_verify_entries_per_s": round(count / verify_s, 1),
        "audit_verify_exit": done.returncode,
        "audit_verify_said": (done.stdout + done.stderr).strip().splitlines()[-1:],
    }


async def storage(urls: DatabaseUrls, pgdata: Path) -> dict[str, Any]:
    conn = await asyncpg.connect(urls.owner)
    try:
        database = await conn.fetchval("SELECT pg_database_size(current_database())")
        # WAL written since the server started: its position, less the first segment's start.
        wal_lsn = await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")
        tables = {
            r["relname"]: {
                "total_bytes": r["total"],
                "live_rows": r["n_live_tup"],
                "last_autoanalyze": r["last_autoanalyze"] and r["last_autoanalyze"].isoformat(),
                "autoanalyze_count": r["autoanalyze_count"],
            }
            for r in await conn.fetch(
                "SELECT relname, pg_total_relation_size(relid) AS total, n_live_tup, "
                "last_autoanalyze, autoanalyze_count FROM pg_stat_user_tables "
                "WHERE relname = ANY($1::text[])",
                list(JOURNAL_TABLES),
            )
        }
    finally:
        await conn.close()
    wal = sum(p.stat().st_size for p in (pgdata / "pg_wal").glob("*") if p.is_file())
    return {
        "database_bytes": database,
        "wal_position_bytes": int(wal_lsn),
        "wal_dir_bytes": wal,
        "tables": tables,
    }


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
    return total


# ---- the run -----------------------------------------------------------------------------------


def measure_scale(
    args: argparse.Namespace,
    timebank: str,
    env: dict[str, str],
    pgdata: Path,
    servers: list[Server],
    urls: DatabaseUrls,
    settings: Settings,
    superuser_url: str,
) -> dict[str, Any]:
    """Grow the book to `args.scale` entries and measure it at each milestone."""
    from bench.run import (
        HOST,
        RESULTS,
        ROOT,
        create_token,
        run_async,
        serve_ledger,
        transfer_body,
    )

    n = args.scale
    ledger, port, base = serve_ledger("scale-ledger", timebank, env, servers)
    bare_port = free_port()
    bare = Server(
        "scale-bare",
        [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--host", HOST, "--port",
         str(bare_port), "--workers", "1", "--log-level", "warning", "--no-access-log"],
        env,
        RESULTS / "scale-bare-server.log",
        ROOT,
    )  # fmt: skip
    servers.append(bare)
    bare.start()
    bare.wait_ready(f"http://{HOST}:{bare_port}/openapi.json")
    token = create_token(timebank, env)
    reads = ReadTimer(base, token, args.scale_read_samples)
    try:
        reads.http.post("/v1/books", json={"code": BOOK, "name": BOOK}).raise_for_status()
        issuance = reads.http.post(
            f"/v1/books/{BOOK}/accounts",
            json={"asset": "HOUR", "owner": "system:issuance", "overdraft_limit": 10**15},
        )
        issuance.raise_for_status()
        started = time.monotonic()
        accounts = run_async(open_accounts(urls, MEMBER_ACCOUNTS))
        registered = register_members(reads.http, REGISTERED_MEMBERS)
        book = Book(
            issuance.json()["id"], accounts, [a for _, a in registered], [m for m, _ in registered]
        )
        log(f"{len(accounts):,} accounts and {len(registered)} members in "
            f"{time.monotonic() - started:.0f} s")  # fmt: skip
        empty = run_async(storage(urls, pgdata))
        pg = run_async(pgledger_setup(superuser_url, 1000))
        bodies = [transfer_body(book.issuance, a) for a in accounts[:1000]]
        auth = f"Bearer {token}"

        def factory(conn: int, i: int, nonce: str) -> tuple[str, dict[str, str], bytes]:
            headers = {"Authorization": auth, "Idempotency-Key": f"{nonce}-{conn}-{i}"}
            return f"/v1/books/{BOOK}/transactions", headers, bodies[(conn * 7919 + i) % 1000]

        def bare_factory(conn: int, i: int) -> tuple[str, dict[str, str], bytes]:
            return "/bare", {}, bodies[(conn + i) % 1000]

        results = []
        for milestone in milestones(n):
            results.append(
                run_async(
                    _milestone(
                        args, urls, settings, pgdata, book, milestone, reads, timebank, env,
                        ledger, port, bare_port, factory, bare_factory, pg, empty,
                    )
                )
            )  # fmt: skip
            log(f"milestone {milestone:,} measured")
    finally:
        reads.close()
        ledger.stop()
        bare.stop()
    return {"entries": n, "milestones": results, "targets": _verdicts(results), "how": __doc__}


async def _milestone(
    args: argparse.Namespace,
    urls: DatabaseUrls,
    settings: Settings,
    pgdata: Path,
    book: Book,
    milestone: int,
    reads: ReadTimer,
    timebank: str,
    env: dict[str, str],
    ledger: Server,
    port: int,
    bare_port: int,
    factory: Callable[[int, int, str], tuple[str, dict[str, str], bytes]],
    bare_factory: Callable[[int, int], tuple[str, dict[str, str], bytes]],
    pg: tuple[str, str, list[str]],
    empty: dict[str, Any],
) -> dict[str, Any]:
    from bench.run import HOST

    runtime = await Runtime.open(urls.app, settings)
    settle_heap()
    try:
        seq = await head_seq(urls.app)
        missing = max(0, milestone - seq)
        log(f"growing {seq:,} -> {milestone:,} entries")
        started = time.monotonic()

        def progress(done: int) -> None:
            rate = done / (time.monotonic() - started)
            log(f"  {seq + done:,} entries, {rate:,.0f}/s, ETA {(missing - done) / rate:,.0f} s")

        posted = await post_transfers(
            runtime, book, count=missing, until=None, inflight=args.inflight, progress=progress
        )
        grow_s = time.monotonic() - started
        caught_up_s = await wait_for_log(urls.app, milestone)
        log(f"grown in {grow_s:.0f} s ({posted / max(grow_s, 1e-9):,.0f}/s); log caught up "
            f"{caught_up_s} s later")  # fmt: skip
        disk = await storage(urls, pgdata)
        seq = await head_seq(urls.app)
        gc.collect()
        tx_ids = await sample_tx_ids(urls.app, seq, 1000)
        read_figures = await asyncio.to_thread(measure_reads, reads, book, seq, tx_ids)
        rounds: dict[str, list[dict[str, Any]]] = {
            "bare": [], "http": [], "pgledger_issuer": [], "pgledger_pairs": [], "inprocess": [],
        }  # fmt: skip
        seconds = args.scale_window
        for _ in range(args.scale_rounds):
            nonce = uuid.uuid4().hex[:10]
            bare = await run_load(
                HOST, bare_port, bare_factory, connections=args.connections,
                warmup_s=1.0, duration_s=seconds,
            )  # fmt: skip
            rounds["bare"].append(_load(bare))
            http = await run_load(
                HOST, port, functools.partial(_keyed, factory, nonce),
                connections=args.connections, warmup_s=1.0, duration_s=seconds,
            )  # fmt: skip
            rounds["http"].append(_load(http))
            for shape in ("issuer", "pairs"):
                rounds[f"pgledger_{shape}"].append(
                    await pgledger_window(
                        pg[0], pg[1], pg[2], connections=args.connections, seconds=seconds,
                        shape=shape,
                    )
                )  # fmt: skip
            latencies: list[float] = []
            window_start = time.monotonic()
            count = await post_transfers(
                runtime, book, count=None, until=window_start + seconds,
                inflight=args.scale_inflight, latencies=latencies,
            )  # fmt: skip
            rounds["inprocess"].append(
                {"tps": round(count / (time.monotonic() - window_start), 1),
                 **percentiles(latencies)}
            )  # fmt: skip
        posting: dict[str, Any] = {k: _median(v) for k, v in rounds.items()}
        posting["rounds"] = rounds
        seq = await head_seq(urls.app)
        await wait_for_log(urls.app, seq)
        exports = []
        for receipts, entries in ((False, args.scale_export), (True, args.scale_export // 10)):
            exports.append(
                await asyncio.to_thread(
                    measure_export, reads, timebank, env, seq, min(seq, entries), receipts
                )
            )
        started = time.perf_counter()
        verified = await verify_book(urls.app, BOOK)
        verify_s = time.perf_counter() - started
        memory = {
            "server_rss_bytes": rss_bytes(process_tree(ledger.pid)),
            "bench_process_rss_bytes": rss_bytes([os.getpid()]),
        }
    finally:
        await runtime.close()
    per_entry = (disk["database_bytes"] - empty["database_bytes"]) / milestone
    wal_per_entry = (disk["wal_position_bytes"] - empty["wal_position_bytes"]) / milestone
    return {
        "entries": milestone,
        "grow_seconds": round(grow_s, 1),
        "grow_postings_per_s": round(posted / grow_s, 1) if grow_s > 0 else None,
        "log_caught_up_after_s": caught_up_s,
        "posting": posting,
        "reads": read_figures,
        "exports": exports,
        "verify": {
            "entries": verified.entries,
            "entries_per_s": round(verified.entries / verify_s, 1),
        },
        "disk": {
            **disk,
            "database_bytes_per_entry": round(per_entry),
            # Everything the database logged up to the milestone (the growth stops at it), the
            # log follower's Merkle rows and the checkpoints included; full-page images too.
            "wal_bytes_per_entry": round(wal_per_entry),
        },
        "memory": memory,
    }


def _load(result: LoadResult) -> dict[str, Any]:
    return {
        "tps": round(result.rps, 1),
        "p50_ms": round(result.p50_ms, 2),
        "p99_ms": round(result.p99_ms, 2),
        "errors": result.errors,
        "statuses": result.statuses,
    }


def _median(windows: list[dict[str, Any]]) -> dict[str, float]:
    return {
        key: round(statistics.median(w[key] for w in windows), 2)
        for key in ("tps", "p50_ms", "p99_ms")
    }


def _verdicts(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Each target of the issue against the figures: the value and whether it is met."""
    first, last = results[0], results[-1]
    out: dict[str, Any] = {}

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 3) if b else None

    for kind in ("http", "inprocess"):
        value = ratio(last["posting"][kind]["tps"], first["posting"][kind]["tps"])
        out[f"{kind}_posting_at_n_vs_first"] = {
            "value": value,
            "target": f">= {TARGETS['posting_at_n_vs_100k']}",
            "met": value is not None and value >= TARGETS["posting_at_n_vs_100k"],
        }
    reads: dict[str, Any] = {}
    for name, figures in last["reads"].items():
        if not isinstance(figures, dict):
            continue
        value = ratio(figures["p99_ms"], first["reads"][name]["p99_ms"])
        reads[name] = {
            "value": value,
            "met": value is not None and value <= TARGETS["read_p99_at_n_vs_100k"],
        }
    out["read_p99_at_n_vs_first"] = {"target": f"<= {TARGETS['read_p99_at_n_vs_100k']}", **reads}
    plain = next(e for e in last["exports"] if not e["receipts"])
    for name, value in (
        ("export", plain["export_entries_per_s"]),
        ("audit_verify", plain["audit_verify_entries_per_s"]),
        ("verify", last["verify"]["entries_per_s"]),
    ):
        out[f"{name}_entries_per_s"] = {
            "value": value,
            "target": f">= {TARGETS['export_verify_entries_per_s']:,.0f}",
            "met": value >= TARGETS["export_verify_entries_per_s"],
        }
    for milestone in results:
        posting = milestone["posting"]
        best_pg = max(posting["pgledger_issuer"]["tps"], posting["pgledger_pairs"]["tps"])
        for name, value, target in (
            ("http_vs_bare", ratio(posting["http"]["tps"], posting["bare"]["tps"]), "http_vs_bare"),
            ("http_vs_pgledger", ratio(posting["http"]["tps"], best_pg), "http_vs_pgledger"),
            ("inprocess_vs_pgledger", ratio(posting["inprocess"]["tps"], best_pg),
             "inprocess_vs_pgledger"),
        ):  # fmt: skip
            out.setdefault(name, {"target": f">= {TARGETS[target]}"})[str(milestone["entries"])] = {
                "value": value,
                "met": value is not None and value >= TARGETS[target],
            }
    return out


def _keyed(
    factory: Callable[[int, int, str], tuple[str, dict[str, str], bytes]],
    nonce: str,
    conn: int,
    i: int,
) -> tuple[str, dict[str, str], bytes]:
    return factory(conn, i, nonce)


def _posting_cell(kind: str, r: dict[str, Any]) -> str:
    return f"{r['posting'][kind]['tps']:,.0f} ({r['posting'][kind]['p99_ms']})"


def _read_cell(name: str, r: dict[str, Any]) -> str:
    return f"{r['reads'][name]['p99_ms']} ({r['reads'][name]['p50_ms']})"


def render(scale: dict[str, Any]) -> str:
    """The milestones side by side, then the targets."""
    rows = scale["milestones"]
    head = "| figure | " + " | ".join(f"{r['entries']:,} entries" for r in rows) + " |"
    lines = [head, "|---" * (len(rows) + 1) + "|"]

    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(r) for r in rows) + " |")

    for kind, label in (
        ("http", "HTTP postings/s (p99 ms)"),
        ("bare", "bare FastAPI rps (p99 ms)"),
        ("pgledger_issuer", "pgledger transfers/s, from one issuer (p99 ms)"),
        ("pgledger_pairs", "pgledger transfers/s, random pairs (p99 ms)"),
        ("inprocess", "in-process postings/s (p99 ms)"),
    ):
        row(label, functools.partial(_posting_cell, kind))
    for name in rows[0]["reads"]:
        if isinstance(rows[0]["reads"][name], dict):
            row(f"{name} p99 ms (p50)", functools.partial(_read_cell, name))
    for receipts in (False, True):
        label = "with receipts" if receipts else "without receipts"

        def export_cell(r: dict[str, Any], receipts: bool = receipts) -> str:
            e = next(x for x in r["exports"] if x["receipts"] == receipts)
            return f"{e['export_entries_per_s']:,.0f} / {e['audit_verify_entries_per_s']:,.0f}"

        row(f"export / audit verify entries/s, {label}", export_cell)
    row("verify_book entries/s", lambda r: f"{r['verify']['entries_per_s']:,.0f}")
    row("database bytes per entry", lambda r: f"{r['disk']['database_bytes_per_entry']:,}")
    row("WAL written bytes per entry", lambda r: f"{r['disk'].get('wal_bytes_per_entry', 0):,}")
    row("WAL directory MB", lambda r: f"{r['disk']['wal_dir_bytes'] / 2**20:,.0f}")
    row("server RSS MB", lambda r: f"{r['memory']['server_rss_bytes'] / 2**20:,.0f}")
    row("growth postings/s", lambda r: f"{r['grow_postings_per_s'] or 0:,.0f}")
    lines.append("")
    for name, verdict in scale["targets"].items():
        lines.append(f"- {name}: {verdict}")
    return "\n".join(lines)
