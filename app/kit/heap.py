"""The cyclic garbage collector as a long-running process wants it (pure: no I/O)."""

from __future__ import annotations

import gc

# A serving process's cyclic collector: young passes every 50,000 allocations rather than 700.
SERVING_GC_THRESHOLD = (50_000, 20, 20)


def settle_heap() -> None:
    """Once a serving process has started: objects alive now live as long as the process, so
    the cyclic collector stops walking them (its full passes showed as tail latency)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVING_GC_THRESHOLD)
