"""A transfer between books fails or dies between its two linked entries and its row: both
journals, the transfers table and the clearing reconciliation still agree, with no retry
(docs/exchange.md §6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.kit import faults
from tests.conftest import ScratchDatabase
from tests.consistency.exchange import dies_posting, problems_and_heads
from tests.consistency.faults import fails, killed_at
from tests.exchange.test_recognition import Region

POINT = "recognition.transfer.posted"


async def _setup(g: Region) -> tuple[dict[str, Any], dict[str, Any]]:
    """A member of `a` holding 300 minutes, and an agreement from `a` to `b`."""
    member = await g.member(g.a)
    await g.earn(g.a, member["hours"], 300)
    agreement = await g.agree(g.a, g.b)
    return member, agreement


async def _reconciled(g: Region) -> tuple[bool, bool]:
    report = await g.reconciliation()
    return report["mirrored"], report["recorded_matches"]


async def _unchanged(g: Region, member: dict[str, Any]) -> None:
    assert await g.posted(member["hours"]) == 300
    assert (
        await g.member_account(g.b, member["id"]) is None
        or await g.posted(str(await g.member_account(g.b, member["id"]))) == 0
    )
    listed = await g.ok("GET", f"/v1/members/{member['id']}/recognition-transfers")
    assert listed["items"] == []
    assert await _reconciled(g) == (True, True)


async def _moved_again(
    g: Region, database: ScratchDatabase, member: Any, agreement: Any, heads: list[int]
) -> None:
    """The transfer can then be made as if never tried: both entries and the row, once."""
    r = await g.transfer(agreement["id"], member["id"], 120, who="admin_a")
    assert r.status_code == 201, r.text
    assert await problems_and_heads(database, g.a, g.b) == ([], [heads[0] + 1, heads[1] + 1])
    assert await _reconciled(g) == (True, True)
    assert await g.posted(member["hours"]) == 180
    assert await g.posted(str(await g.member_account(g.b, member["id"]))) == 120
    await g.verify(g.a, g.b)


async def test_a_transfer_failing_after_its_posting_leaves_neither(
    region: Region, database: ScratchDatabase, armed: Any
) -> None:
    g = region
    member, agreement = await _setup(g)
    _, heads = await problems_and_heads(database, g.a, g.b)
    armed(POINT)
    await fails(g.transfer(agreement["id"], member["id"], 120, who="admin_a"))
    assert await problems_and_heads(database, g.a, g.b) == ([], heads)
    await _unchanged(g, member)
    faults.disarm(POINT)
    await _moved_again(g, database, member, agreement, heads)


@pytest.mark.slow
async def test_a_transfer_killed_after_its_posting_leaves_neither(
    region: Region, database: ScratchDatabase, cli_env: dict[str, str], tmp_path: Path
) -> None:
    g = region
    member, agreement = await _setup(g)
    _, heads = await problems_and_heads(database, g.a, g.b)
    body = {"agreement_id": agreement["id"], "member_id": member["id"], "amount": 120}
    async with killed_at(cli_env, tmp_path, POINT) as server:
        await dies_posting(server, g.tokens["admin_a"], "/v1/recognition/transfers", body)
    assert await problems_and_heads(database, g.a, g.b) == ([], heads)
    await _unchanged(g, member)
    await _moved_again(g, database, member, agreement, heads)
