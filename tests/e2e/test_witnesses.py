"""Three witnesses, each a `timebank witness serve` process with its own directory and store,
cosign the checkpoints of two books that `timebank serve` keeps; one stopped and restarted
catches up; a history rewritten by a superuser is refused by every witness, with the alarm on
both sides; a 2-of-3 witness policy passes the true export offline and refuses its checkpoint
with one cosignature; and code written from the C2SP texts alone accepts the cosignatures.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.audit.cosignature import parse_cosigner_key
from app.audit.note import open_note
from tests.conftest import PgServer, ScratchDatabase, superuser_of
from tests.e2e.test_two_servers import TIMEBANK, admin_token, free_port, wait_ready

pytestmark = pytest.mark.slow  # server processes

DEADLINE_S = 60.0


@dataclass
class Witness:
    """A witness process: its directory, name, key, port and log file."""

    directory: Path
    name: str
    vkey: str
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, env: dict[str, str]) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [TIMEBANK, "witness", "serve", "--dir", str(self.directory), "--port",
                 str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    async def ready(self) -> None:
        async with httpx.AsyncClient(base_url=self.url) as client, asyncio.timeout(30):
            while True:
                assert self.process is not None and self.process.poll() is None, self.log
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)


def verifies(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`timebank audit verify ARGS`, whatever it answers."""
    command = [TIMEBANK, "audit", "verify", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


def run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([TIMEBANK, *args], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


async def until(what: str, check: Callable[[], Awaitable[bool]]) -> None:
    """Wait for a background process to bring `check` about, within DEADLINE_S."""
    try:
        async with asyncio.timeout(DEADLINE_S):
            while not await check():  # noqa: ASYNC110 - another process brings it about
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"not within {DEADLINE_S} s: {what}") from None


def cosigned_by(note: str, witnesses: list[Witness]) -> set[str]:
    """The witnesses whose cosignature verifies on `note` (the project's verifier)."""
    found = set()
    for w in witnesses:
        try:
            open_note(note, [parse_cosigner_key(w.vkey)])
        except ValueError:
            continue
        found.add(w.name)
    return found


@pytest.fixture
async def district(
    cli_env: dict[str, str], database: ScratchDatabase, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], list[Witness], Path]]:
    env = cli_env | {"TIMEBANK_CHECKPOINT_INTERVAL": "0.5", "TIMEBANK_LOG_FOLLOW_INTERVAL_S": "0.2"}
    token = await admin_token(env)
    port = free_port()
    server_log = tmp_path / "server.log"
    witnesses: list[Witness] = []
    with server_log.open("wb") as out:
        server = subprocess.Popen(  # noqa: ASYNC220 - Popen starts it and returns
            [TIMEBANK, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base, server)
        for i in (1, 2, 3):
            directory = tmp_path / f"witness{i}"
            name = f"w{i}.example.org/witness"
            vkey = run(env, "witness", "init", "--dir", str(directory), "--name", name).split()[-1]
            witnesses.append(Witness(directory, name, vkey, free_port(), tmp_path / f"w{i}.log"))
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            yield client, env, witnesses, server_log
    finally:
        for w in witnesses:
            w.stop()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


async def book_with_accounts(client: httpx.AsyncClient, code: str) -> tuple[str, str]:
    assert (await client.post("/v1/books", json={"code": code, "name": code})).status_code == 201
    ids = []
    for owner, limit in (("system:issuance", 10**9), ("test:member", 0)):
        body = {"asset": "HOUR", "owner": owner, "overdraft_limit": limit}
        r = await client.post(f"/v1/books/{code}/accounts", json=body)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids[0], ids[1]


async def post(client: httpx.AsyncClient, book: str, accounts: tuple[str, str], n: int) -> int:
    for i in range(n):
        legs = [{"account_id": accounts[0], "amount": -1}, {"account_id": accounts[1], "amount": 1}]
        body = {"kind": "transfer", "legs": legs}
        key = hashlib.sha256(f"{book}{i}{n}{accounts}".encode()).hexdigest()
        headers = {"Idempotency-Key": key}
        r = await client.post(f"/v1/books/{book}/transactions", json=body, headers=headers)
        assert r.status_code == 201, r.text
    return int((await client.get(f"/v1/books/{book}")).json()["head"]["seq"])


async def checkpoint(client: httpx.AsyncClient, book: str) -> dict[str, Any]:
    r = await client.get(f"/v1/books/{book}/checkpoint")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def test_three_witnesses_cosign_catch_up_and_refuse_a_rewritten_history(
    district: tuple[httpx.AsyncClient, dict[str, str], list[Witness], Path],
    database: ScratchDatabase,
    pg_server: PgServer,
    tmp_path: Path,
) -> None:
    client, env, witnesses, server_log = district
    books = {"east": await book_with_accounts(client, "east"),
             "west": await book_with_accounts(client, "west")}  # fmt: skip
    for book in books:
        vkeys = (await client.get(f"/v1/books/{book}/log-keys")).text.split()
        origin = (await checkpoint(client, book))["origin"]
        for w in witnesses:
            run(env, "witness", "add-log", "--dir", str(w.directory), "--origin", origin,
                *[arg for v in vkeys for arg in ("--vkey", v)])  # fmt: skip
    for w in witnesses:
        w.start(env)
    for w in witnesses:
        await w.ready()
    for book in books:
        for w in witnesses:
            run(env, "witnesses", "add", "--book", book, "--vkey", w.vkey, "--url", w.url)
    everyone = {w.name for w in witnesses}

    async def cosigned(book: str, size: int, names: set[str]) -> bool:
        latest = await checkpoint(client, book)
        return latest["tree_size"] >= size and names <= cosigned_by(latest["note"], witnesses)

    # Both books' checkpoints get cosigned by all three.
    sizes = {book: await post(client, book, accounts, 5) for book, accounts in books.items()}
    for book, size in sizes.items():
        await until(f"{book} cosigned by all", lambda b=book, s=size: cosigned(b, s, everyone))

    # One witness stopped: the others go on cosigning; restarted, it catches up.
    stopped = witnesses[2]
    stopped.stop()
    east = await post(client, "east", books["east"], 4)
    others = everyone - {stopped.name}
    await until("east cosigned by the two", lambda: cosigned("east", east, others))
    assert stopped.name not in cosigned_by((await checkpoint(client, "east"))["note"], witnesses)
    status = (await client.get("/v1/books/east/witnesses")).json()
    down = next(i for i in status["items"] if i["name"] == stopped.name)
    assert down["cosigned_size"] < east and down["alarm"] is False
    stopped.start(env)
    await stopped.ready()
    await until("the restarted witness caught up", lambda: cosigned("east", east, everyone))

    # Offline: a 2-of-3 policy passes the true export and refuses one cosignature.
    export = tmp_path / "east.jsonl"
    r = await client.get("/v1/books/east/export")
    assert r.status_code == 200, r.text
    export.write_bytes(r.content)
    policy = tmp_path / "district.policy"
    policy.write_text(
        "".join(f"witness w{i} {w.vkey}\n" for i, w in enumerate(witnesses, 1))
        + "group district 2 w1 w2 w3\nquorum district\n"
    )
    passed = verifies(env, str(export), "--witness-policy", str(policy))
    assert passed.returncode == 0, passed.stdout + passed.stderr
    lines = export.read_text().splitlines()
    trailer = json.loads(lines[-1])
    note = trailer["checkpoint"]["note"]
    body, _, signatures = note.rpartition("\n\n")
    own, *cosignatures = signatures.rstrip("\n").split("\n")
    assert len(cosignatures) == 3
    trailer["checkpoint"]["note"] = f"{body}\n\n{own}\n{cosignatures[0]}\n"
    one = tmp_path / "east-one-cosignature.jsonl"
    one.write_text("\n".join([*lines[:-1], json.dumps(trailer)]) + "\n")
    refused = verifies(env, str(one), "--witness-policy", str(policy))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "does not meet the witness policy" in refused.stdout + refused.stderr

    # Code written from the C2SP texts alone accepts every cosignature the witnesses made.
    from tests.independent import c2sp_witness

    keys = [c2sp_witness.parse_vkey(w.vkey) for w in witnesses]
    opened = c2sp_witness.open_note(note, keys)
    assert sorted(k.name for k in opened.cosigned) == sorted(everyone)

    # A superuser rewrites east's first entry and the log's tree, as a dishonest operator
    # would: every witness refuses the next checkpoint, and both sides raise the alarm.
    conn = await asyncpg.connect(superuser_of(pg_server, database))
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(
                "UPDATE journal_entries SET body = body || ' '::bytea, "
                "entry_hash = encode(sha256(body || ' '::bytea), 'hex') "
                "WHERE book_code = 'east' AND seq = 1"
            )
            for table in ("checkpoint_cosignatures", "checkpoints", "merkle_subtrees"):
                await conn.execute(f"DELETE FROM {table} WHERE book_code = 'east'")
            await conn.execute(
                "UPDATE log_heads SET tree_size = 0, root = sha256(''::bytea) "
                "WHERE book_code = 'east'"
            )
    finally:
        await conn.close()
    await post(client, "east", books["east"], 1)

    async def all_refused() -> bool:
        status = (await client.get("/v1/books/east/witnesses")).json()
        return bool(status["alarm"]) and all(i["alarm"] for i in status["items"])

    await until("every witness refused the rewrite", all_refused)
    status = (await client.get("/v1/books/east/witnesses")).json()
    assert all(i["refusal"].startswith("422") for i in status["items"]), status
    assert '"event": "audit.witness_refused"' in server_log.read_text()
    rewritten = await checkpoint(client, "east")
    assert cosigned_by(rewritten["note"], witnesses) == set()
    async with httpx.AsyncClient() as plain:
        for w in witnesses:
            metrics = (await plain.get(f"{w.url}/metrics")).text
            alarms = [line for line in metrics.splitlines()
                      if line.startswith("timebank_witness_server_alarms_total{")]  # fmt: skip
            assert alarms and float(alarms[0].split()[-1]) >= 1, metrics
            assert '"witness.alarm"' in w.log.read_text()
    # West, untouched, is still cosigned by all three.
    west = await post(client, "west", books["west"], 2)
    await until("west still cosigned", lambda: cosigned("west", west, everyone))
