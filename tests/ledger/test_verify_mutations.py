"""verify binds every stored column of every entry and leg: change any one, and it fails there.

A book with every kind of entry (transfers in two assets, a hold posted in part, a hold voided,
a reversal, a notice) is read back as verify reads it; then each column of each row is changed
in memory, one at a time, and the verifier must name that entry's seq (or, for a link of the
chain, the entry whose hash the next one no longer matches).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import asyncpg
import pytest

from app.ledger.service import post_notice
from app.ledger.verify import BookVerifier, VerificationError
from app.ledger.verify_runner import ENTRIES, LEGS, stored_balances
from tests.conftest import Api, ScratchDatabase

Rows = list[tuple[Any, ...]]
OTHER_UUID = "00000000-0000-4000-8000-000000000001"


async def every_kind_of_entry(api: Api) -> str:
    book = await api.book()
    issuance, member = await api.funded(book, 100)
    other = await api.account(book)
    points, holder = await api.funded(book, 30, asset="POINT")
    assert (await api.transfer(book, member, other, 7)).status_code == 201
    mixed = await api.client.post(
        f"/v1/books/{book}/transactions",
        json={
            "kind": "swap",
            "legs": [
                {"account_id": member, "amount": -5},
                {"account_id": issuance, "amount": 5},
                {"account_id": points, "amount": -20},
                {"account_id": holder, "amount": 20},
            ],
        },
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert mixed.status_code == 201, mixed.text
    for amount, step, body in ((9, "post", {"amount": 4}), (3, "void", None)):
        hold = await api.client.post(
            f"/v1/books/{book}/holds",
            json={"from_account_id": member, "to_account_id": other, "amount": amount},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        assert hold.status_code == 201, hold.text
        done = await api.client.post(
            f"/v1/holds/{hold.json()['id']}/{step}",
            json=body,
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        assert done.status_code == 200, done.text
    reversed_ = await api.client.post(
        f"/v1/transactions/{mixed.json()['id']}/reversal",
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert reversed_.status_code == 201, reversed_.text
    notice = await post_notice(api.app.state.sequencer, book, "test", {"what": "a fact"})
    assert notice.status_code == 201
    return book


def check(
    book: str,
    entries: Sequence[tuple[Any, ...]],
    legs: Sequence[tuple[Any, ...]],
    stored: tuple[tuple[int, str], dict[str, tuple[int, int, int, int]]],
) -> int:
    """Feed the rows as verify does, then compare with the stored head and balances; the
    number of entries, or the VerificationError."""
    by_seq: dict[int, list[tuple[Any, ...]]] = {}
    for leg in legs:
        by_seq.setdefault(leg[0], []).append(leg)
    verifier = BookVerifier(book)
    for entry in entries:
        verifier.feed(entry, by_seq.pop(entry[0], []))
    if by_seq:
        raise VerificationError(book, min(by_seq), "a leg has no entry with its seq")
    verifier.finish(*stored)
    return verifier.seq


def replaced(row: tuple[Any, ...], column: int, value: Any) -> tuple[Any, ...]:
    return (*row[:column], value, *row[column + 1 :])


def mutations(entries: Rows, legs: Rows) -> Iterator[tuple[str, int, Rows, Rows]]:
    """(what, the seq verify must name at the latest, entries, legs), one change each."""
    for i, entry in enumerate(entries):
        seq = entry[0]

        def with_entry(column: int, value: Any, i: int = i) -> Rows:
            return [*entries[:i], replaced(entries[i], column, value), *entries[i + 1 :]]

        yield "seq", seq, with_entry(0, seq + 1), legs
        yield "tx_id", seq, with_entry(1, OTHER_UUID), legs
        for kind in ("transfer", "hold", "hold.post", "hold.void", "reversal", "notice.x"):
            if kind != entry[2]:
                yield f"kind {kind}", seq, with_entry(2, kind), legs
        yield "posted_at", seq, with_entry(3, "2000-01-01T00:00:00.000000Z"), legs
        yield "prev_hash", seq, with_entry(4, "f" * 64), legs
        yield "entry_hash", seq, with_entry(5, "e" * 64), legs
        memo = entry[6].replace(b'"memo":"', b'"memo":"x', 1)
        yield "body", seq, with_entry(6, memo), legs
        yield "reverses", seq, with_entry(7, None if entry[7] else OTHER_UUID), legs
        yield "resolves_hold", seq, with_entry(8, None if entry[8] else OTHER_UUID), legs
        yield "deleted entry", seq, [*entries[:i], *entries[i + 1 :]], legs
        own = [j for j, leg in enumerate(legs) if leg[0] == seq]
        for j in own:
            leg = legs[j]
            for column, value in (
                (1, OTHER_UUID),
                (2, "POINT" if leg[2] == "HOUR" else "HOUR"),
                (3, leg[3] + 1),
                (4, leg[4] + 1),
                (5, leg[5] + 1),
                (6, leg[6] + 1),
            ):
                changed = [*legs[:j], replaced(leg, column, value), *legs[j + 1 :]]
                yield f"leg {j - own[0]} column {column}", seq, entries, changed
            yield f"deleted leg {j - own[0]}", seq, entries, [*legs[:j], *legs[j + 1 :]]
        if len(own) >= 2:
            swapped = list(legs)
            swapped[own[0]], swapped[own[1]] = swapped[own[1]], swapped[own[0]]
            yield "legs swapped", seq, entries, swapped


async def test_every_column_of_every_row_is_bound(api: Api, database: ScratchDatabase) -> None:
    book = await every_kind_of_entry(api)
    conn = await asyncpg.connect(database.app_url)
    try:
        entries = [tuple(r) for r in await conn.fetch(ENTRIES, book, 1, 10**9)]
        legs = [tuple(r) for r in await conn.fetch(LEGS, book, 1, 10**9)]
        head = await conn.fetchrow(
            "SELECT seq, entry_hash FROM book_heads WHERE book_code = $1", book
        )
        accounts = await stored_balances(conn, book)
    finally:
        await conn.close()
    kinds = {entry[2] for entry in entries}
    assert {"transfer", "swap", "hold", "hold.post", "hold.void", "reversal"} <= kinds
    assert any(kind.startswith("notice.") for kind in kinds)
    stored = ((head["seq"], head["entry_hash"]), accounts)
    assert check(book, entries, legs, stored) == len(entries)
    tried = 0
    for what, seq, changed_entries, changed_legs in mutations(entries, legs):
        tried += 1
        with pytest.raises(VerificationError) as caught:
            check(book, changed_entries, changed_legs, stored)
            pytest.fail(f"{what} at seq {seq} went unnoticed")
        # A changed link is reported at the entry that no longer hashes to it: one earlier.
        assert seq - 1 <= caught.value.seq <= seq, (what, seq, caught.value)
    assert tried > 300
