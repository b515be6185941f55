"""The ledger's Prometheus metrics: postings, group-commit batches, contention between
processes."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
