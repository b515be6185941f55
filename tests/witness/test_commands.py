"""`timebank witness init`, `add-log`, `show` and `serve` as processes: a witness made from
nothing but the command cosigns a checkpoint over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.audit.cosignature import parse_cosigner_key, with_signatures
from app.audit.note import open_note
from tests.witness.conftest import Log, origin_path

pytestmark = pytest.mark.slow
TIMEBANK = str(Path(sys.executable).with_name("timebank"))


def timebank(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TIMEBANK, "witness", *args], capture_output=True, text=True, timeout=60, check=False
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_ready(base: str, process: subprocess.Popen[str]) -> None:
    async with httpx.AsyncClient(base_url=base) as client, asyncio.timeout(60):
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the witness exited with {process.returncode}")
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


async def test_init_add_log_serve_and_cosign_over_http(tmp_path: Path) -> None:
    directory = tmp_path / "w1"
    made = await asyncio.to_thread(
        timebank, "init", "--dir", str(directory), "--name", "witness.example/w1"
    )
    assert made.returncode == 0, made.stderr
    cosigner = parse_cosigner_key(made.stdout.strip())
    assert cosigner.name == "witness.example/w1"
    assert stat.S_IMODE((directory / "witness.key").stat().st_mode) == 0o600
    log = Log(origin="timebank.example/log/north")
    added = await asyncio.to_thread(
        timebank,
        "add-log",
        "--dir",
        str(directory),
        "--origin",
        log.origin,
        "--vkey",
        log.verifier.vkey(),
    )
    assert added.returncode == 0, added.stderr
    assert json.loads((directory / "witness.json").read_text())["logs"] == [
        {"origin": log.origin, "vkeys": [log.verifier.vkey()]}
    ]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(  # noqa: ASYNC220 - Popen starts it and returns
        [TIMEBANK, "witness", "serve", "--dir", str(directory), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await wait_ready(base, server)
        async with httpx.AsyncClient(base_url=base) as client:
            response = await client.post("/add-checkpoint", content=log.body(0, 7))
            assert response.status_code == 200, response.text
            served = await client.get(origin_path(log.origin))
        _, found = open_note(with_signatures(log.note(7), [response.text]), [cosigner])
        assert [s.name for s in found] == [cosigner.name]
        assert served.text.endswith(response.text)
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = await asyncio.to_thread(server.communicate, timeout=30)
    assert server.returncode == 0, stderr
    events = [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]
    assert "witness.cosigned" in events
    secret = (directory / "witness.key").read_text().strip().split("+", 4)[4]
    assert secret not in stderr

    shown = await asyncio.to_thread(timebank, "show", "--dir", str(directory))
    assert shown.returncode == 0, shown.stderr
    assert f"vkey    {cosigner.vkey()}" in shown.stdout
    assert f"log     {log.origin}  latest cosigned size: 7" in shown.stdout


def test_the_commands_refuse_with_one_line_and_exit_2(tmp_path: Path) -> None:
    directory = tmp_path / "w"
    assert timebank("init", "--dir", str(directory), "--name", "w").returncode == 0
    again = timebank("init", "--dir", str(directory), "--name", "w")
    assert (
        again.returncode == 2
        and again.stderr == f"timebank witness: {directory} holds a witness already\n"
    )
    other = Log(origin="elsewhere")
    wrong = timebank(
        "add-log",
        "--dir",
        str(directory),
        "--origin",
        "example.org/log",
        "--vkey",
        other.verifier.vkey(),
    )
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("timebank witness: the key 'elsewhere' is not named by")
    os.chmod(directory / "witness.key", 0o644)
    exposed = timebank("serve", "--dir", str(directory), "--port", str(free_port()))
    assert exposed.returncode == 2
    assert exposed.stderr.endswith("may be read by others: chmod 600 it\n")
