"""Races inside one process: group commit must keep every invariant."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx

from app.config import Settings
from app.identity.credentials import create_credential
from app.main import create_app
from tests.conftest import Api, ScratchDatabase


async def count_entries(database: ScratchDatabase, book: str) -> int:
    conn = await asyncpg.connect(database.app_url)
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM journal_entries WHERE book_code = $1", book)
        )
    finally:
        await conn.close()


async def test_200_withdrawals_against_50(api: Api, database: ScratchDatabase) -> None:
    book = await api.book()
    _, member = await api.funded(book, 50)
    sink = await api.account(book)
    responses = await asyncio.gather(*(api.transfer(book, member, sink, 1) for _ in range(200)))
    codes = [r.status_code for r in responses]
    assert codes.count(201) == 50
    assert codes.count(409) == 150
    assert {r.json()["type"] for r in responses if r.status_code == 409} == {
        "urn:timebank:problem:insufficient-funds"
    }
    account = await api.balance(member)
    assert account["posted"] == 0 and account["available"] == 0
    # Gapless: the funding entry plus exactly the 50 successful withdrawals.
    seqs = sorted(r.json()["seq"] for r in responses if r.status_code == 201)
    assert seqs == list(range(2, 52))
    assert await count_entries(database, book) == 51


async def test_holds_and_transfers_race_for_the_same_funds(api: Api) -> None:
    book = await api.book()
    _, member = await api.funded(book, 30)
    shop = await api.account(book)

    def hold() -> object:
        return api.client.post(
            f"/v1/books/{book}/holds",
            json={"from_account_id": member, "to_account_id": shop, "amount": 1},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )

    calls = [hold() if i % 2 else api.transfer(book, member, shop, 1) for i in range(80)]
    responses = await asyncio.gather(*calls)  # type: ignore[arg-type]
    assert sum(r.status_code == 201 for r in responses) == 30
    account = await api.balance(member)
    assert account["available"] == 0
    assert account["posted"] == 30 - sum(
        r.status_code == 201 and r.json()["kind"] == "transfer" for r in responses
    )


async def test_retry_storm_with_one_key_posts_once(api: Api, database: ScratchDatabase) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 0)
    responses = await asyncio.gather(
        *(api.transfer(book, issuance, member, 7, key="storm-key") for _ in range(100))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    replayed = [r.headers.get("Idempotent-Replayed") for r in responses]
    assert replayed.count("true") == 99 and replayed.count(None) == 1
    assert (await api.balance(member))["posted"] == 7
    assert await count_entries(database, book) == 1
    # Later retries replay from the database, and a different body with the key is refused.
    late = await api.transfer(book, issuance, member, 7, key="storm-key")
    assert late.headers["Idempotent-Replayed"] == "true"
    assert late.json() == responses[0].json()
    other = await api.transfer(book, issuance, member, 8, key="storm-key")
    assert other.status_code == 422
    assert other.json()["type"] == "urn:timebank:problem:idempotency-key-reused"
    assert await count_entries(database, book) == 1


async def test_refusals_are_replayed_too(api: Api) -> None:
    book = await api.book()
    _, member = await api.funded(book, 5)
    sink = await api.account(book)
    first = await api.transfer(book, member, sink, 10, key="k")
    assert first.status_code == 409
    again = await api.transfer(book, member, sink, 10, key="k")
    assert again.status_code == 409 and again.headers["Idempotent-Replayed"] == "true"


async def test_keys_are_scoped_to_the_credential(api: Api) -> None:
    from app.identity.credentials import create_credential

    book = await api.book()
    issuance, member = await api.funded(book, 0)
    async with api.app.state.sessions() as session, session.begin():
        _, other_token = await create_credential(session, "admin")
    mine = await api.transfer(book, issuance, member, 3, key="shared")
    theirs = await api.client.post(
        f"/v1/books/{book}/transactions",
        json={
            "kind": "transfer",
            "legs": [{"account_id": issuance, "amount": -3}, {"account_id": member, "amount": 3}],
        },
        headers={"Idempotency-Key": "shared", "Authorization": f"Bearer {other_token}"},
    )
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]
    assert "Idempotent-Replayed" not in theirs.headers


async def test_many_books_in_parallel_each_gapless(api: Api) -> None:
    books = [await api.book() for _ in range(4)]
    pairs = [await api.funded(b, 0) for b in books]
    calls = [
        api.transfer(b, src, dst, 1)
        for _ in range(40)
        for b, (src, dst) in zip(books, pairs, strict=True)
    ]
    responses = await asyncio.gather(*calls)
    assert all(r.status_code == 201 for r in responses)
    for b in books:
        seqs = sorted(r.json()["seq"] for r in responses if r.json()["book"] == b)
        assert seqs == list(range(1, 41))


async def test_a_repeat_waits_for_the_first_then_gives_up_with_409(
    test_settings: Settings, database: ScratchDatabase
) -> None:
    """While the first request with a key cannot finish, a repeat waits, then answers 409."""
    app = create_app(test_settings.model_copy(update={"idempotency_wait_s": 0.3}))
    async with app.router.lifespan_context(app):
        async with app.state.sessions() as session, session.begin():
            credential, token = await create_credential(session, "admin")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers={"Authorization": f"Bearer {token}"}
        ) as client:
            api = Api(client, token, app, str(credential.id))
            book = await api.book()
            issuance, member = await api.funded(book, 0)
            blocker = await asyncpg.connect(database.app_url)
            try:
                # Hold the chain head so the first posting cannot be appended yet.
                tx = blocker.transaction()
                await tx.start()
                await blocker.execute(
                    "SELECT 1 FROM book_heads WHERE book_code=$1 FOR UPDATE", book
                )
                first = asyncio.create_task(api.transfer(book, issuance, member, 5, key="slow"))
                await asyncio.sleep(0)  # let the first request reach the sequencer
                repeat = await api.transfer(book, issuance, member, 5, key="slow")
                assert repeat.status_code == 409
                assert repeat.json()["type"] == "urn:timebank:problem:idempotency-in-flight"
                await tx.rollback()
            finally:
                await blocker.close()
            assert (await first).status_code == 201
            again = await api.transfer(book, issuance, member, 5, key="slow")
            assert again.headers["Idempotent-Replayed"] == "true"
            assert (await api.balance(member))["posted"] == 5
