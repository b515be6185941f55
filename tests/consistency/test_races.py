"""Actions that append inside their own transaction race the group-commit postings of the same
book, in two server processes: the chain stays gapless and valid, every balance exact, and the
records agree with the journal."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.ledger.verify_runner import verify_book
from tests.conftest import Api, ScratchDatabase
from tests.consistency import checks
from tests.consistency.faults import serving
from tests.volunteering.district import MORNING, District, build_district

RECORDS = 24
TRANSFERS = 120


@pytest.mark.slow
async def test_approvals_and_transfers_race_across_two_processes(
    api: Api, database: ScratchDatabase, cli_env: dict[str, str], tmp_path: Path
) -> None:
    d: District = await build_district(api)
    project = await d.project(capacity=RECORDS)
    records = []
    for index in range(RECORDS):
        member = await d.member()
        entered = await d.manual(project["id"], member["id"], MORNING, 30 + index)
        assert entered.status_code == 201, entered.text
        records.append(entered.json()["id"])
    issuance, target = await api.funded(d.book, 10_000)
    other = await api.account(d.book)
    env = {"TIMEBANK_FOLLOW_LOG_IN_SERVER": "false"}
    async with serving(cli_env, tmp_path, "second", env) as served:
        clients = [api.client, served.client]

        def approve(i: int, record: str) -> Any:
            return clients[i % 2].post(
                f"/v1/service-records/{record}/approve",
                headers={
                    "Authorization": f"Bearer {d.tokens['team_checker']}",
                    "Idempotency-Key": uuid.uuid4().hex,
                },
            )

        def transfer(i: int) -> Any:
            src, dst = (target, other) if i % 2 else (issuance, target)
            return clients[i % 2].post(
                f"/v1/books/{d.book}/transactions",
                json={
                    "kind": "transfer",
                    "legs": [
                        {"account_id": src, "amount": -1},
                        {"account_id": dst, "amount": 1},
                    ],
                },
                headers={
                    "Authorization": f"Bearer {api.token}",
                    "Idempotency-Key": uuid.uuid4().hex,
                },
            )

        requests = [approve(i, r) for i, r in enumerate(records)]
        requests += [transfer(i) for i in range(TRANSFERS)]
        answers = await asyncio.gather(*requests)
    assert [a.status_code for a in answers[:RECORDS]] == [200] * RECORDS
    assert [a.status_code for a in answers[RECORDS:]] == [201] * TRANSFERS
    verified = await verify_book(database.app_url, d.book)
    conn = await asyncpg.connect(database.app_url)
    try:
        assert await checks.all_problems(conn) == []
        credits = await conn.fetchval(
            "SELECT count(*) FROM journal_entries WHERE book_code = $1 AND kind = 'service_credit'",
            d.book,
        )
        head = await conn.fetchval("SELECT seq FROM book_heads WHERE book_code = $1", d.book)
    finally:
        await conn.close()
    assert credits == RECORDS and verified.entries == head
