"""`timebank serve` follows the journals into the log from a process of its own, which stops
with it, however it stops."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from tests.conftest import ScratchDatabase
from tests.e2e.test_two_servers import TIMEBANK, admin_token, free_port, wait_ready

pytestmark = pytest.mark.slow  # server processes


def followers_of(server: subprocess.Popen[bytes]) -> list[psutil.Process]:
    children = psutil.Process(server.pid).children(recursive=True)
    return [c for c in children if "follow-log" in c.cmdline()]


async def gone(process: psutil.Process) -> bool:
    async with asyncio.timeout(20):
        while process.is_running() and process.status() != psutil.STATUS_ZOMBIE:  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.1)
    return True


async def test_the_log_follower_runs_beside_the_server_and_stops_with_it(
    cli_env: dict[str, str], database: ScratchDatabase, tmp_path: Path
) -> None:
    token = await admin_token(cli_env)
    for stop in (signal.SIGTERM, signal.SIGKILL):
        port = free_port()
        with (tmp_path / f"server-{stop.name}.log").open("wb") as log:
            server = subprocess.Popen(  # noqa: ASYNC220 - Popen starts it and returns
                [TIMEBANK, "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=cli_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            base = f"http://127.0.0.1:{port}"
            await wait_ready(base, server)
            [follower] = followers_of(server)
            # What the server's workers read too: they leave the log to the follower.
            assert follower.environ()["TIMEBANK_FOLLOW_LOG_IN_SERVER"] == "false"
            book = f"f{stop.value}"
            async with httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {token}"}
            ) as client:
                r = await client.post("/v1/books", json={"code": book, "name": book})
                assert r.status_code == 201, r.text
                ids = []
                for limit in (10**6, 0):
                    r = await client.post(
                        f"/v1/books/{book}/accounts",
                        json={"asset": "HOUR", "owner": "o", "overdraft_limit": limit},
                    )
                    assert r.status_code == 201, r.text
                    ids.append(r.json()["id"])
                for n in range(3):
                    r = await client.post(
                        f"/v1/books/{book}/transactions",
                        json={
                            "legs": [
                                {"account_id": ids[0], "amount": -1},
                                {"account_id": ids[1], "amount": 1},
                            ]
                        },
                        headers={"Idempotency-Key": f"{book}-{n}"},
                    )
                    assert r.status_code == 201, r.text
            # The server no longer integrates anything itself: the follower brings the tree
            # up to the journal.
            conn = await asyncpg.connect(database.app_url)
            try:
                async with asyncio.timeout(30):
                    while True:
                        head = await conn.fetchval(
                            "SELECT seq FROM book_heads WHERE book_code = $1", book
                        )
                        size = await conn.fetchval(
                            "SELECT tree_size FROM log_heads WHERE book_code = $1", book
                        )
                        if head == 3 and size == head:
                            break
                        await asyncio.sleep(0.2)
            finally:
                await conn.close()
            server.send_signal(stop)
            await asyncio.to_thread(server.wait, 30)
            assert await gone(follower)
        finally:
            if server.poll() is None:
                server.kill()
