"""Holds that are not resolved in time are voided by themselves, exactly once."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from app.ledger import service
from app.main import sweep_holds
from tests.conftest import Api, ScratchDatabase


async def place(api: Api, book: str, src: str, dst: str, amount: int) -> str:
    r = await api.client.post(
        f"/v1/books/{book}/holds",
        json={"from_account_id": src, "to_account_id": dst, "amount": amount, "expires_in": 600},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def backdate(database: ScratchDatabase, hold_id: str) -> None:
    """Move a hold's expiry into the past (holds are state, not journal)."""
    conn = await asyncpg.connect(database.app_url)
    try:
        await conn.execute(
            "UPDATE holds SET expires_at = now() - interval '1 second' WHERE id = $1", hold_id
        )
    finally:
        await conn.close()


async def test_expired_hold_cannot_be_posted_and_is_voided_once(
    api: Api, database: ScratchDatabase
) -> None:
    book = await api.book()
    _, member = await api.funded(book, 20)
    shop = await api.account(book)
    hold_id = await place(api, book, member, shop, 15)
    await backdate(database, hold_id)
    r = await api.client.post(
        f"/v1/holds/{hold_id}/post", headers={"Idempotency-Key": uuid.uuid4().hex}
    )
    assert r.status_code == 409 and r.json()["type"].endswith(":hold-expired")
    # Several sweepers at once (as several processes would run): one void, no error.
    sessions, sequencer = api.app.state.sessions, api.app.state.sequencer

    async def sweep() -> int:
        async with sessions() as session:
            return await service.expire_holds(session, sequencer)

    results = await asyncio.gather(*(sweep() for _ in range(4)))
    assert sum(results) == 1
    hold = (await api.client.get(f"/v1/holds/{hold_id}")).json()
    assert hold["status"] == "expired" and hold["resolved_by"]
    void = (await api.client.get(f"/v1/transactions/{hold['resolved_by']}")).json()
    assert void["entry"]["kind"] == "hold.void"
    assert void["entry"]["meta"] == {"hold": hold_id, "reason": "expired"}
    assert (await api.balance(member))["available"] == 20


async def test_background_sweeper_voids_expired_holds(api: Api, database: ScratchDatabase) -> None:
    book = await api.book()
    _, member = await api.funded(book, 5)
    hold_id = await place(api, book, member, await api.account(book), 5)
    await backdate(database, hold_id)
    sweeper = asyncio.create_task(sweep_holds(api.app, 0.05))
    try:
        async with asyncio.timeout(10):  # wait for the sweeper's effect, with a deadline
            while (await api.client.get(f"/v1/holds/{hold_id}")).json()["status"] == "pending":  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        sweeper.cancel()
    assert (await api.client.get(f"/v1/holds/{hold_id}")).json()["status"] == "expired"
    assert (await api.balance(member))["available"] == 5


async def test_old_idempotency_keys_are_purged(api: Api, database: ScratchDatabase) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 0)
    assert (await api.transfer(book, issuance, member, 1, key="old")).status_code == 201
    assert (await api.transfer(book, issuance, member, 1, key="new")).status_code == 201
    conn = await asyncpg.connect(database.app_url)
    try:
        await conn.execute(
            "UPDATE idempotency_keys SET created_at = now() - interval '2 days' WHERE key = 'old'"
        )
        async with api.app.state.sessions() as session, session.begin():
            assert await service.purge_idempotency_keys(session, 24 * 3600) == 1
        keys = {r[0] for r in await conn.fetch("SELECT key FROM idempotency_keys")}
    finally:
        await conn.close()
    assert keys == {"new"}
