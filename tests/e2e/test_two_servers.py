"""Two server processes on one database: the ledger stays gapless, chained and exact."""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import ScratchDatabase

pytestmark = pytest.mark.slow  # server processes
TIMEBANK = str(Path(sys.executable).with_name("timebank"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(base_url=base) as client, asyncio.timeout(60):
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}")
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


@pytest.fixture
async def servers(cli_env: dict[str, str], tmp_path: Path) -> AsyncIterator[list[str]]:
    """Two `timebank serve` processes sharing the test database, and an admin token env."""
    processes: list[subprocess.Popen[bytes]] = []
    bases = []
    try:
        for i in range(2):
            port = free_port()
            with (tmp_path / f"server{i}.log").open("wb") as log:
                processes.append(
                    subprocess.Popen(  # noqa: ASYNC220 - Popen starts it and returns
                        [TIMEBANK, "serve", "--host", "127.0.0.1", "--port", str(port)],
                        env=cli_env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            bases.append(f"http://127.0.0.1:{port}")
        for base, process in zip(bases, processes, strict=True):
            await wait_ready(base, process)
        yield bases
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


async def admin_token(env: dict[str, str]) -> str:
    result = await asyncio.to_thread(
        subprocess.run,
        [TIMEBANK, "credentials", "create", "--role", "admin"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


async def test_two_processes_post_to_one_book(
    servers: list[str], cli_env: dict[str, str], database: ScratchDatabase
) -> None:
    token = await admin_token(cli_env)
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=32)
    clients = [
        httpx.AsyncClient(base_url=b, headers=headers, limits=limits, timeout=60) for b in servers
    ]
    try:
        one = clients[0]
        assert (await one.post("/v1/books", json={"code": "e2e", "name": "e2e"})).status_code == 201

        async def account(limit: int = 0) -> str:
            r = await one.post(
                "/v1/books/e2e/accounts",
                json={"asset": "HOUR", "owner": "x", "overdraft_limit": limit},
            )
            return str(r.json()["id"])

        issuance, spender, sink = await account(10**12), await account(), await account()
        members = [await account() for _ in range(8)]

        def transfer(
            client: httpx.AsyncClient, src: str, dst: str, amount: int, key: str | None = None
        ) -> object:
            return client.post(
                "/v1/books/e2e/transactions",
                json={
                    "legs": [
                        {"account_id": src, "amount": -amount},
                        {"account_id": dst, "amount": amount},
                    ]
                },
                headers={"Idempotency-Key": key or uuid.uuid4().hex},
            )

        funding = await transfer(one, issuance, spender, 50)  # type: ignore[misc]
        assert funding.status_code == 201
        rng = random.Random(7)
        calls = []
        for i in range(200):  # 200 withdrawals against 50, from both processes
            calls.append(("spend", transfer(clients[i % 2], spender, sink, 1)))
        for i in range(200):  # unrelated postings interleaved
            calls.append(("credit", transfer(clients[i % 2], issuance, rng.choice(members), 1)))
        for i in range(40):  # a retry storm with one key, across both processes
            calls.append(("storm", transfer(clients[i % 2], issuance, sink, 3, key="storm")))
        rng.shuffle(calls)
        responses = await asyncio.gather(*(c for _, c in calls))  # type: ignore[misc]
        by_kind: dict[str, list[httpx.Response]] = {}
        for (kind, _), response in zip(calls, responses, strict=True):
            by_kind.setdefault(kind, []).append(response)

        spend_codes = [r.status_code for r in by_kind["spend"]]
        assert spend_codes.count(201) == 50 and spend_codes.count(409) == 150
        assert all(r.status_code == 201 for r in by_kind["credit"])
        assert {r.status_code for r in by_kind["storm"]} == {201}
        assert len({r.json()["id"] for r in by_kind["storm"]}) == 1
        replays = [r.headers.get("Idempotent-Replayed") for r in by_kind["storm"]]
        assert replays.count("true") == 39

        conn = await asyncpg.connect(database.app_url)
        try:
            seqs = [
                r[0]
                for r in await conn.fetch(
                    "SELECT seq FROM journal_entries WHERE book_code = 'e2e' ORDER BY seq"
                )
            ]
            storm_entries = await conn.fetchval(
                "SELECT count(*) FROM journal_legs WHERE book_code = 'e2e' AND account_id = $1 "
                "AND amount = 3",
                sink,
            )
            spender_posted = await conn.fetchval(
                "SELECT posted FROM accounts WHERE id = $1", spender
            )
        finally:
            await conn.close()
        assert seqs == list(range(1, 1 + 1 + 50 + 200 + 1))
        assert storm_entries == 1
        assert spender_posted == 0
    finally:
        for client in clients:
            await client.aclose()
    result = await asyncio.to_thread(
        subprocess.run,
        [TIMEBANK, "verify", "--book", "e2e"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "252 entries verified" in result.stdout


async def test_two_processes_keep_capacity_overlap_and_single_credit(
    servers: list[str], cli_env: dict[str, str]
) -> None:
    """Sign-ups, overlapping entries and approvals raced across two server processes."""
    token = await admin_token(cli_env)
    headers = {"Authorization": f"Bearer {token}"}
    clients = [httpx.AsyncClient(base_url=b, headers=headers, timeout=60) for b in servers]
    try:
        one = clients[0]

        async def post(client: httpx.AsyncClient, path: str, body: object) -> httpx.Response:
            return await client.post(path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})

        assert (await post(one, "/v1/books", {"code": "vol", "name": "vol"})).status_code == 201
        org = (
            await post(
                one,
                "/v1/organisations",
                {
                    "book": "vol",
                    "kind": "volunteer_team",
                    "name": "队",
                    "accounts": [
                        {"asset": "HOUR", "purpose": "issuance", "overdraft_limit": 10**6}
                    ],
                },
            )
        ).json()
        members = []
        for i in range(24):
            r = await post(
                one,
                "/v1/members",
                {
                    "book": "vol",
                    "display_name": "志愿者",
                    "phone": f"1390000{i:04d}",
                    "birth_date": "1990-01-01",
                    "identity": {"provider": "wechat", "subject": f"o-{i}"},
                    "organisation_id": org["id"],
                },
            )
            assert r.status_code == 201, r.text
            members.append(r.json())
        # Tomorrow: the servers' clock is the real one, and sign-ups close when a project ends.
        day = (datetime.now(UTC) + timedelta(days=1)).replace(hour=1, minute=0, second=0)
        window = {
            "starts_at": day.isoformat(),
            "ends_at": (day + timedelta(hours=9)).isoformat(),
        }
        projects = []
        for title in ("甲", "乙", "丙"):
            body = {
                "book": "vol",
                "organisation_id": org["id"],
                "title": title,
                "category": "elder_care",
                "place": "社区",
                "capacity": 8,
            } | window
            projects.append((await post(one, "/v1/projects", body)).json()["id"])

        signups = await asyncio.gather(
            *(
                post(clients[i % 2], f"/v1/projects/{projects[0]}/signups", {"member_id": m["id"]})
                for i, m in enumerate(members)
            )
        )
        assert sorted(r.status_code for r in signups) == [201] * 8 + [409] * 16

        # One member, the same hour entered in three projects through both processes.
        clash = await asyncio.gather(
            *(
                post(
                    clients[i % 2],
                    "/v1/service-records",
                    {
                        "project_id": projects[i % 3],
                        "member_id": members[0]["id"],
                        "started_at": (day + timedelta(hours=1)).isoformat(),
                        "ended_at": (day + timedelta(hours=2)).isoformat(),
                        "attested_by": "站长",
                    },
                )
                for i in range(6)
            )
        )
        assert sorted(r.status_code for r in clash) == [201] + [422] * 5
        record = next(r.json()["id"] for r in clash if r.status_code == 201)

        approvals = await asyncio.gather(
            *(clients[i % 2].post(f"/v1/service-records/{record}/approve") for i in range(10))
        )
        assert {r.status_code for r in approvals} == {200}
        assert len({r.json()["tx_id"] for r in approvals}) == 1
        hours = next(a["account_id"] for a in members[0]["accounts"] if a["asset"] == "HOUR")
        assert (await one.get(f"/v1/accounts/{hours}")).json()["posted"] == 60
    finally:
        for client in clients:
            await client.aclose()
