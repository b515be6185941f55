"""A batch's read costs the same however many accounts and answers the service holds: it
finds what it needs through indexes (a scan of every account cost 100 ms a batch at 200,000)."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest

from app.ledger import store
from tests.conftest import Api, ScratchDatabase


def _scans(plan: object) -> set[tuple[str, str]]:
    """(relation, how) of every scan node in an EXPLAIN (FORMAT JSON) plan: how is "probe"
    for an index scan with an index condition, else the node type (a full scan)."""
    found: set[tuple[str, str]] = set()

    def walk(node: dict[str, object]) -> None:
        if "Relation Name" in node:
            how = "probe" if "Index Cond" in node else str(node["Node Type"])
            found.add((str(node["Relation Name"]), how))
        for child in node.get("Plans", []):  # type: ignore[attr-defined]
            walk(child)

    walk(plan[0]["Plan"])  # type: ignore[index]
    return found


@pytest.mark.parametrize("read", [store.READ_STATE, store.READ_STATE_LOCKED])
async def test_the_batch_read_uses_indexes_on_large_tables(
    api: Api, database: ScratchDatabase, read: str
) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 10)
    owner = await asyncpg.connect(database.owner_url)
    try:
        await owner.execute(
            "INSERT INTO accounts (id, book_code, asset, owner) "
            "SELECT gen_random_uuid(), $1, 'HOUR', 'person:' || g "
            "FROM generate_series(1, 20000) g",
            book,
        )
        await owner.execute(
            "INSERT INTO idempotency_keys (credential_id, key, request_hash, status_code, tx_id) "
            "SELECT gen_random_uuid(), 'k' || g, 'h', 201, gen_random_uuid() "
            "FROM generate_series(1, 20000) g"
        )
        await owner.execute("ANALYZE accounts; ANALYZE idempotency_keys")
        async with owner.transaction():
            plan = await owner.fetchval(
                "EXPLAIN (FORMAT JSON) " + read,
                [issuance, member],
                [],
                # As many keys as a full batch asks after.
                [str(uuid.uuid4()) for _ in range(512)],
                [f"k{n}" for n in range(512)],
                [],
                book,
            )
    finally:
        await owner.close()
    scans = _scans(json.loads(plan))
    assert {how for relation, how in scans if relation == "accounts"} == {"probe"}, scans
    assert {how for relation, how in scans if relation == "idempotency_keys"} == {"probe"}, scans
