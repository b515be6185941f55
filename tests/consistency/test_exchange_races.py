"""Exchange actions appending inside their own transactions, all at once on one book and
beside the sequencer's group commit: none deadlocks or is lost, and the journal and the
features' rows agree afterwards."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import Api, ScratchDatabase
from tests.consistency.exchange import problems_and_heads
from tests.exchange.market import build_market


async def test_concurrent_gifts_donations_exchanges_and_transfers_all_commit_whole(
    api: Api, database: ScratchDatabase
) -> None:
    m = await build_market(api, donated=1_000)
    a, b = await m.member(), await m.member()
    for member in (a, b):
        await m.earn(member, 1_000)
    await m.rule()
    quotes = [(await m.quote(a, 60)).json()["id"] for _ in range(4)]
    _, [head] = await problems_and_heads(database, m.book)

    def gift(giver: dict[str, Any], receiver: dict[str, Any]) -> Any:
        body = {"from_member_id": giver["id"], "to_member_id": receiver["id"], "amount": 10}
        return m.call("POST", "/v1/gifts", "admin", body=body)

    requests = [
        *(gift(a, b) for _ in range(6)),
        *(gift(b, a) for _ in range(6)),
        *(m.exchange(q) for q in quotes),
        *(
            m.call(
                "POST",
                f"/v1/books/{m.book}/public-pool/donations",
                "admin",
                body={"member_id": b["id"], "amount": 5},
            )
            for _ in range(4)
        ),
        *(
            m.call(
                "POST",
                f"/v1/organisations/{m.charity}/donations",
                "admin",
                body={"asset": "POINT", "amount": 7, "donor": {"name": "匿名"}},
            )
            for _ in range(4)
        ),
        *(m.api.transfer(m.book, m.team_issuance, b["hours"], 1) for _ in range(6)),
    ]
    answers = await asyncio.gather(*requests)
    assert [r.status_code for r in answers] == [201] * len(requests), [
        r.text for r in answers if r.status_code != 201
    ]
    assert await problems_and_heads(database, m.book) == ([], [head + len(requests)])
    assert await m.balance(a["hours"]) == 1_000 - 4 * 60
    assert await m.balance(b["hours"]) == 1_000 - 4 * 5 + 6
    assert await m.points(a) == 4 * 10
