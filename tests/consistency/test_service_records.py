"""Approving and reversing a service record fail or die between the posting and the record's
update: the journal and the record still agree, with no retry (docs/consistency.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import Api, ScratchDatabase
from tests.consistency import checks
from tests.consistency.faults import dies, fails, killed_at
from tests.volunteering.district import MORNING, District, build_district


@pytest.fixture
async def district(api: Api) -> District:
    return await build_district(api)


async def _approved_record(d: District, approve: bool, spend: bool = False) -> dict[str, Any]:
    project = await d.project()
    member = await d.member()
    entered = await d.manual(project["id"], member["id"], MORNING, 60)
    assert entered.status_code == 201, entered.text
    record: dict[str, Any] = entered.json()
    if approve:
        await d.ok("POST", f"/v1/service-records/{record['id']}/approve", "team_checker")
    if spend:  # most of it spent: reversing it takes a correction (docs/volunteering.md §6.1)
        body = {"member_id": member["id"], "amount": 40}
        await d.ok("POST", f"/v1/books/{d.book}/public-pool/donations", "admin", body=body)
    return record | {"hours": member["hours"]}


BODIES: dict[str, Any] = {
    "approve": None,
    "reverse": {"reason": "时长录错"},
    "correct": {"reason": "时长录错", "remainder": "owed"},
}


async def _state(d: District, database: ScratchDatabase, record: dict[str, Any]) -> Any:
    conn = await asyncpg.connect(database.app_url)
    try:
        problems = await checks.all_problems(conn)
        head = await conn.fetchval("SELECT seq FROM book_heads WHERE book_code = $1", d.book)
    finally:
        await conn.close()
    stats = await d.ok("GET", f"/v1/stats/service?book={d.book}", "admin")
    now = await d.ok("GET", f"/v1/service-records/{record['id']}", "admin")
    return problems, head, stats["ledger"]["reconciled"], now["status"]


ACTIONS = [
    pytest.param("approve", False, "service_record.approve.posted", "pending", id="approve"),
    pytest.param("reverse", True, "service_record.reverse.posted", "approved", id="reverse"),
    pytest.param("correct", True, "service_record.reverse.posted", "approved", id="correct"),
]


def _path(record: dict[str, Any], action: str) -> str:
    return f"/v1/service-records/{record['id']}/{'reverse' if action == 'correct' else action}"


@pytest.mark.parametrize(("action", "approved", "point", "before"), ACTIONS)
async def test_an_action_failing_after_its_posting_leaves_neither(
    district: District,
    database: ScratchDatabase,
    armed: Any,
    action: str,
    approved: bool,
    point: str,
    before: str,
) -> None:
    d = district
    record = await _approved_record(d, approved, spend=action == "correct")
    _, head, _, _ = await _state(d, database, record)
    armed(point)
    await fails(d.call("POST", _path(record, action), "team_checker", body=BODIES[action]))
    assert await _state(d, database, record) == ([], head, True, before)


@pytest.mark.slow
@pytest.mark.parametrize(("action", "approved", "point", "before"), ACTIONS)
async def test_an_action_killed_after_its_posting_leaves_neither(
    district: District,
    database: ScratchDatabase,
    cli_env: dict[str, str],
    tmp_path: Path,
    action: str,
    approved: bool,
    point: str,
    before: str,
) -> None:
    d = district
    record = await _approved_record(d, approved, spend=action == "correct")
    _, head, _, _ = await _state(d, database, record)
    body = BODIES[action]
    async with killed_at(cli_env, tmp_path, point) as server:
        await dies(
            server.post(
                _path(record, action),
                json=body,
                headers={
                    "Authorization": f"Bearer {d.tokens['team_checker']}",
                    "Idempotency-Key": "killed",
                },
            )
        )
    # Nobody retries: the journal and the record agree as they are.
    assert await _state(d, database, record) == ([], head, True, before)
    # And the action can then be taken as if it had never been tried.
    again = await d.call("POST", _path(record, action), "team_checker", body=body)
    assert again.status_code == 200, again.text
    problems, later, reconciled, status = await _state(d, database, record)
    assert (problems, later, reconciled) == ([], head + 1, True)
    assert status == ("approved" if action == "approve" else "reversed")
