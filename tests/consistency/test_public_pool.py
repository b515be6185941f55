"""A donation to the public time pool, or a grant from it, fails or dies between its posting
and its answer's commit: the journal and the kept answers still agree, with no retry
(docs/exchange.md §10)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.kit import faults
from tests.conftest import Api, ScratchDatabase
from tests.consistency.exchange import dies_posting, problems_and_heads
from tests.consistency.faults import fails, killed_at
from tests.volunteering.district import District, build_district

ACTIONS = [
    pytest.param("donations", "public_pool.donate.posted", id="donate"),
    pytest.param("grants", "public_pool.grant.posted", id="grant"),
]


@pytest.fixture
async def district(api: Api) -> District:
    return await build_district(api)


async def _setup(d: District, action: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A member holding 500 minutes and a pool holding 200 of them; the action's body (the
    member gives 150, or is granted 150)."""
    member = await d.member()
    r = await d.api.transfer(d.book, d.team_issuance, member["hours"], 700)
    assert r.status_code == 201, r.text
    donated = await d.call(
        "POST",
        f"/v1/books/{d.book}/public-pool/donations",
        "admin",
        body={"member_id": member["id"], "amount": 200},
    )
    assert donated.status_code == 201, donated.text
    body: dict[str, Any] = {"member_id": member["id"], "amount": 150}
    if action == "grants":
        body["reason"] = "独居老人冬季助餐"
    return member, body


async def _balances(d: District, member: dict[str, Any]) -> list[int]:
    pool = await d.ok("GET", f"/v1/books/{d.book}/public-pool")
    return [await d.balance(member["hours"]), pool["pools"][0]["posted"]]


async def _done_again(
    d: District, database: ScratchDatabase, action: str, member: Any, body: Any, head: int
) -> None:
    """The action can then be taken as if never tried: once, as a whole."""
    r = await d.call("POST", f"/v1/books/{d.book}/public-pool/{action}", "admin", body=body)
    assert r.status_code == 201, r.text
    assert await problems_and_heads(database, d.book) == ([], [head + 1])
    assert await _balances(d, member) == ([350, 350] if action == "donations" else [650, 50])


@pytest.mark.parametrize(("action", "point"), ACTIONS)
async def test_a_pool_action_failing_after_its_posting_leaves_neither(
    district: District, database: ScratchDatabase, armed: Any, action: str, point: str
) -> None:
    d = district
    member, body = await _setup(d, action)
    _, [head] = await problems_and_heads(database, d.book)
    armed(point)
    path = f"/v1/books/{d.book}/public-pool/{action}"
    await fails(d.call("POST", path, "admin", body=body))
    assert await problems_and_heads(database, d.book) == ([], [head])
    assert await _balances(d, member) == [500, 200]
    faults.disarm(point)
    await _done_again(d, database, action, member, body, head)


@pytest.mark.slow
@pytest.mark.parametrize(("action", "point"), ACTIONS)
async def test_a_pool_action_killed_after_its_posting_leaves_neither(
    district: District,
    database: ScratchDatabase,
    cli_env: dict[str, str],
    tmp_path: Path,
    action: str,
    point: str,
) -> None:
    d = district
    member, body = await _setup(d, action)
    _, [head] = await problems_and_heads(database, d.book)
    async with killed_at(cli_env, tmp_path, point) as server:
        path = f"/v1/books/{d.book}/public-pool/{action}"
        await dies_posting(server, d.tokens["admin"], path, body)
    assert await problems_and_heads(database, d.book) == ([], [head])
    assert await _balances(d, member) == [500, 200]
    await _done_again(d, database, action, member, body, head)
