"""A donation into an organisation's pool fails or dies between its posting and its row: the
journal and the `donations` rows still agree, with no retry (docs/exchange.md §3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.kit import faults
from tests.conftest import Api, ScratchDatabase
from tests.consistency.exchange import dies_posting, problems_and_heads
from tests.consistency.faults import fails, killed_at
from tests.exchange.market import Market, build_market

POINT = "pool.donate.posted"
BODY = {"asset": "POINT", "amount": 250, "donor": {"name": "张善人"}}


@pytest.fixture
async def market(api: Api) -> Market:
    return await build_market(api, donated=1_000)


async def _pool(m: Market) -> int:
    pools = await m.ok("GET", f"/v1/organisations/{m.charity}/pools")
    return int(next(p["posted"] for p in pools if p["asset"] == "POINT"))


async def _donated_again(m: Market, database: ScratchDatabase, head: int) -> None:
    """The donation can then be made as if never tried: once, as a whole."""
    r = await m.call("POST", f"/v1/organisations/{m.charity}/donations", "admin", body=BODY)
    assert r.status_code == 201, r.text
    assert await problems_and_heads(database, m.book) == ([], [head + 1])
    assert await _pool(m) == 1_250
    donation = await m.ok("GET", f"/v1/donations/{r.json()['id']}")
    assert donation["tx_id"] == r.json()["tx_id"] and donation["donor"]["name"] == "张善人"


async def test_a_donation_failing_after_its_posting_leaves_neither(
    market: Market, database: ScratchDatabase, armed: Any
) -> None:
    m = market
    _, [head] = await problems_and_heads(database, m.book)
    armed(POINT)
    await fails(m.call("POST", f"/v1/organisations/{m.charity}/donations", "admin", body=BODY))
    assert await problems_and_heads(database, m.book) == ([], [head])
    assert await _pool(m) == 1_000
    faults.disarm(POINT)
    await _donated_again(m, database, head)


@pytest.mark.slow
async def test_a_donation_killed_after_its_posting_leaves_neither(
    market: Market, database: ScratchDatabase, cli_env: dict[str, str], tmp_path: Path
) -> None:
    m = market
    _, [head] = await problems_and_heads(database, m.book)
    async with killed_at(cli_env, tmp_path, POINT) as server:
        path = f"/v1/organisations/{m.charity}/donations"
        await dies_posting(server, m.tokens["admin"], path, BODY)
    assert await problems_and_heads(database, m.book) == ([], [head])
    assert await _pool(m) == 1_000
    await _donated_again(m, database, head)
