"""Prometheus metrics (multi-process aware when PROMETHEUS_MULTIPROC_DIR is set)."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter(
    "timebank_http_requests_total",
    "HTTP requests by route and status",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "timebank_http_request_duration_seconds",
    "HTTP request latency by route",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
POSTINGS = Counter("timebank_postings_total", "Ledger postings by result", ["result"])
BATCH_SIZE = Histogram(
    "timebank_ledger_batch_size",
    "Postings per group-commit batch",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
)

# Batches read again (their guarded write refused because something they read moved, or
# what the sequencer remembered could not decide them), and batches written under locks (after
# repeated refusals or any other write error, or from the start after a recent refusal): a
# measure of contention between server processes on a book.
BATCH_RELOCKS = Counter(
    "timebank_ledger_batch_relocks_total",
    "Group-commit batches written under locks, by reason: moved (after refused guarded writes),"
    " error (after another error), contended (from the start: a recent write of the book was"
    " refused)",
    ["reason"],
)
BATCH_REREADS = Counter(
    "timebank_ledger_batch_rereads_total",
    "Batches read again: their guarded write was refused because what they read had moved, or"
    " what the sequencer remembered of the book could not decide them",
)


def render() -> tuple[bytes, str]:
    """The exposition text for this process, or for all workers in multi-process mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
