"""A gift fails or dies between its posting and its answer's commit: the journal and the
answers kept under Idempotency-Keys still agree, with no retry (docs/exchange.md §8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.kit import faults
from tests.conftest import Api, ScratchDatabase
from tests.consistency.exchange import dies_posting, problems_and_heads
from tests.consistency.faults import fails, killed_at
from tests.volunteering.district import District, build_district

POINT = "gift.give.posted"


@pytest.fixture
async def district(api: Api) -> District:
    return await build_district(api)


async def _members(d: District) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A giver holding 300 minutes, a receiver, and the gift's body."""
    giver, receiver = await d.member(), await d.member()
    r = await d.api.transfer(d.book, d.team_issuance, giver["hours"], 300)
    assert r.status_code == 201, r.text
    body = {"from_member_id": giver["id"], "to_member_id": receiver["id"], "amount": 120}
    return giver, receiver, body


async def _balances(d: District, giver: dict[str, Any], receiver: dict[str, Any]) -> list[int]:
    return [await d.balance(giver["hours"]), await d.balance(receiver["hours"])]


async def _given_again(
    d: District, database: ScratchDatabase, members: tuple[Any, Any, Any], head: int
) -> None:
    """The gift can then be made as if never tried: once, as a whole."""
    giver, receiver, body = members
    r = await d.call("POST", "/v1/gifts", "admin", body=body)
    assert r.status_code == 201, r.text
    assert await problems_and_heads(database, d.book) == ([], [head + 1])
    assert await _balances(d, giver, receiver) == [180, 120]
    listed = await d.ok("GET", f"/v1/members/{receiver['id']}/gifts")
    assert [g["id"] for g in listed["items"]] == [r.json()["gift"]["id"]]


async def test_a_gift_failing_after_its_posting_leaves_neither(
    district: District, database: ScratchDatabase, armed: Any
) -> None:
    d = district
    members = await _members(d)
    _, [head] = await problems_and_heads(database, d.book)
    armed(POINT)
    await fails(d.call("POST", "/v1/gifts", "admin", body=members[2]))
    assert await problems_and_heads(database, d.book) == ([], [head])
    assert await _balances(d, *members[:2]) == [300, 0]
    faults.disarm(POINT)
    await _given_again(d, database, members, head)


@pytest.mark.slow
async def test_a_gift_killed_after_its_posting_leaves_neither(
    district: District, database: ScratchDatabase, cli_env: dict[str, str], tmp_path: Path
) -> None:
    d = district
    members = await _members(d)
    _, [head] = await problems_and_heads(database, d.book)
    async with killed_at(cli_env, tmp_path, POINT) as server:
        await dies_posting(server, d.tokens["admin"], "/v1/gifts", members[2])
    # Nobody retries: no gift in the journal, none answered.
    assert await problems_and_heads(database, d.book) == ([], [head])
    assert await _balances(d, *members[:2]) == [300, 0]
    await _given_again(d, database, members, head)
