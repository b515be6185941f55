"""Killing a server between an action's steps: a `uvicorn` process on the test database with a
fault point armed (`TIMEBANK_FAULT_POINTS`, app/kit/faults.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.kit import faults
from tests.e2e.test_two_servers import free_port, wait_ready

UVICORN = (sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app")


@pytest.fixture
def armed() -> Iterator[Any]:
    """`armed(point)` makes the in-process app raise at `point`; disarmed after the test."""
    yield faults.arm
    faults.disarm()


@dataclass
class Served:
    """A server process on the test database, and a client of it."""

    client: httpx.AsyncClient
    process: subprocess.Popen[bytes]


@asynccontextmanager
async def serving(
    cli_env: dict[str, str], tmp_path: Path, name: str, env: Mapping[str, str] | None = None
) -> AsyncIterator[Served]:
    """A `uvicorn` server process on the test database (its log in `tmp_path/<name>.log`);
    `env` overrides its settings. Stopped (SIGKILL) at the end if it still runs."""
    port = free_port()
    env = {
        **cli_env,
        "TIMEBANK_FOLLOW_LOG_IN_SERVER": "false",
        "TIMEBANK_HOLD_SWEEP_INTERVAL_S": "3600",
        **(env or {}),
    }
    with (tmp_path / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(  # noqa: ASYNC220 - Popen starts it and returns
            [*UVICORN, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(base, process)
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            yield Served(client, process)
    finally:
        if process.poll() is None:
            process.kill()
        await asyncio.to_thread(process.wait, 30)


@asynccontextmanager
async def killed_at(
    cli_env: dict[str, str], tmp_path: Path, point: str, env: Mapping[str, str] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a server that SIGKILLs itself when it reaches `point`; `env` overrides its
    settings (e.g. a short hold sweep interval, for a point the sweeper reaches)."""
    armed = {"TIMEBANK_FAULT_POINTS": f"{point}=kill", **(env or {})}
    async with serving(cli_env, tmp_path, f"killed-{point}", armed) as served:
        yield served.client
        # The action must have reached the point: the process is gone, killed by it.
        returncode = await asyncio.to_thread(served.process.wait, 30)
        assert returncode == -9, f"the server exited with {returncode}, not at {point}"


async def dies(request: Any) -> None:
    """Awaits a request that the server's death cuts off."""
    with pytest.raises(httpx.TransportError):
        await request


async def fails(request: Any) -> None:
    """Awaits a request that an armed fault point makes fail: a 500 problem (the edge
    middleware answers it; the app's exception does not reach the transport)."""
    response = await request
    assert response.status_code == 500, response.text
    assert response.json()["type"] == "urn:timebank:problem:internal"
