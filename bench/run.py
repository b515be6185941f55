"""One benchmark run: each figure as a ratio against a baseline measured in the same run.

(a) HTTP: two-leg transfers/s and p50/p99 latency over N keep-alive connections against
    `timebank serve`, next to a bare FastAPI endpoint (bench/bare_app.py) served the same way.
(b) In process: postings/s through the sequencer (group commit), next to an asyncpg COPY of
    the same journal rows into a plain table.
(c) verify_book entries/s, next to fetching the same bodies and hashing them with SHA-256.
(a') (a) with TIMEBANK_RECEIPTS=false, what signing a receipt per answer costs: two servers,
    measured in alternating windows (on, off, off, on) of half the duration each.
(d) inclusion proofs/s in a 1,000,000-leaf tree of stored subtrees, next to primary-key lookups.
(e) the auditor's export over HTTP and `timebank audit verify`, entries/s, on (b)'s book grown
    to --export-entries, each with and without receipts: next to the same with receipts (what
    both were before issue 23), to read + SHA-256 of the file, and to the 50,000/s target.

Everything runs against a fresh embedded PostgreSQL in a temporary directory, which is stopped
and deleted at the end (also on Ctrl-C or an error). Targets are reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bench.loadgen import LoadResult, RequestFactory, merge_results, run_load
from bench.procs import (
    CpuProbe,
    Server,
    force_stop_postgres,
    free_port,
    postgres_pids,
    process_tree,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench-results"
HOST = "127.0.0.1"
BOOK = "bench"
INPROC_BOOK = "bench_inproc"
T = TypeVar("T")

TARGETS = {
    "http_ratio": 0.5,
    "http_p99_ms": 50.0,
    "postings_ratio": 0.15,
    "verify_ratio": 0.3,
    "export_entries_per_s": 50_000,
    "audit_verify_entries_per_s": 50_000,
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on uvloop when installed (uvicorn serves on uvloop too)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=32, help="HTTP connections (a)")
    p.add_argument(
        "--workers", type=int, default=1, help="server processes, the ledger's and the bare's (a)"
    )
    p.add_argument("--warmup", type=float, default=3.0, help="HTTP warm-up seconds per server")
    p.add_argument("--duration", type=float, default=10.0, help="HTTP measured seconds per server")
    p.add_argument("--members", type=int, default=64, help="member accounts per book")
    p.add_argument("--client", choices=("raw", "httpx"), default="raw", help="HTTP client (a)")
    p.add_argument("--postings", type=int, default=20_000, help="timed postings (b)")
    p.add_argument("--inflight", type=int, default=2_000, help="postings in flight (b)")
    p.add_argument("--reps", type=int, default=5, help="repetitions of COPY and verify (b, c)")
    p.add_argument("--tree-size", type=int, default=1_000_000, help="leaves of the tree (d)")
    p.add_argument("--proof-seconds", type=float, default=3.0, help="seconds of proofs (d)")
    p.add_argument(
        "--export-entries",
        type=int,
        default=100_000,
        help="entries of (b)'s book when it is exported and verified: it is grown to this (e)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="processes checking receipts in `audit verify` (e)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="record py-spy profiles of both servers (a) and of (b) and (c) into bench-results/ "
        "(needs py-spy on PATH; skews the figures)",
    )
    p.add_argument(
        "--only",
        choices=("http", "inprocess", "audit"),
        action="append",
        help="run only these parts: http (a), inprocess (b, c), audit (d, e); repeatable",
    )
    p.add_argument(
        "--scale",
        type=int,
        nargs="?",
        const=1_000_000,
        default=None,
        metavar="N",
        help="instead of (a)-(e): grow one book to N entries (default 1,000,000) and measure it "
        "at 100 k, 1 M and N (bench/scale.py)",
    )
    from bench import stats as stats_bench

    stats_bench.add_arguments(p)
    p.add_argument("--scale-rounds", type=int, default=3, help="posting windows per milestone")
    p.add_argument("--scale-window", type=float, default=8.0, help="seconds of each window")
    p.add_argument("--scale-read-samples", type=int, default=500, help="GETs timed per read")
    p.add_argument(
        "--scale-export", type=int, default=200_000, help="entries exported without receipts"
    )
    p.add_argument(
        "--scale-inflight", type=int, default=256, help="in-process postings in flight, timed"
    )
    p.add_argument(
        "--server-log-level",
        default=None,
        help="the servers' TIMEBANK_LOG_LEVEL (default theirs, info: one access line a "
        "request; warning measures the service without it)",
    )
    p.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    return p.parse_args(argv)


def machine_facts() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for package in (
        "fastapi",
        "starlette",
        "uvicorn",
        "pydantic",
        "asyncpg",
        "uvloop",
        "httptools",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
    }


def child_env(data_dir: Path, log_level: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMEBANK_")}
    env["TIMEBANK_DATA_DIR"] = str(data_dir)
    if log_level is not None:  # e.g. warning: no access line a request (docs/operations.md)
        env["TIMEBANK_LOG_LEVEL"] = log_level
    # One credential drives all the load: the per-credential rate limit would cap it.
    env["TIMEBANK_RATE_LIMIT_PER_S"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def create_token(timebank: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [timebank, "credentials", "create", "--role", "admin", "--name", "bench"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"credentials create failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1].strip()


def transfer_body(issuance: str, member: str) -> bytes:
    return json.dumps(
        {
            "kind": "transfer",
            "legs": [
                {"account_id": issuance, "amount": -1},
                {"account_id": member, "amount": 1},
            ],
            "memo": "",
            "meta": {},
        }
    ).encode()


def setup_book(base: str, token: str, members: int) -> tuple[str, list[str], int, str]:
    """Book, issuance account and members over HTTP; one probe transfer (its answer size and
    its receipt)."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as http:

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            answer = http.post(path, json=body)
            if answer.status_code != 201:
                raise RuntimeError(f"POST {path}: {answer.status_code} {answer.text[:500]}")
            result: dict[str, Any] = answer.json()
            return result

        post("/v1/books", {"code": BOOK, "name": BOOK})
        issuance = post(
            f"/v1/books/{BOOK}/accounts",
            {"asset": "HOUR", "owner": "system:issuance", "overdraft_limit": 1_000_000_000_000},
        )["id"]
        ids = [
            post(f"/v1/books/{BOOK}/accounts", {"asset": "HOUR", "owner": f"person:{n}"})["id"]
            for n in range(members)
        ]
        answer = http.post(
            f"/v1/books/{BOOK}/transactions",
            content=transfer_body(issuance, ids[0]),
            headers={
                "Idempotency-Key": f"probe-{uuid.uuid4()}",
                "Content-Type": "application/json",
            },
        )
        if answer.status_code != 201:
            raise RuntimeError(f"probe transfer: {answer.status_code} {answer.text[:500]}")
    return issuance, ids, len(answer.content), str(answer.json().get("receipt") or "")


def merge_runs(
    runs: list[tuple[LoadResult, dict[str, float]]],
) -> tuple[LoadResult, dict[str, float]]:
    """One result for the windows of one server, CPU weighted by their durations."""
    merged = merge_results([result for result, _ in runs])
    cpu: dict[str, float] = {}
    for result, used in runs:
        for name, pct in used.items():
            cpu[name] = cpu.get(name, 0.0) + pct * result.duration_s / merged.duration_s
    return merged, {name: round(pct, 1) for name, pct in cpu.items()}


def receipt_facts(receipt: str, rps_with: float, rps_without: float) -> dict[str, Any]:
    """A two-leg transfer's receipt: its size, its QR code, what signing costs in throughput."""
    import segno

    qr = segno.make(receipt, error="m", micro=False, boost_error=False) if receipt else None
    return {
        "bytes": len(receipt),
        "qr": None if qr is None else f"version {qr.version}-{qr.error}",
        "rps_ratio_with_to_without": round(rps_with / rps_without, 3) if rps_without else None,
    }


LEDGER_COUNTERS = {
    "batch_postings": "timebank_ledger_batch_size_sum",
    "batches": "timebank_ledger_batch_size_count",
    "rereads": "timebank_ledger_batch_rereads_total",
    "relocks": "timebank_ledger_batch_relocks_total",
}


def ledger_counters(base: str) -> dict[str, float]:
    """The sequencer's counters from /metrics (summed over labels and worker processes)."""
    text = httpx.get(base + "/metrics", timeout=10).text
    values = dict.fromkeys(LEDGER_COUNTERS, 0.0)
    for line in text.splitlines():
        for key, name in LEDGER_COUNTERS.items():
            if line.startswith((f"{name} ", f"{name}{{")):
                values[key] += float(line.split()[-1])
    return values


@contextlib.contextmanager
def spying(enabled: bool, name: str, pid: int) -> Iterator[None]:
    """A py-spy profile of `pid` while the block runs (bench-results/pyspy-NAME.txt)."""
    if not enabled:
        yield
        return
    spy = subprocess.Popen(
        ["py-spy", "record", "--pid", str(pid), "--rate", "200", "--format", "raw",
         "--nonblocking", "--output", str(RESULTS / f"pyspy-{name}.txt")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1)  # let it attach
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)


def http_phase(
    name: str,
    port: int,
    factory: RequestFactory,
    probe: CpuProbe,
    args: argparse.Namespace,
    profile_pid: int | None = None,
    companion: Callable[[float, float], Coroutine[Any, Any, Any]] | None = None,
) -> tuple[LoadResult, dict[str, float]]:
    spy: list[subprocess.Popen[bytes]] = []

    def on_window(event: str) -> None:
        probe.on_window(event)
        if event == "start" and profile_pid is not None:
            out = RESULTS / f"pyspy-{name}.txt"
            spy.append(
                subprocess.Popen(
                    ["py-spy", "record", "--pid", str(profile_pid), "--duration",
                     str(int(args.duration)), "--rate", "200", "--format", "raw",
                     "--nonblocking", "--output", str(out)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip

    log(f"(a) {name}: {args.connections} connections, {args.warmup:g}s warm-up + "
        f"{args.duration:g}s measured")  # fmt: skip
    try:
        result = run_async(
            run_load(
                HOST,
                port,
                factory,
                connections=args.connections,
                warmup_s=args.warmup,
                duration_s=args.duration,
                client=args.client,
                on_window=on_window,
                companion=companion,
            )
        )
    finally:
        for proc in spy:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return result, dict(probe.result)


def serve_ledger(
    name: str, timebank: str, env: dict[str, str], servers: list[Server], workers: int = 1
) -> tuple[Server, int, str]:
    """`timebank serve` on a free port of 127.0.0.1, ready (logging to bench-results/), added
    to `servers` to be stopped: the server, its port and its base URL."""
    port = free_port()
    server = Server(
        name,
        [timebank, "serve", "--host", HOST, "--port", str(port), "--workers", str(workers)],
        env,
        RESULTS / f"{name}-server.log",
        ROOT,
    )
    servers.append(server)
    server.start()
    base = f"http://{HOST}:{port}"
    server.wait_ready(base + "/readyz")
    return server, port, base


def measure_http(
    args: argparse.Namespace,
    timebank: str,
    env: dict[str, str],
    pgdata: Path,
    servers: list[Any],
    urls: Any,
    settings: Any,
) -> dict[str, Any]:
    from bench.inprocess import sample_activity

    bare_port = free_port()

    def start_ledger(name: str, extra_env: dict[str, str]) -> tuple[Server, int, str]:
        server, port, base = serve_ledger(
            name, timebank, {**env, **extra_env}, servers, args.workers
        )
        log(f"{name} serving on {base} (pid {server.pid}) {extra_env or ''}")
        return server, port, base

    ledger, ledger_port, base = start_ledger("ledger", {})
    token = create_token(timebank, env)
    issuance, members, probe_bytes, receipt = setup_book(base, token, args.members)
    log(f"book {BOOK!r}: issuance + {len(members)} members; one transfer = {probe_bytes} B")

    bodies = [transfer_body(issuance, m) for m in members]
    auth = f"Bearer {token}"

    def make_factory(path: str) -> RequestFactory:
        nonce = uuid.uuid4().hex[:10]

        def factory(conn: int, i: int) -> tuple[str, dict[str, str], bytes]:
            headers = {"Authorization": auth, "Idempotency-Key": f"{nonce}-{path[1:3]}-{conn}-{i}"}
            return path, headers, bodies[(conn + i) % len(bodies)]

        return factory

    bare = Server(
        "bare",
        [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--host", HOST, "--port",
         str(bare_port), "--workers", str(args.workers), "--log-level", "warning",
         "--no-access-log"],
        env,
        RESULTS / "bare-server.log",
        ROOT,
    )  # fmt: skip
    servers.append(bare)
    bare.start()
    bare.wait_ready(f"http://{HOST}:{bare_port}/openapi.json")
    bare_probe = CpuProbe({"server": lambda: process_tree(bare.pid)})
    bare_result, bare_cpu = http_phase(
        "bare", bare_port, make_factory("/bare"), bare_probe, args,
        bare.pid if args.profile else None,
    )  # fmt: skip
    bare.stop()

    # With and without receipts, in windows of half the duration ordered on, off, off, on, so
    # that a drift over the run (the book and the database grow) weighs on both alike.
    plain, plain_port, _ = start_ledger("ledger-no-receipts", {"TIMEBANK_RECEIPTS": "false"})
    half = argparse.Namespace(
        **{**vars(args), "duration": args.duration / 2, "warmup": args.warmup / 2}
    )
    runs: dict[str, list[tuple[LoadResult, dict[str, float]]]] = {"on": [], "off": []}
    before = ledger_counters(base)
    for turn in ("on", "off", "off", "on"):
        server, port = (ledger, ledger_port) if turn == "on" else (plain, plain_port)
        probe = CpuProbe(
            {
                "server": functools.partial(process_tree, server.pid),
                "postgres": lambda: postgres_pids(pgdata),
            }
        )
        first = turn == "on" and not runs["on"]
        runs[turn].append(
            http_phase(
                "ledger" if turn == "on" else "ledger-no-receipts",
                port,
                make_factory(f"/v1/books/{BOOK}/transactions"),
                probe,
                half,
                server.pid if args.profile and first else None,
                functools.partial(sample_activity, urls.app, settings.app_role) if first else None,
            )
        )
    after = ledger_counters(base)
    moved = {k: after[k] - before[k] for k in LEDGER_COUNTERS}
    log(f"ledger servers stopped (exit {ledger.stop()}, {plain.stop()})")
    ledger_result, ledger_cpu = merge_runs(runs["on"])
    plain_result, plain_cpu = merge_runs(runs["off"])

    ratio = ledger_result.rps / bare_result.rps if bare_result.rps else 0.0
    ok = ratio >= TARGETS["http_ratio"] and ledger_result.p99_ms <= TARGETS["http_p99_ms"]
    batches = moved["batches"]
    return {
        "client": args.client,
        "connections": args.connections,
        "workers": args.workers,
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "ledger": {
            **{k: v for k, v in ledger_result.as_json().items() if k != "companion"},
            "cpu_pct": ledger_cpu,
            "mean_batch_size_incl_warmup": (
                round(moved["batch_postings"] / batches, 1) if batches else None
            ),
            "batches_incl_warmup": int(batches),
            "batch_rereads": int(moved["rereads"]),
            "batch_relocks": int(moved["relocks"]),
            "pg_activity": ledger_result.companion,
        },
        "bare": {
            **{k: v for k, v in bare_result.as_json().items() if k != "companion"},
            "cpu_pct": bare_cpu,
        },
        "ledger_no_receipts": {
            **{k: v for k, v in plain_result.as_json().items() if k != "companion"},
            "cpu_pct": plain_cpu,
        },
        "receipts": receipt_facts(receipt, ledger_result.rps, plain_result.rps),
        "ratio": round(ratio, 3),
        "target": f"ratio >= {TARGETS['http_ratio']} and ledger p99 <= {TARGETS['http_p99_ms']} ms",
        "pass": ok,
    }


def measure_inprocess(
    args: argparse.Namespace, urls: Any, settings: Any, pgdata: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    from bench.inprocess import bench_copy, bench_postings, bench_rows_floor, bench_verify

    warmup = min(1000, args.postings)
    probe = CpuProbe({"postgres": lambda: postgres_pids(pgdata), "bench": lambda: [os.getpid()]})
    log(f"(b) {args.postings} postings in process, {args.inflight} in flight "
        f"(after {warmup} warm-up postings)")  # fmt: skip
    with spying(args.profile, "postings", os.getpid()):
        postings = run_async(
            bench_postings(
                urls,
                settings,
                book=INPROC_BOOK,
                count=args.postings,
                inflight=args.inflight,
                members=args.members,
                warmup=warmup,
                probe=probe,
            )
        )
    timed_rows: dict[str, Any] = {
        "book": INPROC_BOOK,
        "first_seq": postings["first_timed_seq"],
        "count": postings["ok"],
        "reps": args.reps,
    }
    log(f"(b) COPY baseline of the same {postings['ok']} journal rows, {args.reps} reps")
    copy = run_async(bench_copy(urls, settings, **timed_rows))
    log("(b) the same postings' rows alone, COPY'd into indexed copies of their tables")
    floor = run_async(bench_rows_floor(urls, settings, **timed_rows))
    ratio_b = postings["postings_per_s"] / copy["rows_per_s"] if copy["rows_per_s"] else 0.0

    def bound_ratio(rate: float | None) -> float | None:
        return round(rate / copy["rows_per_s"], 3) if rate and copy["rows_per_s"] else None

    log(f"(c) verify_book {INPROC_BOOK!r} vs fetch + sha256, {args.reps} reps")
    with spying(args.profile, "verify", os.getpid()):
        verify = run_async(bench_verify(urls, book=INPROC_BOOK, reps=args.reps))
    ratio_c = verify["verify_entries_per_s"] / verify["baseline_entries_per_s"]
    b = {
        "ledger": postings,
        "copy_baseline": copy,
        "ratio": round(ratio_b, 3),
        # The ratios this process's CPU and PostgreSQL's own CPU for the writes each allow at most
        # (see bench_postings): the figure cannot pass the lower of the two.
        "own_bound_ratio": bound_ratio(postings["own_bound_postings_per_s"]),
        "pg_bound_ratio": bound_ratio(postings["pg_bound_postings_per_s"]),
        # Storing the postings' rows alone, with their indexes and no ledger work at all.
        "rows_floor": {**floor, "ratio": bound_ratio(floor["postings_per_s"])},
        "ratio_to_batched_insert": round(
            postings["postings_per_s"] / copy["batched_insert_rows_per_s"], 3
        ),
        "target": f"ratio >= {TARGETS['postings_ratio']}",
        "pass": ratio_b >= TARGETS["postings_ratio"],
    }
    c = {
        **verify,
        "ratio": round(ratio_c, 3),
        "target": f"ratio >= {TARGETS['verify_ratio']}",
        "pass": ratio_c >= TARGETS["verify_ratio"],
    }
    return b, c


def measure_audit(
    args: argparse.Namespace,
    urls: Any,
    settings: Any,
    timebank: str,
    env: dict[str, str],
    servers: list[Server],
) -> dict[str, Any]:
    from bench.audit import bench_audit_verify, bench_http_export, bench_proofs, fill_book

    log(f"(d) inclusion proofs in a tree of {args.tree_size} leaves (subtrees stored by COPY)")
    proofs = run_async(bench_proofs(urls, size=args.tree_size, seconds=args.proof_seconds))
    log(f"(e) {INPROC_BOOK!r} grown to {args.export_entries} entries")
    entries = run_async(fill_book(urls, settings, book=INPROC_BOOK, entries=args.export_entries))
    server, _, base = serve_ledger("ledger-export", timebank, env, servers)
    log(f"(e) its export over HTTP from {base}, with and without receipts")
    try:
        token = create_token(timebank, env)
        http = bench_http_export(base, token, book=INPROC_BOOK, entries=entries)
    finally:
        log(f"export server stopped (exit {server.stop()})")
    log(f"(e) `audit verify` of its exports with receipts (here, then {args.jobs} processes) and "
        "without, vs read + sha256")  # fmt: skip
    verify = bench_audit_verify(urls, settings, book=INPROC_BOOK, jobs=args.jobs)
    baseline = verify["verify_entries_per_s"]
    bare = verify["verify_without_receipts_entries_per_s"]
    bare_http = http["without_receipts_entries_per_s"]
    return {
        "proofs": {**proofs, "ratio": round(proofs["proofs_per_s"] / proofs["lookups_per_s"], 3)},
        "audit_verify": {
            **verify,
            "ratio": round(baseline / verify["baseline_entries_per_s"], 4),
            "jobs_ratio": round(verify["verify_jobs_entries_per_s"] / baseline, 3),
            "without_receipts_ratio": round(bare / baseline, 2),
            "without_receipts_ratio_to_read": round(
                bare / verify["baseline_without_receipts_entries_per_s"], 3
            ),
            "target": f">= {TARGETS['audit_verify_entries_per_s']:,} entries/s without receipts",
            "pass": bare >= TARGETS["audit_verify_entries_per_s"],
        },
        "export": {
            **http,
            "ratio": round(bare_http / http["with_receipts_entries_per_s"], 2),
            "target": f">= {TARGETS['export_entries_per_s']:,} entries/s without receipts",
            "pass": bare_http >= TARGETS["export_entries_per_s"],
        },
    }


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _http_cell(label: str, r: dict[str, Any]) -> str:
    return f"{label}{r['rps']:.0f} rps  p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms"


def _http_detail(r: dict[str, Any]) -> str:
    return (
        f"{r['requests']} requests, {r['errors']} errors, mean {r['mean_ms']:.1f} ms, "
        f"p90 {r['p90_ms']:.1f} ms, max {r['max_ms']:.1f} ms; body {r['request_bytes']} B in, "
        f"{r['response_bytes']} B out"
    )


def render(summary: dict[str, Any]) -> str:
    m, a, b, c = summary["machine"], summary["http"], summary["postings"], summary["verify"]
    pg = summary["postgres"]
    lines = [
        f"Timebank ledger benchmark  {summary['started_at']}  ({summary['seconds']:.0f} s)",
        f"machine : {m['cpu_model']}, {m['cpu_count']} cores ({m['cpus_usable']} usable), "
        f"Python {m['python']}",
        f"postgres: {pg['version']}",
        f"          fsync={pg['fsync']} synchronous_commit={pg['synchronous_commit']} "
        f"shared_buffers={pg['shared_buffers']}; one durable commit {pg['commit_ms_median']} ms "
        "(median; embedded, Unix socket)",
        "",
    ]
    la, ba = a["ledger"], a["bare"]
    rows = [
        ("figure", "ledger", "baseline", "ratio", "target", "result"),
        (
            f"(a) HTTP transfers, {a['connections']} conns",
            _http_cell("", la),
            _http_cell("bare FastAPI ", ba),
            f"{a['ratio']:.3f}",
            f">= {TARGETS['http_ratio']} & p99 <= {TARGETS['http_p99_ms']:.0f} ms",
            verdict(a["pass"]),
        ),
        (
            "(a') same, receipts off",
            _http_cell("", a["ledger_no_receipts"]),
            _http_cell("bare FastAPI ", ba),
            f"{a['ledger_no_receipts']['rps'] / ba['rps']:.3f}" if ba["rps"] else "-",
            "-",
            "-",
        ),
        (
            "(b) postings in process",
            f"{b['ledger']['postings_per_s']:.0f} postings/s",
            f"asyncpg COPY {b['copy_baseline']['rows_per_s']:.0f} rows/s",
            f"{b['ratio']:.3f}",
            f">= {TARGETS['postings_ratio']}",
            verdict(b["pass"]),
        ),
        (
            "(c) verify",
            f"{c['verify_entries_per_s']:.0f} entries/s",
            f"fetch+sha256 {c['baseline_entries_per_s']:.0f} entries/s",
            f"{c['ratio']:.3f}",
            f">= {TARGETS['verify_ratio']}",
            verdict(c["pass"]),
        ),
        *audit_rows(summary["audit"]),
    ]
    lines += table(rows)
    lines += [
        "",
        f"(a) {a['client']} HTTP/1.1 keep-alive client, {a['connections']} connections, "
        f"{a['warmup_s']:g}s warm-up + {a['duration_s']:g}s measured per server (the ledger's "
        "in two windows, see (a')), same process for all; uvicorn --workers "
        f"{a.get('workers', 1)}, log_level "
        "warning, no access log, uvloop + httptools",
        f"    ledger: {_http_detail(la)}; mean batch {la['mean_batch_size_incl_warmup']}, "
        f"{la['batch_rereads']} rereads and {la['batch_relocks']} relocks in "
        f"{la['batches_incl_warmup']} batches",
        f"    bare  : {_http_detail(ba)}",
        f"    CPU % of one core while measured: ledger server {la['cpu_pct'].get('server')}, "
        f"postgres {la['cpu_pct'].get('postgres')}, client {la['client_cpu_pct']:.0f} | "
        f"bare server {ba['cpu_pct'].get('server')}, client {ba['client_cpu_pct']:.0f}",
    ]
    act = la.get("pg_activity") or {}
    lines.append(
        f"    ledger's app-role sessions in pg_stat_activity ({act.get('samples')} samples, % of "
        f"time): {act.get('pct_of_samples')}; waits while active {act.get('active_wait_events')}"
    )
    if max(la["client_cpu_pct"], ba["client_cpu_pct"]) > 80:
        lines.append(
            "    WARNING: the load generator used most of a core; these figures measure the client"
        )
    if la["first_error"] or ba["first_error"]:
        lines.append(f"    first error: ledger {la['first_error']} bare {ba['first_error']}")
    rc, lp = a["receipts"], a["ledger_no_receipts"]
    lines += [
        f"(a') receipts off: {_http_detail(lp)}; CPU % server {lp['cpu_pct'].get('server')}, "
        f"postgres {lp['cpu_pct'].get('postgres')}",
        f"    receipts: a two-leg transfer's receipt is {rc['bytes']} B (QR {rc['qr']}); "
        f"throughput with / without receipts: {rc['rps_ratio_with_to_without']}",
    ]
    bl, bc = b["ledger"], b["copy_baseline"]
    lines += [
        f"(b) {bl['ok']}/{bl['postings']} two-leg transfers via service.post_transaction with "
        f"Idempotency refs, {bl['inflight']} in flight, {bl['seconds']} s; {bl['batches']} "
        f"batches, mean {bl['mean_batch_size']} (max {bl['max_batch_size']}); CPU %: bench "
        f"process {bl['cpu_pct'].get('bench')}, postgres {bl['cpu_pct'].get('postgres')}",
        f"    baseline: {bc['how']}; {bc['rows']} rows, body {bc['mean_body_bytes']} B; "
        f"runs {bc['seconds']} s",
        f"    batched INSERTs (executemany) of the same rows: {bc['batched_insert_rows_per_s']:.0f}"
        f" rows/s; postings/s against them {b['ratio_to_batched_insert']}",
        f"    the same postings' entry, leg and key rows alone, COPY'd into indexed copies of "
        f"their tables: {b['rows_floor']['postings_per_s']:.0f} postings/s, ratio "
        f"{b['rows_floor']['ratio']} (no rule, hash, balance, guard or answer)",
        f"    CPU a posting, and the most it allows on a core of its own with the other free: "
        f"this process {bl['own_us_per_posting']} us ({bl['own_bound_postings_per_s']} "
        f"postings/s, ratio {b['own_bound_ratio']}); PostgreSQL's sessions "
        f"{bl['pg_sessions_us_per_posting']} us ({bl['pg_bound_postings_per_s']} postings/s, "
        f"ratio {b['pg_bound_ratio']})",
        f"    wall s in sequencer steps (wrapped in this process): {bl['batch_split_s']['steps']}",
        f"    wall s awaiting each statement: {bl['batch_split_s']['statements']}",
        f"(c) {c['entries']} entries; verify runs {c['verify_seconds']} s; baseline runs "
        f"{c['baseline_seconds']} s; hash alone {c['hash_only_entries_per_s']:.0f} entries/s; "
        f"verify's own two queries alone, no checks: "
        f"{c['verify_queries_only_entries_per_s']:.0f} entries/s",
        f"    {c['how']}",
        *audit_details(summary["audit"]),
    ]
    return "\n".join(lines)


def table(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows in columns, the first a header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def audit_rows(audit: dict[str, Any]) -> list[tuple[str, ...]]:
    """(d) and (e) as rows of the table."""
    d, e, x = audit["proofs"], audit["audit_verify"], audit["export"]
    target = f">= {TARGETS['export_entries_per_s']:,}/s"
    return [
        (
            f"(d) inclusion proofs, {d['tree_size']:,} leaves",
            f"{d['proofs_per_s']:.0f} proofs/s",
            f"PK lookup {d['lookups_per_s']:.0f} rows/s",
            f"{d['ratio']:.3f}",
            "-",
            "-",
        ),
        (
            f"(e) export over HTTP, {x['entries']:,}, no receipts",
            f"{x['without_receipts_entries_per_s']:.0f} entries/s",
            f"with receipts {x['with_receipts_entries_per_s']:.0f} entries/s",
            f"{x['ratio']:.2f}",
            target,
            verdict(x["pass"]),
        ),
        (
            "(e) audit verify, no receipts",
            f"{e['verify_without_receipts_entries_per_s']:.0f} entries/s",
            f"with receipts {e['verify_entries_per_s']:.0f} entries/s",
            f"{e['without_receipts_ratio']:.2f}",
            target,
            verdict(e["pass"]),
        ),
        (
            f"(e) audit verify, receipts, --jobs {e['jobs']}",
            f"{e['verify_jobs_entries_per_s']:.0f} entries/s",
            f"--jobs 1 {e['verify_entries_per_s']:.0f} entries/s",
            f"{e['jobs_ratio']:.2f}",
            "-",
            "-",
        ),
        (
            "(e) audit verify, receipts, --jobs 1",
            f"{e['verify_entries_per_s']:.0f} entries/s",
            f"read+sha256 {e['baseline_entries_per_s']:.0f} lines/s",
            f"{e['ratio']:.4f}",
            "-",
            "-",
        ),
    ]


def audit_details(audit: dict[str, Any]) -> list[str]:
    """(d) and (e) in words, under the table."""
    d, e, x = audit["proofs"], audit["audit_verify"], audit["export"]
    return [
        f"(d) {d['proofs']} proofs ({d['proof_hashes']} hashes each, {d['proofs_verified']} "
        f"checked against the root); {d['subtrees_stored']:,} subtrees hashed in "
        f"{d['hash_seconds']} s, COPY {d['copy_seconds']} s; {d['how']}",
        f"(e) export: {x['with_receipts_bytes']:,} B with receipts (runs "
        f"{x['with_receipts_seconds']} s), {x['without_receipts_bytes']:,} B without (runs "
        f"{x['without_receipts_seconds']} s); {x['how']}",
        f"    in process, to a file: {e['export_entries_per_s']:.0f} entries/s with receipts, "
        f"{e['export_without_receipts_entries_per_s']:.0f} without (integrate "
        f"{e['integrate_seconds']} s first)",
        f"    verify: {e['entries']} entries; with receipts {e['file_bytes']:,} B, runs "
        f"{e['verify_seconds']} s; without {e['file_without_receipts_bytes']:,} B, runs "
        f"{e['verify_without_receipts_seconds']} s, "
        f"{e['without_receipts_ratio_to_read']:.3f} of read+sha256 of that file "
        f"({e['baseline_without_receipts_entries_per_s']:.0f} lines/s); {e['how']}",
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    if args.profile and shutil.which("py-spy") is None:
        log("--profile needs py-spy on PATH (.venv/bin/pip install py-spy)")
        return 2
    RESULTS.mkdir(exist_ok=True)
    timebank = shutil.which("timebank") or str(Path(sys.executable).parent / "timebank")
    started = time.perf_counter()
    started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    data_dir = Path(tempfile.mkdtemp(prefix="tb-bench-"))
    pgdata = data_dir / "pgdata"
    servers: list[Server] = []
    summary: dict[str, Any] = {"started_at": started_at}

    import app.db
    from app.config import Settings

    try:
        # Start the embedded PostgreSQL here first: this process holds a handle to it from start
        # to end, and the servers started below reuse it through TIMEBANK_DATA_DIR.
        settings = Settings(data_dir=data_dir, database_url=None, migration_database_url=None)
        log(f"pid {os.getpid()}; embedded PostgreSQL in {data_dir}")
        urls = app.db.resolve_database(settings)
        from bench.inprocess import server_facts

        summary["machine"] = machine_facts()
        summary["postgres"] = run_async(server_facts(urls.app))
        env = child_env(data_dir, args.server_log_level)
        parts = set(args.only or ("http", "inprocess", "audit"))
        if args.scale is not None:
            from bench.scale import measure_scale

            assert app.db._embedded is not None
            summary["scale"] = measure_scale(
                args, timebank, env, pgdata, servers, urls, settings, app.db._embedded.superuser_url
            )
            parts = set()
        if args.stats is not None:
            from app import migrate as migrations
            from bench import stats as stats_bench

            run_async(migrations.upgrade(urls.owner, settings.app_role))
            summary["stats"] = run_async(
                stats_bench.measure(urls, settings, args.stats, args.stats_samples)
            )
            parts = set()
        if "http" in parts:
            summary["http"] = measure_http(args, timebank, env, pgdata, servers, urls, settings)
        if parts & {"inprocess", "audit"}:  # (d, e) read the book that (b) writes
            from app import migrate as migrations

            run_async(migrations.upgrade(urls.owner, settings.app_role))  # (a) left it to serve
            summary["postings"], summary["verify"] = measure_inprocess(args, urls, settings, pgdata)
        if "audit" in parts:
            summary["audit"] = measure_audit(args, urls, settings, timebank, env, servers)
    except BaseException as exc:
        log(f"failed: {type(exc).__name__}: {exc}")
        for server in servers:
            if server.proc is not None and server.proc.returncode not in (None, 0, -15):
                log(f"{server.name} log tail:\n{server.log_tail()}")
        raise
    finally:
        for server in servers:
            server.stop()
        if app.db._embedded is not None:
            app.db._embedded.stop()
        if force_stop_postgres(pgdata):
            shutil.rmtree(data_dir, ignore_errors=True)
            log("servers and embedded PostgreSQL stopped; temporary directory removed")
        else:
            log(f"WARNING: PostgreSQL of {pgdata} still running; directory kept")

    summary["seconds"] = round(time.perf_counter() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    if args.scale is not None or args.stats is not None:
        from bench.scale import render as render_scale
        from bench.stats import render as render_stats

        if "scale" in summary:
            print(render_scale(summary["scale"]))
        if "stats" in summary:
            print(render_stats(summary["stats"]))
    elif args.only:  # a partial run: the table needs every part but (d) and (e)
        if "audit" in summary:
            rows = [("figure", "ledger", "baseline", "ratio", "target", "result")]
            print("\n".join(table([*rows, *audit_rows(summary["audit"])])))
            print("\n".join(audit_details(summary["audit"])))
        for part in ("http", "postings", "verify"):
            if part in summary:
                print(
                    part,
                    json.dumps(
                        {
                            k: v
                            for k, v in summary[part].items()
                            if "ratio" in k or k in ("pass", "rps", "postings_per_s")
                        }
                    ),
                )
    else:
        print(render(summary))
    print()
    print(json.dumps(summary, indent=2))
    shown = args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output
    log(f"wrote {shown}")
    return 0
