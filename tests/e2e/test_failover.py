"""The primary's machine dies under load and its synchronous standby takes over.

The design this holds: the primary commits synchronously to its one standby
(`synchronous_standby_names = '*'`, `synchronous_commit = on`), so a commit returns, and
becomes visible to any other session, only once the standby has flushed it. Every posting the
service acknowledged (2xx) was therefore on the standby before its answer left; once promoted,
the standby holds every one of them, and every checkpoint signed from them. A commit still in
flight when the primary died may or may not be there: its client got 503 or a broken
connection, never a 2xx, and its retry with the same Idempotency-Key posts it once either way.

`timebank serve` runs once on the multi-host URL (primary first) and is never restarted.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.audit import merkle
from app.db import bootstrap_embedded
from tests.conftest import (
    SETTINGS,
    TEST_PERSONAL_DATA_SECRET,
    TEST_SIGNING_KEY_PASSPHRASE,
)
from tests.e2e.replicas import ReplicaPair, free_port
from tests.e2e.test_outages import assert_json_lines
from tests.e2e.test_two_servers import TIMEBANK, admin_token, wait_ready

pytestmark = pytest.mark.slow
CLIENTS = 6
POSTED_BEFORE_KILL = 150  # acknowledged postings before the primary dies
POSTED_AFTER_PROMOTION = 15  # by each client, after the standby took over
RETRY_PAUSE_S = 0.05  # a client's pause before it retries a key (Retry-After says 1 s)
IN_FLIGHT = "urn:timebank:problem:idempotency-in-flight"


@dataclass(frozen=True)
class Served:
    """The service: its address, the environment of its commands, its log (stderr)."""

    base: str
    env: dict[str, str]
    log: Path

    def logged(self, event: str) -> bool:
        return f'"event": "{event}"' in self.log.read_text()


@pytest.fixture
async def served(pair: ReplicaPair, tmp_path: Path) -> AsyncIterator[Served]:
    """`timebank serve` on the pair's multi-host URL, after an operator's set-up of an
    external PostgreSQL: the roles and the database made on the primary (`serve` then
    migrates as the owner)."""
    await bootstrap_embedded(pair.primary.url(), SETTINGS)
    env = {
        **os.environ,
        "TIMEBANK_DATABASE_URL": pair.url(SETTINGS.app_role, SETTINGS.database_name),
        "TIMEBANK_MIGRATION_DATABASE_URL": pair.url(SETTINGS.owner_role, SETTINGS.database_name),
        "TIMEBANK_DATA_DIR": str(tmp_path / "data"),
        "TIMEBANK_PERSONAL_DATA_SECRET": TEST_PERSONAL_DATA_SECRET,
        "TIMEBANK_SIGNING_KEY_PASSPHRASE": TEST_SIGNING_KEY_PASSPHRASE,
        "TIMEBANK_RATE_LIMIT_PER_S": "0",
        "TIMEBANK_LOG_LEVEL": "warning",
        # The follower signs checkpoints too while the clients post.
        "TIMEBANK_CHECKPOINT_INTERVAL": "1",
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(  # noqa: ASYNC220 - Popen starts it and returns
            [TIMEBANK, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:
        await wait_ready(base, server)
        yield Served(base, env, log)
        assert server.poll() is None, "the service stopped: it was to run throughout"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    # Every failure was classified: outages are warnings, anything else would be an error.
    errors = [r for r in assert_json_lines(log) if r["level"] in ("error", "critical")]
    assert errors == [], errors


@dataclass
class Load:
    """What the clients and the checkpoint signer saw."""

    statuses: Counter[int] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)
    broken: int = 0  # requests that got no answer (the connection failed)
    acknowledged: dict[str, str] = field(default_factory=dict)  # key -> tx_id
    after_promotion: Counter[int] = field(default_factory=Counter)  # client -> 2xx since
    failures_after_kill: int = 0
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    killed: bool = False
    promoted: bool = False
    times: dict[str, float] = field(default_factory=dict)  # for the record: when what happened
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def saw(self, response: httpx.Response) -> None:
        self.statuses[response.status_code] += 1
        if response.status_code >= 400:
            self.problems[response.json()["type"]] += 1
            if self.killed:
                self.failures_after_kill += 1


async def _post_until_answered(
    client: httpx.AsyncClient, load: Load, path: str, body: dict[str, Any], key: str
) -> httpx.Response:
    """Post with one Idempotency-Key until the answer is definitive: a retry on 503, on a
    broken connection and on the key's first request still running."""
    while True:
        try:
            response = await client.post(path, json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError:
            load.broken += 1
            load.failures_after_kill += load.killed
        else:
            load.saw(response)
            in_flight = response.status_code == 409 and response.json()["type"] == IN_FLIGHT
            if response.status_code != 503 and not in_flight:
                return response
        await asyncio.sleep(RETRY_PAUSE_S)


async def _client(
    number: int, client: httpx.AsyncClient, load: Load, book: str, accounts: list[str]
) -> None:
    issuance, members = accounts[0], accounts[1:]
    turn = 0
    while not load.stop.is_set():
        turn += 1
        key = f"c{number}-{turn}-{uuid.uuid4().hex[:8]}"
        body = {
            "kind": "transfer",
            "legs": [
                {"account_id": issuance, "amount": -1},
                {"account_id": members[(number + turn) % len(members)], "amount": 1},
            ],
        }
        promoted = load.promoted
        answer = await _post_until_answered(
            client, load, f"/v1/books/{book}/transactions", body, key
        )
        assert answer.status_code == 201, answer.text
        load.acknowledged[key] = answer.json()["entry"]["tx_id"]
        if promoted:
            load.after_promotion[number] += 1
            load.times.setdefault("first posting after the promotion", time.monotonic())


async def _signer(client: httpx.AsyncClient, load: Load, book: str) -> None:
    """Signs checkpoints while the clients post, keeping every one it is shown."""
    while not load.stop.is_set():
        try:
            response = await client.post(f"/v1/books/{book}/checkpoints")
        except httpx.TransportError:
            load.broken += 1
        else:
            load.saw(response)
            if response.status_code in (200, 201):
                load.checkpoints.append(response.json())
        await asyncio.sleep(0.1)


async def _until(condition: Any, what: str, timeout_s: float = 30) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - counters several tasks move
            await asyncio.sleep(0.02)
    assert condition(), what


async def test_the_standby_takes_over_and_no_acknowledged_posting_is_lost(
    pair: ReplicaPair, served: Served
) -> None:
    headers = {"Authorization": f"Bearer {await admin_token(served.env)}"}
    async with httpx.AsyncClient(base_url=served.base, headers=headers, timeout=30) as client:
        book = "fo"
        assert (await client.post("/v1/books", json={"code": book, "name": "failover"})).is_success
        accounts = []
        for limit in (10**12, 0, 0, 0, 0):
            r = await client.post(
                f"/v1/books/{book}/accounts",
                json={"asset": "HOUR", "owner": "test:failover", "overdraft_limit": limit},
            )
            assert r.status_code == 201, r.text
            accounts.append(r.json()["id"])
        start_seq = (await client.get(f"/v1/books/{book}/head")).json()["seq"]

        load = Load()
        tasks = [
            asyncio.create_task(_client(n, client, load, book, accounts)) for n in range(CLIENTS)
        ]
        tasks.append(asyncio.create_task(_signer(client, load, book)))
        try:
            await _until(lambda: len(load.acknowledged) >= POSTED_BEFORE_KILL, "postings")
            await _until(lambda: load.checkpoints, "a checkpoint before the kill")
            load.killed = True
            load.times["kill"] = time.monotonic()
            killed = await asyncio.to_thread(pair.primary.kill)
            assert killed, "the primary was not running"
            signed_before_kill = list(load.checkpoints)
            acknowledged_before_kill = dict(load.acknowledged)
            # The clients meet the outage (503, or a connection broken) before the promotion,
            # and so does the log's follower (`timebank follow-log`, beside the server).
            await _until(lambda: load.failures_after_kill >= CLIENTS, "failures after the kill")
            await _until(lambda: served.logged("audit.follow_failed"), "the follower's failure")
            await asyncio.to_thread(pair.standby.promote)
            load.promoted = True
            load.times["promoted"] = time.monotonic()
            await _until(
                lambda: all(
                    load.after_promotion[n] >= POSTED_AFTER_PROMOTION for n in range(CLIENTS)
                ),
                "postings after the promotion",
            )
        finally:
            load.stop.set()
            await asyncio.gather(*tasks)

        # Every answer was a success, a 503 (with Retry-After) or a retry's 409 by design.
        assert set(load.statuses) <= {200, 201, 409, 503}, load.statuses
        assert set(load.problems) <= {"urn:timebank:problem:unavailable", IN_FLIGHT}, load.problems
        assert load.statuses[503] + load.broken > 0, "no client saw the outage"
        assert set(acknowledged_before_kill.items()) <= set(load.acknowledged.items())

        # Every acknowledged posting is on the new primary, and each key posted exactly once.
        found = await asyncio.gather(
            *(client.get(f"/v1/transactions/{tx}") for tx in load.acknowledged.values())
        )
        assert [r.status_code for r in found] == [200] * len(found)
        assert len(set(load.acknowledged.values())) == len(load.acknowledged)
        head = (await client.get(f"/v1/books/{book}/head")).json()
        assert head["seq"] == start_seq + len(load.acknowledged)

        # The log did not fork: the next checkpoint extends every one signed before the kill.
        final = (await client.post(f"/v1/books/{book}/checkpoints")).json()
        assert final["tree_size"] == head["seq"]
        for checkpoint in [*signed_before_kill, *load.checkpoints]:
            proof = await client.get(
                f"/v1/books/{book}/proofs/consistency",
                params={"first": checkpoint["tree_size"], "second": final["tree_size"]},
            )
            assert proof.status_code == 200, proof.text
            assert merkle.verify_consistency(
                checkpoint["tree_size"],
                final["tree_size"],
                [bytes.fromhex(h) for h in proof.json()["proof"]],
                bytes.fromhex(checkpoint["root"]),
                bytes.fromhex(final["root"]),
            ), checkpoint

    # The chain and balances recomputed from the new primary's journal.
    verified = await asyncio.to_thread(
        subprocess.run,
        [TIMEBANK, "verify"],
        env=served.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verified.returncode == 0, verified.stderr
    assert f"OK: 1 book(s), {head['seq']} entries verified" in verified.stdout, verified.stdout
    # For the record (pytest -s): what the clients met.
    since_kill = {what: round(t - load.times["kill"], 3) for what, t in load.times.items()}
    print(json.dumps({"statuses": load.statuses, "broken": load.broken, "s": since_kill}))
