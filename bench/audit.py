"""(d) inclusion proofs/s from the stored subtrees of a 1,000,000-entry tree, against primary-key
lookups of single subtrees on the same table; (e) the auditor's export and `timebank audit
verify` on the (b) book grown to `--export-entries`: the export over HTTP with and without
receipts, and the offline verification of each file (receipts checked here, or by `--jobs`
processes), against the export and verification with receipts (what they were before issue
23) and against reading the file and hashing each line with SHA-256.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, BinaryIO

import asyncpg
import httpx

from app.audit import merkle, tlog
from app.audit.export import jsonl, plan_export
from app.audit.export_lines import lines_before, split_export
from app.audit.offline import ExportReport, verify_export
from app.audit.service import AuditLog
from app.config import Settings
from app.db import DatabaseUrls
from app.runtime import Runtime

PROOF_BOOK = "bench_tree"  # subtrees only: the proofs read nothing else


def synthetic_levels(size: int) -> list[list[bytes]]:
    """Every complete subtree of a tree of `size` synthetic leaves, level by level."""
    level = [hashlib.sha256(b"\x00" + i.to_bytes(8, "big")).digest() for i in range(size)]
    levels = [level]
    while len(level) > 1:
        level = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        levels.append(level)
    return levels


async def bench_proofs(
    urls: DatabaseUrls, *, size: int = 1_000_000, seconds: float = 3.0
) -> dict[str, Any]:
    """Build the subtree table of `size` synthetic leaves with COPY, then time random
    inclusion proofs (tlog.from_stored: one query each) and single-row lookups."""
    started = time.perf_counter()
    levels = synthetic_levels(size)
    hashed = time.perf_counter()
    conn = await asyncpg.connect(urls.app)
    try:
        rows = (
            (PROOF_BOOK, level, index, value)
            for level, hashes in enumerate(levels)
            for index, value in enumerate(hashes)
        )
        await conn.copy_records_to_table(
            "merkle_subtrees", records=rows, columns=["book_code", "level", "index", "hash"]
        )
        await conn.execute("ANALYZE merkle_subtrees")
        built = time.perf_counter()
        root = merkle.root(size, lambda s, e: levels[(e - s).bit_length() - 1][s // (e - s)])
        rng = random.Random(1)
        gc.collect()
        proofs, checked, t0 = 0, 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            index = rng.randrange(size)
            path = await tlog.from_stored(
                conn, PROOF_BOOK, functools.partial(merkle.inclusion_proof, index, size)
            )
            proofs += 1
            if proofs % 50 == 1:  # the figure is of proofs that are right
                if not merkle.verify_inclusion(levels[0][index], index, size, path, root):
                    raise RuntimeError(f"inclusion proof of leaf {index} does not verify")
                checked += 1
        proof_s = time.perf_counter() - t0
        lookups, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            await conn.fetchval(
                "SELECT hash FROM merkle_subtrees WHERE book_code = $1 AND level = 0 "
                "AND index = $2",
                PROOF_BOOK,
                rng.randrange(size),
            )
            lookups += 1
        lookup_s = time.perf_counter() - t0
    finally:
        await conn.close()
    return {
        "tree_size": size,
        "subtrees_stored": sum(len(hashes) for hashes in levels),
        "hash_seconds": round(hashed - started, 2),
        "copy_seconds": round(built - hashed, 2),
        "proofs": proofs,
        "proofs_verified": checked,
        "proof_hashes": len(merkle.inclusion_proof(0, size, lambda s, e: b"\0" * 32)),
        "proofs_per_s": round(proofs / proof_s, 1),
        "lookups_per_s": round(lookups / lookup_s, 1),
        "how": (
            "tlog.from_stored(inclusion_proof(random leaf, 1,000,000)): the subtrees a proof "
            "needs in one SELECT, one connection, sequential; baseline: SELECT of one subtree "
            "by primary key on the same table, same connection"
        ),
    }


async def fill_book(urls: DatabaseUrls, settings: Settings, *, book: str, entries: int) -> int:
    """Post two-leg transfers to (b)'s book, between its issuance account and its members, as
    (b) does, until it holds `entries` entries; how many it holds."""
    from bench.inprocess import _post_all, _requests

    conn = await asyncpg.connect(urls.app)
    try:
        head = await conn.fetchval(
            "SELECT max(seq) FROM journal_entries WHERE book_code = $1", book
        )
        accounts = await conn.fetch(
            "SELECT id::text, owner FROM accounts WHERE book_code = $1 ORDER BY created_at", book
        )
    finally:
        await conn.close()
    missing = entries - (head or 0)
    if missing <= 0:
        return int(head or 0)
    issuance = next(a["id"] for a in accounts if a["owner"] == "system:issuance")
    members = [a["id"] for a in accounts if a["owner"].startswith("person:")]
    runtime = await Runtime.open(urls.app, settings)
    try:
        requests = _requests(book, issuance, members, str(uuid.uuid4()), missing, "fill")
        _, statuses = await _post_all(runtime, book, requests, 2_000)
    finally:
        await runtime.close()
    if statuses != {201: missing}:
        raise RuntimeError(f"filling {book!r}: {statuses}")
    return entries


def http_export(base: str, token: str, book: str, receipts: bool) -> tuple[float, int]:
    """Seconds and bytes of one export streamed to nowhere, from the request to the last byte."""
    params = {"receipts": "true" if receipts else "false"}
    headers = {"Authorization": f"Bearer {token}"}
    size = 0
    with httpx.Client(timeout=600.0) as client:
        started = time.perf_counter()
        path = f"{base}/v1/books/{book}/export"
        with client.stream("GET", path, params=params, headers=headers) as answer:
            if answer.status_code != 200:
                raise RuntimeError(f"export: {answer.status_code} {answer.read()[:200]!r}")
            for chunk in answer.iter_raw(1 << 20):
                size += len(chunk)
        return time.perf_counter() - started, size


def bench_http_export(base: str, token: str, *, book: str, entries: int) -> dict[str, Any]:
    """The book's export over HTTP with receipts (twice) and without (three times, alternating),
    after one checkpoint covers the book (so that no request integrates or signs one)."""
    signed = httpx.post(
        f"{base}/v1/books/{book}/checkpoints",
        headers={"Authorization": f"Bearer {token}"},
        timeout=600.0,
    )
    if signed.status_code not in (200, 201):
        raise RuntimeError(f"checkpoint: {signed.status_code} {signed.text[:200]}")
    runs: dict[bool, list[float]] = {True: [], False: []}
    sizes: dict[bool, int] = {}
    for receipts in (True, False, False, True, False):
        seconds, sizes[receipts] = http_export(base, token, book, receipts)
        runs[receipts].append(seconds)
    with_s, without_s = statistics.median(runs[True]), statistics.median(runs[False])
    return {
        "entries": entries,
        "with_receipts_seconds": [round(t, 3) for t in runs[True]],
        "without_receipts_seconds": [round(t, 3) for t in runs[False]],
        "with_receipts_bytes": sizes[True],
        "without_receipts_bytes": sizes[False],
        "with_receipts_entries_per_s": round(entries / with_s, 1),
        "without_receipts_entries_per_s": round(entries / without_s, 1),
        "how": (
            "GET /v1/books/{code}/export?receipts=true|false from `timebank serve --workers 1` "
            "(its follower running), streamed by httpx and dropped, from the request to the "
            "last byte; medians of 2 and 3 runs, alternating"
        ),
    }


async def export_book(
    urls: DatabaseUrls, settings: Settings, *, book: str, out: BinaryIO, receipts: bool = True
) -> dict[str, Any]:
    """Write the export of `book` (JSON Lines, with or without receipts), as the export route
    streams it."""
    audit = await AuditLog.open(urls.app, settings)
    try:
        started = time.perf_counter()
        async with audit.pool.acquire() as conn:
            await tlog.integrate(conn, book)
        integrated = time.perf_counter()
        plan = await plan_export(audit, book, 1, None, True, receipts)
        async for chunk in jsonl(audit, plan):
            out.write(chunk)
        exported = time.perf_counter()
    finally:
        await audit.close()
    return {
        "entries": plan.to_seq,
        "integrate_seconds": round(integrated - started, 2),
        "export_seconds": round(exported - integrated, 2),
        "export_entries_per_s": round(plan.to_seq / (exported - integrated), 1),
    }


def verify_file(path: Path, jobs: int) -> tuple[float, ExportReport]:
    """Seconds `timebank audit verify` takes on the file, without start-up and progress bar:
    the same reading, the same heap settings, the same checks."""
    from bench.inprocess import _serving_heap

    gc.collect()
    with _serving_heap():
        started = time.perf_counter()
        trailer, start = split_export(path)
        report = verify_export(lines_before(path, start), trailer, jobs=jobs)
        return time.perf_counter() - started, report


def read_and_hash(path: Path) -> float:
    gc.collect()
    started = time.perf_counter()
    for line in path.read_bytes().split(b"\n"):
        hashlib.sha256(line).digest()
    return time.perf_counter() - started


def bench_audit_verify(
    urls: DatabaseUrls, settings: Settings, *, book: str, jobs: int, reps: int = 3
) -> dict[str, Any]:
    """Export `book` to two files, with and without receipts; time the offline verifier on
    each (with receipts: here, then with `jobs` processes), against reading the file and
    hashing each line."""
    from bench.run import run_async

    with tempfile.TemporaryDirectory(prefix="tb-bench-export-") as folder:
        signed, bare = Path(folder) / "signed.jsonl", Path(folder) / "bare.jsonl"
        with signed.open("wb") as out:
            exported = run_async(export_book(urls, settings, book=book, out=out))
        with bare.open("wb") as out:
            exported_bare = run_async(
                export_book(urls, settings, book=book, out=out, receipts=False)
            )
        entries = exported["entries"]
        # Receipts cost about 100 µs an entry here: one run each; the rest `reps` runs.
        verify_s, report = verify_file(signed, 1)
        jobs_s, jobs_report = verify_file(signed, jobs)
        bare_runs = [verify_file(bare, 1) for _ in range(reps)]
        if not (report.receipts == jobs_report.receipts == entries) or bare_runs[0][1].receipts:
            raise RuntimeError("the files are not what they should be")
        baseline_s = statistics.median(read_and_hash(signed) for _ in range(reps))
        bare_baseline_s = statistics.median(read_and_hash(bare) for _ in range(reps))
        sizes = signed.stat().st_size, bare.stat().st_size
    bare_s = statistics.median(seconds for seconds, _ in bare_runs)
    return {
        **exported,
        "export_without_receipts_entries_per_s": exported_bare["export_entries_per_s"],
        "file_bytes": sizes[0],
        "file_without_receipts_bytes": sizes[1],
        "verify_seconds": [round(verify_s, 3)],
        "verify_entries_per_s": round(entries / verify_s, 1),
        "jobs": jobs,
        "verify_jobs_entries_per_s": round(entries / jobs_s, 1),
        "verify_without_receipts_seconds": [round(seconds, 3) for seconds, _ in bare_runs],
        "verify_without_receipts_entries_per_s": round(entries / bare_s, 1),
        "baseline_entries_per_s": round(entries / baseline_s, 1),
        "baseline_without_receipts_entries_per_s": round(entries / bare_baseline_s, 1),
        "how": (
            "what `timebank audit verify` runs (app.audit.export_lines reading the file, "
            "app.audit.offline.verify_export, the heap settled; no start-up, no progress bar) on "
            "the exports of the (b) book: strict JSON, JCS + SHA-256, the chain, the ledger "
            "rules, the Merkle root, the checkpoint, and each receipt where the file has them "
            "(one Ed25519 verification an entry); baseline: read the same file and SHA-256 "
            "each line"
        ),
    }
