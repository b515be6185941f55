"""A batch is read without locks, or taken from what the book's last batch left, and written with
a guard: if what it read moved in between, the write stores nothing and the batch is read again;
after three such refusals it is redone under locks, and after any refusal the book's next batches
are read under locks from the start (app/ledger/sequencer.py, store.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from app.ledger import sequencer as sequencer_module
from app.ledger import store
from app.ledger.outcomes import IdempotencyRef
from app.ledger.posting import Draft
from app.ledger.sequencer import OPTIMISTIC_ATTEMPTS, Sequencer
from app.ledger.verify_runner import verify_book
from tests.conftest import Api, ScratchDatabase

RELOCKS = "timebank_ledger_batch_relocks_total"
REREADS = "timebank_ledger_batch_rereads_total"


def _counter(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def _between_read_and_write(
    monkeypatch: pytest.MonkeyPatch, action: Callable[[], Awaitable[None]], times: int = 1
) -> list[str]:
    """Run `action` after the batch's read and before its write, for its first `times` writes;
    returns what each write did ("written" or the error's class name), the action's own too."""
    original = store.write_batch
    seen: list[str] = []
    left = [times]
    acting = [False]

    async def write_batch(*args: Any, **kwargs: Any) -> None:
        if left[0] and not acting[0]:  # the action's own writes pass straight through
            left[0] -= 1
            acting[0] = True
            try:
                await action()
            finally:
                acting[0] = False
        try:
            await original(*args, **kwargs)
        except asyncpg.PostgresError as exc:
            seen.append(type(exc).__name__)
            raise
        seen.append("written")

    monkeypatch.setattr(store, "write_batch", write_batch)
    return seen


def _transfer(book: str, src: str, dst: str, amount: int) -> Draft:
    return Draft(book, "post", "transfer", [(src, -amount), (dst, amount)])


def _ref(api: Api) -> IdempotencyRef:
    return IdempotencyRef(api.credential, f"guard:{uuid.uuid4()}", "h")


async def test_an_account_frozen_after_the_read_is_not_posted_to(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 100)

    async def freeze() -> None:
        r = await api.client.patch(f"/v1/accounts/{member}", json={"status": "frozen"})
        assert r.status_code == 200, r.text

    rereads = _counter(REREADS)
    writes = _between_read_and_write(monkeypatch, freeze)
    outcome = await api.app.state.sequencer.submit(_transfer(book, member, issuance, 10), _ref(api))
    assert writes == ["SerializationError", "written"]
    assert _counter(REREADS) >= rereads + 1
    assert outcome.status_code == 409, outcome.body
    assert outcome.body["type"].endswith(":account-not-open")
    assert (await api.balance(member))["posted"] == 100


async def test_a_head_moved_by_another_process_makes_the_batch_read_again(
    api: Api, database: ScratchDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 100)
    other = Sequencer(database.app_url)  # what a second server process runs
    await other.start()
    try:

        async def post_elsewhere() -> None:
            outcome = await other.submit(_transfer(book, member, issuance, 70), _ref(api))
            assert outcome.status_code == 201, outcome.body

        writes = _between_read_and_write(monkeypatch, post_elsewhere)
        # Read before the other's posting, this one fits; after it, only 30 are left.
        outcome = await api.app.state.sequencer.submit(
            _transfer(book, member, issuance, 50), _ref(api)
        )
    finally:
        await other.close()
    # The other process's batch, then this one's guarded write (refused), then its redo.
    assert writes == ["written", "SerializationError", "written"]
    assert outcome.status_code == 409, outcome.body
    assert outcome.body["type"].endswith(":insufficient-funds")
    assert (await api.balance(member))["posted"] == 30
    result = await verify_book(database.app_url, book)
    assert result.entries == 2


async def test_a_book_that_keeps_moving_is_written_under_locks(
    api: Api, database: ScratchDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 100)
    other = Sequencer(database.app_url)
    await other.start()
    try:

        async def post_elsewhere() -> None:
            outcome = await other.submit(_transfer(book, member, issuance, 10), _ref(api))
            assert outcome.status_code == 201, outcome.body

        relocks = _counter(RELOCKS, {"reason": "moved"})
        # The first try is on what the funding batch left (remembered), then come the reads.
        tries = 1 + OPTIMISTIC_ATTEMPTS
        writes = _between_read_and_write(monkeypatch, post_elsewhere, tries)
        outcome = await api.app.state.sequencer.submit(
            _transfer(book, member, issuance, 50), _ref(api)
        )
    finally:
        await other.close()
    # Each optimistic try is overtaken by the other process; the locked redo is not.
    assert writes == ["written", "SerializationError"] * tries + ["written"]
    assert _counter(RELOCKS, {"reason": "moved"}) == relocks + 1
    assert outcome.status_code == 201, outcome.body
    assert (await api.balance(member))["posted"] == 100 - 10 * tries - 50
    result = await verify_book(database.app_url, book)
    assert result.entries == 2 + tries


async def test_two_sequencers_racing_on_one_book_keep_every_invariant(
    api: Api, database: ScratchDatabase
) -> None:
    """Two processes' sequencers post to one book at once, in waves of small batches:
    withdrawals against a balance that covers a quarter of them, and credits to other accounts.
    Their batches overtake each other between read and write (in trials, about ten refused
    writes read again and two or three batches taken under locks a run); exactly the covered
    withdrawals pass, the chain is gapless and verifies, and no balance drifts."""
    book = await api.book()
    issuance, spender = await api.funded(book, 50)
    sink = await api.account(book)
    members = [await api.account(book) for _ in range(4)]
    other = Sequencer(database.app_url)
    await other.start()
    sequencers = [api.app.state.sequencer, other]
    try:
        tasks = []
        for i in range(400):
            draft = (
                _transfer(book, spender, sink, 1)
                if i % 2 == 0
                else _transfer(book, issuance, members[i // 2 % 4], 2)
            )
            tasks.append(asyncio.create_task(sequencers[(i // 2) % 2].submit(draft, _ref(api))))
            if i % 8 == 7:  # in waves: many small batches from both, overtaking each other
                await asyncio.sleep(0.001)
        outcomes = await asyncio.gather(*tasks)
    finally:
        await other.close()
    spent = [o.status_code for o in outcomes[0::2]]
    assert spent.count(201) == 50 and spent.count(409) == 150
    assert all(o.status_code == 201 for o in outcomes[1::2])
    seqs = sorted(o.body["seq"] for o in outcomes if o.status_code == 201)
    assert seqs == list(range(2, 2 + 250))
    assert (await api.balance(spender))["posted"] == 0
    assert (await api.balance(sink))["posted"] == 50
    assert [(await api.balance(m))["posted"] for m in members] == [100] * 4
    result = await verify_book(database.app_url, book)
    assert result.entries == 251


async def _post_from_another_process(
    database: ScratchDatabase, draft: Draft, ref: IdempotencyRef
) -> None:
    other = Sequencer(database.app_url)  # what a second server process runs
    await other.start()
    try:
        outcome = await other.submit(draft, ref)
        assert outcome.status_code == 201, outcome.body
    finally:
        await other.close()


def _record_reads(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """From now on, each batch's read of the state: whether it took locks."""
    locked: list[bool] = []
    original = store.load_state

    async def load_state(*args: Any, **kwargs: Any) -> store.BatchState:
        locked.append(kwargs["lock"])
        return await original(*args, **kwargs)

    monkeypatch.setattr(store, "load_state", load_state)
    return locked


async def test_a_batch_on_accounts_the_last_batches_wrote_is_not_read(
    api: Api, database: ScratchDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 100)
    other_member = await api.account(book)
    reads = _record_reads(monkeypatch)
    sequencer = api.app.state.sequencer
    # The accounts of earlier batches are remembered together while the head has not moved.
    assert (
        await sequencer.submit(_transfer(book, member, other_member, 5), _ref(api))
    ).status_code == 201
    assert len(reads) == 1  # other_member was not known yet
    for amount in (1, 2, 3):
        outcome = await sequencer.submit(_transfer(book, issuance, other_member, amount), _ref(api))
        assert outcome.status_code == 201, outcome.body
        outcome = await sequencer.submit(_transfer(book, member, issuance, amount), _ref(api))
        assert outcome.status_code == 201, outcome.body
    assert len(reads) == 1
    assert (await api.balance(member))["posted"] == 100 - 5 - 6
    assert (await api.balance(other_member))["posted"] == 5 + 6
    await verify_book(database.app_url, book)


async def test_what_memory_cannot_know_is_read(
    api: Api, database: ScratchDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 100)
    sequencer = api.app.state.sequencer
    reads = _record_reads(monkeypatch)
    # A key answered before: the write fails on its unique index, the read finds the answer.
    ref = _ref(api)
    first = await sequencer.submit(_transfer(book, member, issuance, 10), ref)
    assert first.status_code == 201, first.body
    reads.clear()
    again = await sequencer.submit(_transfer(book, member, issuance, 10), ref)
    assert (again.status_code, again.replayed, again.payload) == (201, True, first.payload)
    assert len(reads) == 1
    # A status changed without an entry: a refusal from memory is not trusted, and the
    # change is seen both ways (posting to it refused, then allowed again).
    r = await api.client.patch(f"/v1/accounts/{member}", json={"status": "frozen"})
    assert r.status_code == 200, r.text
    refused = await sequencer.submit(_transfer(book, issuance, member, 1), _ref(api))
    assert refused.status_code == 409, refused.body
    r = await api.client.patch(f"/v1/accounts/{member}", json={"status": "open"})
    assert r.status_code == 200, r.text
    allowed = await sequencer.submit(_transfer(book, issuance, member, 1), _ref(api))
    assert allowed.status_code == 201, allowed.body
    # Another process's entry: the memory's head is stale, the guard refuses, the batch is read.
    await _post_from_another_process(database, _transfer(book, member, issuance, 80), _ref(api))
    short = await sequencer.submit(_transfer(book, member, issuance, 20), _ref(api))
    assert short.status_code == 409, short.body
    assert (await api.balance(member))["posted"] == 100 - 10 + 1 - 80
    # Someone else writes this book: its next batches are read under locks, not tried on
    # memory.
    reads.clear()
    outcome = await sequencer.submit(_transfer(book, issuance, member, 5), _ref(api))
    assert outcome.status_code == 201, outcome.body
    assert reads == [True]
    await verify_book(database.app_url, book)


async def test_accounts_remembered_before_another_process_wrote_are_read_again(
    api: Api, database: ScratchDatabase
) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 100)
    sequencer = api.app.state.sequencer
    assert (
        await sequencer.submit(_transfer(book, member, issuance, 10), _ref(api))
    ).status_code == 201
    await _post_from_another_process(database, _transfer(book, member, issuance, 50), _ref(api))
    # This batch is read (a new account); what was remembered of `member` is older than the
    # head it reads, so it must not be kept beside what it read.
    newcomer = await api.account(book)
    assert (
        await sequencer.submit(_transfer(book, issuance, newcomer, 1), _ref(api))
    ).status_code == 201
    outcome = await sequencer.submit(_transfer(book, member, issuance, 20), _ref(api))
    assert outcome.status_code == 201, outcome.body
    assert (await api.balance(member))["posted"] == 100 - 10 - 50 - 20
    await verify_book(database.app_url, book)


async def test_after_a_refused_write_the_next_batches_are_read_under_locks(
    api: Api, database: ScratchDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sequencer_module, "CONTENDED_BATCHES", 2)
    book = await api.book()
    issuance, member = await api.funded(book, 100)
    sequencer = api.app.state.sequencer
    contended = _counter(RELOCKS, {"reason": "contended"})
    await _post_from_another_process(database, _transfer(book, member, issuance, 10), _ref(api))
    locked = _record_reads(monkeypatch)
    for amount in (1, 2, 3, 4):
        outcome = await sequencer.submit(_transfer(book, member, issuance, amount), _ref(api))
        assert outcome.status_code == 201, outcome.body
    # 1: memory refused by the guard, then read without locks (the first of the two batches);
    # 2: read under locks; 3: read without locks again (nothing remembered of a locked batch);
    # 4: on memory, not read.
    assert locked == [False, True, False]
    assert _counter(RELOCKS, {"reason": "contended"}) == contended + 1
    assert (await api.balance(member))["posted"] == 100 - 10 - 10
    await verify_book(database.app_url, book)


async def test_beyond_the_memory_cap_every_batch_is_read(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sequencer_module, "REMEMBERED_ACCOUNTS", 1)  # two accounts: too many
    book = await api.book()
    issuance, member = await api.funded(book, 100)
    reads = _record_reads(monkeypatch)
    for amount in (1, 2, 3):
        outcome = await api.app.state.sequencer.submit(
            _transfer(book, member, issuance, amount), _ref(api)
        )
        assert outcome.status_code == 201, outcome.body
    assert len(reads) == 3
