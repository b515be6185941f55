"""(d) inclusion proofs/s from the stored subtrees of a 1,000,000-entry tree, against primary-key
lookups of single subtrees on the same table; (e) `timebank audit verify` entries/s on an export
of the (b) book, against reading the same file and hashing each line with SHA-256.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO

import asyncpg

from app.audit import merkle, tlog
from app.audit.export import jsonl, plan_export
from app.audit.offline import verify_export
from app.audit.service import AuditLog
from app.config import Settings
from app.db import DatabaseUrls

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


async def export_book(
    urls: DatabaseUrls, settings: Settings, *, book: str, out: BinaryIO
) -> dict[str, Any]:
    """Write the export of `book` (JSON Lines with receipts), as the export route streams it."""
    audit = await AuditLog.open(urls.app, settings)
    try:
        started = time.perf_counter()
        async with audit.pool.acquire() as conn:
            await tlog.integrate(conn, book)
        integrated = time.perf_counter()
        plan = await plan_export(audit, book, 1, None, True)
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


def bench_audit_verify(
    urls: DatabaseUrls, settings: Settings, *, book: str, reps: int = 1
) -> dict[str, Any]:
    """Export `book` to a file, then time the offline verifier against reading the file and
    hashing each line."""
    from bench.run import run_async

    with tempfile.TemporaryDirectory(prefix="tb-bench-export-") as folder:
        path = Path(folder) / "export.jsonl"
        with path.open("wb") as out:
            exported = run_async(export_book(urls, settings, book=book, out=out))
        entries = exported["entries"]
        verify_times, baseline_times = [], []
        for _ in range(reps):
            gc.collect()
            t0 = time.perf_counter()
            lines = path.read_bytes().split(b"\n")
            verify_export(lines[:-2], lines[-2])
            verify_times.append(time.perf_counter() - t0)
            gc.collect()
            t0 = time.perf_counter()
            for line in path.read_bytes().split(b"\n"):
                hashlib.sha256(line).digest()
            baseline_times.append(time.perf_counter() - t0)
        size = path.stat().st_size
    verify_s, baseline_s = statistics.median(verify_times), statistics.median(baseline_times)
    return {
        **exported,
        "file_bytes": size,
        "verify_seconds": [round(t, 3) for t in verify_times],
        "verify_entries_per_s": round(entries / verify_s, 1),
        "baseline_entries_per_s": round(entries / baseline_s, 1),
        "how": (
            "app.audit.offline.verify_export (what `timebank audit verify` runs, without the "
            "progress bar) on the export of the (b) book: strict JSON, JCS + SHA-256, one "
            "Ed25519 receipt verification per entry, chain, ledger rules, Merkle root, "
            "checkpoint; baseline: read the same file and SHA-256 each line"
        ),
    }
