"""Executing an exchange quote fails or dies between its posting and the quote's update: the
journal and the quote still agree, with no retry (docs/exchange.md §5.2)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.kit import faults
from tests.conftest import Api, ScratchDatabase
from tests.consistency.exchange import dies_posting, problems_and_heads
from tests.consistency.faults import fails, killed_at
from tests.exchange.market import Market, build_market

POINT = "exchange.execute.posted"


@pytest.fixture
async def market(api: Api) -> Market:
    return await build_market(api)


async def _member_with_hours(m: Market) -> dict[str, Any]:
    member = await m.member()
    await m.earn(member, 600)
    await m.rule()
    return member


async def _unchanged(m: Market, member: dict[str, Any], quote_id: str) -> None:
    """The quote is still open and nothing moved."""
    quote = await m.ok("GET", f"/v1/exchange/quotes/{quote_id}")
    assert (quote["status"], quote["tx_id"]) == ("open", None)
    assert await m.balance(member["hours"]) == 600 and await m.points(member) == 0


async def _done_again(
    m: Market, database: ScratchDatabase, member: dict[str, Any], quote: str, head: int
) -> None:
    """The same quote executes normally afterwards, as a whole, once."""
    r = await m.exchange(quote)
    assert r.status_code == 201, r.text
    assert await problems_and_heads(database, m.book) == ([], [head + 1])
    assert await m.balance(member["hours"]) == 540 and await m.points(member) == 10


async def test_an_exchange_failing_after_its_posting_leaves_neither(
    market: Market, database: ScratchDatabase, armed: Any
) -> None:
    m = market
    member = await _member_with_hours(m)
    quote = (await m.quote(member, 60)).json()
    _, [head] = await problems_and_heads(database, m.book)
    armed(POINT)
    await fails(m.exchange(quote["id"]))
    assert await problems_and_heads(database, m.book) == ([], [head])
    await _unchanged(m, member, quote["id"])
    faults.disarm(POINT)
    await _done_again(m, database, member, quote["id"], head)


@pytest.mark.slow
async def test_an_exchange_killed_after_its_posting_leaves_neither(
    market: Market, database: ScratchDatabase, cli_env: dict[str, str], tmp_path: Path
) -> None:
    m = market
    member = await _member_with_hours(m)
    async with killed_at(cli_env, tmp_path, POINT) as server:
        # Quoted at the server's clock (a real one), once it is up: it has 60 s to execute.
        m.at(datetime.now(UTC))
        quote = (await m.quote(member, 60)).json()
        _, [head] = await problems_and_heads(database, m.book)
        await dies_posting(server, m.tokens["admin"], "/v1/exchanges", {"quote_id": quote["id"]})
    # Nobody retries: the quote and the journal agree as they are.
    assert await problems_and_heads(database, m.book) == ([], [head])
    await _unchanged(m, member, quote["id"])
    await _done_again(m, database, member, quote["id"], head)
