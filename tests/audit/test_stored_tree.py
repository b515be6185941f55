"""Proofs built from the stored subtrees are those of the in-memory reference tree."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import pytest

from app.audit import merkle, tlog
from app.ledger.service import post_notice
from tests.conftest import Api, ScratchDatabase


async def append_notices(api: Api, book: str, count: int) -> None:
    sequencer = api.app.state.sequencer
    outcomes = await asyncio.gather(
        *(post_notice(sequencer, book, "test", {"n": n}) for n in range(count))
    )
    assert all(o.status_code == 201 for o in outcomes)


async def test_stored_proofs_equal_the_reference_for_random_sizes(
    api: Api, database: ScratchDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks: integration crosses chunk boundaries at many different sizes.
    monkeypatch.setattr(tlog, "CHUNK", 7)
    rng = random.Random(20261127)
    book = await api.book()
    conn = await asyncpg.connect(database.app_url)
    try:
        for _ in range(6):
            await append_notices(api, book, rng.randint(1, 40))
            await tlog.integrate(conn, book)
        bodies = await conn.fetch(
            "SELECT body FROM journal_entries WHERE book_code = $1 ORDER BY seq", book
        )
        reference = merkle.MemoryTree()
        reference.extend(merkle.leaf_hash(bytes(r["body"])) for r in bodies)
        size = reference.size
        head = await tlog.log_head(conn, book)
        assert head == tlog.LogHead(size, reference.root())
        stored = await conn.fetch(
            "SELECT level, index, hash FROM merkle_subtrees WHERE book_code = $1", book
        )
        assert {(r["level"], r["index"]): bytes(r["hash"]) for r in stored} == reference.subtrees

        for _ in range(60):
            second = rng.randint(1, size)
            first = rng.randint(0, second)
            index = rng.randrange(second)
            inclusion = await tlog.from_stored(
                conn, book, lambda sh, i=index, n=second: merkle.inclusion_proof(i, n, sh)
            )
            assert inclusion == reference.inclusion_proof(index, second)
            consistency = await tlog.from_stored(
                conn, book, lambda sh, m=first, n=second: merkle.consistency_proof(m, n, sh)
            )
            assert consistency == reference.consistency_proof(first, second)
            root = await tlog.from_stored(conn, book, lambda sh, n=second: merkle.root(n, sh))
            assert root == reference.root(second)
    finally:
        await conn.close()


async def test_two_integrators_at_once_store_each_subtree_once(
    api: Api, database: ScratchDatabase
) -> None:
    book = await api.book()
    await append_notices(api, book, 50)
    conns = [await asyncpg.connect(database.app_url) for _ in range(3)]
    try:
        added = await asyncio.gather(*(tlog.integrate(c, book) for c in conns))
        assert sum(added) == 50
        head = await tlog.log_head(conns[0], book)
        assert head is not None and head.tree_size == 50
    finally:
        for conn in conns:
            await conn.close()
