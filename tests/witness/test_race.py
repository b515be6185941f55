"""tlog-witness's race: requests from the same old size to different sizes, at once, in threads
and in processes. Exactly one is cosigned; every other gets a 409 naming the winner's size,
and the stored size is the winner's (never rolled back)."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from multiprocessing.synchronize import Barrier as ProcessBarrier
from pathlib import Path
from queue import Queue
from typing import Any

from app.witness.config import WitnessDir, load_config, load_key
from app.witness.protocol import authenticate, parse_request
from app.witness.store import Cosigned, WitnessStore
from tests.witness.conftest import NOW, Witnessed, client_of

START = 8
RACERS = 6


def _outcome(root: Path, body: bytes) -> tuple[str, int]:
    """("cosigned", size) or (str(status), stored size) of one submission."""
    files = WitnessDir(root)
    config = load_config(files)
    key = load_key(files, config.name)
    submission = authenticate(parse_request(body), config.log_keys())
    outcome = WitnessStore(files.db_path).submit(submission, body, key, lambda: NOW)
    if isinstance(outcome, Cosigned):
        return "cosigned", submission.checkpoint.size
    return str(outcome.refusal.status), outcome.stored.size


def _submit_at_barrier(root: Path, body: bytes, barrier: Any, results: Any) -> None:
    files = WitnessDir(root)
    config = load_config(files)
    key = load_key(files, config.name)
    submission = authenticate(parse_request(body), config.log_keys())
    store = WitnessStore(files.db_path)
    barrier.wait()
    outcome = store.submit(submission, body, key, lambda: NOW)
    if isinstance(outcome, Cosigned):
        results.put(("cosigned", submission.checkpoint.size))
    else:
        results.put((str(outcome.refusal.status), outcome.stored.size))


def _check(results: list[tuple[str, int]], root: Path) -> None:
    winners = [size for kind, size in results if kind == "cosigned"]
    assert len(winners) == 1, results
    assert sorted(results) == sorted(
        [("cosigned", winners[0])] + [("409", winners[0])] * (RACERS - 1)
    )
    assert WitnessStore(root / "witness.db").latest_sizes() == {
        load_config(WitnessDir(root)).logs[0].origin: winners[0]
    }


def _bodies(witnessed: Witnessed) -> list[bytes]:
    return [witnessed.log.body(START, START + 1 + i) for i in range(RACERS)]


def _start_at(witnessed: Witnessed) -> None:
    assert _outcome(witnessed.root, witnessed.log.body(0, START)) == ("cosigned", START)


def test_threads_racing_from_one_old_size(witnessed: Witnessed) -> None:
    _start_at(witnessed)
    barrier = threading.Barrier(RACERS)
    results: Queue[tuple[str, int]] = Queue()
    threads = [
        threading.Thread(target=_submit_at_barrier, args=(witnessed.root, body, barrier, results))
        for body in _bodies(witnessed)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _check([results.get_nowait() for _ in range(RACERS)], witnessed.root)


def test_processes_racing_from_one_old_size(witnessed: Witnessed) -> None:
    _start_at(witnessed)
    context = multiprocessing.get_context("spawn")
    barrier: ProcessBarrier = context.Barrier(RACERS)
    results = context.Queue()
    processes = [
        context.Process(target=_submit_at_barrier, args=(witnessed.root, body, barrier, results))
        for body in _bodies(witnessed)
    ]
    for process in processes:
        process.start()
    try:
        found = [results.get(timeout=60) for _ in range(RACERS)]
    finally:
        for process in processes:
            process.join(timeout=30)
    assert [p.exitcode for p in processes] == [0] * RACERS
    _check(found, witnessed.root)


async def test_requests_racing_through_the_app(witnessed: Witnessed) -> None:
    _start_at(witnessed)
    async with client_of(witnessed.root) as client:
        responses = await asyncio.gather(
            *(client.post("/add-checkpoint", content=body) for body in _bodies(witnessed))
        )
    results = [
        ("cosigned", START + 1 + i) if r.status_code == 200 else (str(r.status_code), int(r.text))
        for i, r in enumerate(responses)
    ]
    _check(results, witnessed.root)
    assert all(
        r.headers["content-type"] == "text/x.tlog.size" for r in responses if r.status_code == 409
    )
