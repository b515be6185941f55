"""A closed-loop HTTP/1.1 load generator: N keep-alive connections, one request in flight each.

The default client ("raw") writes pre-formatted requests on asyncio streams and reads the
answer by Content-Length. It costs several times less CPU per request than httpx, which matters
on a small box where the client shares the cores with the server and PostgreSQL. Both servers
of a comparison are always driven by the same client with the same settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

# (connection index, request index) -> (path, extra headers, body)
RequestFactory = Callable[[int, int], tuple[str, dict[str, str], bytes]]


@dataclass
class LoadResult:
    """What one measured window saw (warm-up excluded)."""

    connections: int
    duration_s: float
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    request_bytes: int
    response_bytes: int
    client_cpu_pct: float
    statuses: dict[str, int] = field(default_factory=dict)
    first_error: str | None = None
    companion: Any = None
    # Every latency of the window, sorted (seconds): windows can be merged (merge_results).
    latencies: list[float] = field(default_factory=list, repr=False)

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "latencies"}


def merge_results(results: list[LoadResult]) -> LoadResult:
    """One result for several measured windows of the same server and load."""
    ordered = sorted(t for r in results for t in r.latencies)
    duration = sum(r.duration_s for r in results)
    statuses: dict[str, int] = {}
    for r in results:
        for status, n in r.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    return LoadResult(
        connections=results[0].connections,
        duration_s=duration,
        requests=len(ordered),
        errors=sum(r.errors for r in results),
        rps=len(ordered) / duration,
        p50_ms=_percentile(ordered, 0.50) * 1000,
        p90_ms=_percentile(ordered, 0.90) * 1000,
        p99_ms=_percentile(ordered, 0.99) * 1000,
        max_ms=(ordered[-1] if ordered else float("nan")) * 1000,
        mean_ms=(statistics.fmean(ordered) if ordered else float("nan")) * 1000,
        request_bytes=results[-1].request_bytes,
        response_bytes=results[-1].response_bytes,
        client_cpu_pct=sum(r.client_cpu_pct * r.duration_s for r in results) / duration,
        statuses=statuses,
        first_error=next((r.first_error for r in results if r.first_error), None),
        companion=next((r.companion for r in results if r.companion is not None), None),
        latencies=ordered,
    )


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class _Window:
    """Shared state of one run: where the measured window starts and ends."""

    def __init__(self, warmup_s: float, duration_s: float) -> None:
        now = time.perf_counter()
        self.measure_from = now + warmup_s
        self.stop_at = self.measure_from + duration_s
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}
        self.request_bytes = 0
        self.response_bytes = 0
        self.first_error: str | None = None

    def record(self, started: float, done: float, status: int, sent: int, body: bytes) -> None:
        if started < self.measure_from or done > self.stop_at:
            return
        self.latencies.append(done - started)
        key = str(status)
        self.statuses[key] = self.statuses.get(key, 0) + 1
        self.request_bytes = sent
        self.response_bytes = len(body)
        if status >= 300 and self.first_error is None:
            self.first_error = f"{status}: {body[:300]!r}"


async def _raw_connection(
    host: str, port: int, index: int, factory: RequestFactory, window: _Window
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    prefix = f"Host: {host}:{port}\r\nContent-Type: application/json\r\n"
    try:
        i = 0
        while True:
            started = time.perf_counter()
            if started >= window.stop_at:
                break
            path, headers, body = factory(index, i)
            i += 1
            extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            request = (
                f"POST {path} HTTP/1.1\r\n{prefix}{extra}Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if at < 0:
                raise RuntimeError(f"answer without Content-Length: {head[:200]!r}")
            end = lower.index(b"\r\n", at + 2)
            length = int(lower[at + 17 : end])
            payload = await reader.readexactly(length)
            window.record(started, time.perf_counter(), status, len(body), payload)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _httpx_connection(
    client: Any, base: str, index: int, factory: RequestFactory, window: _Window
) -> None:
    i = 0
    while True:
        started = time.perf_counter()
        if started >= window.stop_at:
            break
        path, headers, body = factory(index, i)
        i += 1
        answer = await client.post(
            base + path, content=body, headers={"Content-Type": "application/json", **headers}
        )
        window.record(started, time.perf_counter(), answer.status_code, len(body), answer.content)


async def run_load(
    host: str,
    port: int,
    factory: RequestFactory,
    *,
    connections: int,
    warmup_s: float,
    duration_s: float,
    client: str = "raw",
    on_window: Callable[[str], None] | None = None,
    companion: Callable[[float, float], Coroutine[Any, Any, Any]] | None = None,
) -> LoadResult:
    """Drive the server for warm-up + duration seconds; report the measured window only."""
    window = _Window(warmup_s, duration_s)

    async def probe() -> float:
        await asyncio.sleep(max(0.0, window.measure_from - time.perf_counter()))
        cpu = time.process_time()
        if on_window:
            on_window("start")
        await asyncio.sleep(max(0.0, window.stop_at - time.perf_counter()))
        if on_window:
            on_window("end")
        return time.process_time() - cpu

    prober = asyncio.create_task(probe())
    # Something to run next to the load in the measured window, e.g. a database sampler.
    beside = (
        asyncio.create_task(companion(window.measure_from, window.stop_at)) if companion else None
    )
    if client == "raw":
        await asyncio.gather(
            *(_raw_connection(host, port, i, factory, window) for i in range(connections))
        )
    elif client == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(limits=limits, timeout=60) as http:
            base = f"http://{host}:{port}"
            await asyncio.gather(
                *(_httpx_connection(http, base, i, factory, window) for i in range(connections))
            )
    else:
        raise ValueError(f"unknown client {client!r}")
    client_cpu = await prober
    companion_result = await beside if beside is not None else None
    ordered = sorted(window.latencies)
    errors = sum(n for status, n in window.statuses.items() if int(status) >= 300)
    return LoadResult(
        connections=connections,
        duration_s=duration_s,
        requests=len(ordered),
        errors=errors,
        rps=len(ordered) / duration_s,
        p50_ms=_percentile(ordered, 0.50) * 1000,
        p90_ms=_percentile(ordered, 0.90) * 1000,
        p99_ms=_percentile(ordered, 0.99) * 1000,
        max_ms=(ordered[-1] if ordered else float("nan")) * 1000,
        mean_ms=(statistics.fmean(ordered) if ordered else float("nan")) * 1000,
        request_bytes=window.request_bytes,
        response_bytes=window.response_bytes,
        client_cpu_pct=100 * client_cpu / duration_s,
        statuses=window.statuses,
        first_error=window.first_error,
        companion=companion_result,
        latencies=ordered,
    )
