"""Pages of several accounts' legs (a member's history, an account's entries): read from each
account's own index range and merged, every leg comes once, newest first, and no page splits
an entry's legs (one entry with more of them than a page holds once lost the rest), for every
subset of accounts and every page size."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from tests.conftest import Api


async def post(api: Api, book: str, legs: list[tuple[str, int]]) -> None:
    r = await api.client.post(
        f"/v1/books/{book}/transactions",
        json={"kind": "transfer", "legs": [{"account_id": a, "amount": n} for a, n in legs]},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text


async def pages(api: Api, accounts: list[str], limit: int) -> list[list[Any]]:
    from app.ledger.service import list_entries_of_accounts

    found, before = [], None
    async with api.app.state.sessions() as session:
        while True:
            ids = [uuid.UUID(a) for a in accounts]
            page = await list_entries_of_accounts(session, ids, before, limit)
            found.append(page.items)
            if page.next_before_seq is None:
                return found
            before = page.next_before_seq


async def test_every_subset_and_page_size_reads_each_leg_once_in_order(api: Api) -> None:
    book = await api.book()
    issuance = await api.account(book, overdraft_limit=10**9)
    a, b, c = [await api.account(book, overdraft_limit=10**6) for _ in range(3)]
    # Entries with one, two and three legs among a, b and c, in a varied order.
    for i in range(12):
        target = (a, b, c)[i % 3]
        await post(api, book, [(issuance, -(i + 1)), (target, i + 1)])
        if i % 4 == 1:
            await post(api, book, [(a, -1), (b, 1)])
        if i % 5 == 2:
            await post(api, book, [(issuance, -6), (a, 1), (b, 2), (c, 3)])
    accounts = [a, b, c]
    for size in (1, 2, 3):
        for subset in itertools.combinations(accounts, size):
            everything = (await pages(api, list(subset), 1000))[0]
            expected = [(leg.seq, leg.leg_index) for leg in everything]
            assert expected == sorted(expected, reverse=True)
            assert {leg.account_id for leg in everything} == {uuid.UUID(x) for x in subset}
            for limit in range(1, 8):
                read = await pages(api, list(subset), limit)
                got = [(leg.seq, leg.leg_index) for page in read for leg in page]
                assert got == expected, (subset, limit)
                for page, following in itertools.pairwise(read):
                    # An entry's legs stay on one page, even one with more of them than a
                    # page holds (that page is the entry, whole).
                    assert page and following, (subset, limit)
                    assert page[-1].seq != following[0].seq, (subset, limit)
