"""Database outages are 503 `unavailable` with Retry-After, wherever they surface, and the
pools recover by themselves; anything else unexpected is one 500 `internal`."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import exc as sa

from app.kit.outages import describe, is_outage, unavailable
from app.kit.problems import ServiceUnavailable
from app.ledger import store
from tests.conftest import Api, ScratchDatabase


def _wrapped(error: BaseException, invalidated: bool = False) -> sa.DBAPIError:
    """The error as SQLAlchemy's asyncpg dialect raises it: the driver's error as `orig`,
    itself caused by asyncpg's."""
    adapted = Exception(str(error))
    adapted.__cause__ = error
    return sa.InterfaceError("SELECT 1", {}, adapted, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.CrashShutdownError("crash"),
        asyncpg.exceptions.TooManyConnectionsError("too many clients"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle"),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.InterfaceError("pool is closing"),
        ConnectionRefusedError(111, "Connect call failed"),
        FileNotFoundError(2, "No such file or directory"),  # the server's socket is gone
        TimeoutError(),
        sa.TimeoutError("QueuePool limit reached"),
        _wrapped(ValueError("anything"), invalidated=True),
        _wrapped(asyncpg.exceptions.AdminShutdownError("terminating connection")),
        _wrapped(ConnectionResetError(104, "reset")),
        # A failover: every host answered, none is a primary yet; a server that is read-only.
        asyncpg.TargetServerAttributeNotMatched("None of the hosts match"),
        asyncpg.exceptions.ReadOnlySQLTransactionError("cannot execute INSERT"),
        _wrapped(asyncpg.exceptions.ReadOnlySQLTransactionError("cannot execute INSERT")),
    ],
    ids=lambda e: type(e).__name__,
)
def test_connection_level_failures_are_outages(error: BaseException) -> None:
    assert is_outage(error)
    answer = unavailable(error)
    assert answer is not None and answer.status == 503 and answer.slug == "unavailable"
    assert answer.headers == {"Retry-After": "1"}
    assert type(error).__name__ in describe(error)


def test_an_outage_behind_another_error_is_an_outage() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "Connect call failed")
        except OSError as exc:
            raise RuntimeError("while connecting") from exc
    except RuntimeError as outer:
        assert is_outage(outer)
        assert describe(outer).startswith("RuntimeError <- ConnectionRefusedError")


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        asyncpg.exceptions.SerializationError("could not serialize"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        _wrapped(asyncpg.exceptions.UndefinedTableError("no such table")),
        KeyError("x"),
        RuntimeError("boom"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_bugs_and_refusals_are_not_outages(error: BaseException) -> None:
    assert not is_outage(error)
    assert unavailable(error) is None


def test_service_unavailable_carries_retry_after() -> None:
    error = ServiceUnavailable("down", headers={"X-Other": "1"})
    assert error.headers == {"Retry-After": "1", "X-Other": "1"}


async def _cut_app_connections(api: Api, database: ScratchDatabase) -> None:
    """Terminate every connection of the app's process, as a restart does, and return once
    the process has heard of it."""
    superuser = await asyncpg.connect(database.superuser_url)
    try:
        killed = await superuser.fetchval(
            "SELECT array_agg(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        await superuser.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", killed
        )
        assert len(killed) >= 3  # the engine's, the sequencer's, the listener's at least
        async with asyncio.timeout(30):
            while await superuser.fetchval(  # noqa: ASYNC110 - other processes' state
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", killed
            ):
                await asyncio.sleep(0.05)
    finally:
        await superuser.close()
    # The listener's loss is heard like the others' (the server closed them together): a
    # few turns of the event loop read each closed socket's last message and its end.
    await asyncio.wait_for(api.app.state.authenticator.lost.wait(), timeout=30)
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_pools_recover_after_their_connections_are_cut(
    api: Api, database: ScratchDatabase
) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 5)
    assert (await api.client.get(f"/v1/books/{book}")).status_code == 200
    await _cut_app_connections(api, database)
    # No request pays for it: the engine replaces closed connections at checkout, the
    # sequencer's pool when it acquires one.
    for _ in range(3):
        assert (await api.client.get(f"/v1/books/{book}")).status_code == 200
        r = await api.transfer(book, issuance, member, 1)
        assert r.status_code == 201, r.text


async def _batch_cut(
    api: Api, database: ScratchDatabase, book: str, issuance: str, member: str, key: str
) -> httpx.Response:
    """A transfer whose batch has its connection cut in the middle, as by a restart: the
    book's head is held, so the sequencer's write waits on it, and its backend is then
    terminated."""
    superuser = await asyncpg.connect(database.superuser_url)
    holder = await asyncpg.connect(database.superuser_url)
    try:
        await holder.execute("BEGIN")
        await holder.execute("SELECT 1 FROM book_heads WHERE book_code = $1 FOR UPDATE", book)
        posting = asyncio.create_task(api.transfer(book, issuance, member, 2, key=key))
        async with asyncio.timeout(30):
            while True:
                waiting = await superuser.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> $1",
                    holder.get_server_pid(),
                )
                if waiting is not None:
                    break
                await asyncio.sleep(0.05)
        await superuser.execute("SELECT pg_terminate_backend($1)", waiting)
        return await posting
    finally:
        await holder.close()
        await superuser.close()


async def test_a_batch_whose_connection_dies_answers_503_and_a_retry_posts_once(
    api: Api, database: ScratchDatabase
) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 5)
    key = uuid.uuid4().hex
    answer = await _batch_cut(api, database, book, issuance, member, key)
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "1"
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert answer.json()["type"] == "urn:timebank:problem:unavailable"
    # Not stored under the key: the retry posts, once.
    retry = await api.transfer(book, issuance, member, 2, key=key)
    assert retry.status_code == 201, retry.text
    again = await api.transfer(book, issuance, member, 2, key=key)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    superuser = await asyncpg.connect(database.superuser_url)
    try:
        entries = await superuser.fetchval(
            "SELECT count(*) FROM journal_entries WHERE book_code = $1", book
        )
    finally:
        await superuser.close()
    assert entries == 2  # the funding and the retried transfer


async def test_after_an_outage_the_sequencer_reads_every_book_again(
    api: Api, database: ScratchDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the sequencer remembers of each book (its head, its accounts) is forgotten when a
    batch meets an outage, in every book: after a failover the new primary may not hold a
    commit that was in flight, so each book's next batch reads what the database holds."""
    cut, other = await api.book(), await api.book()
    cut_issuance, cut_member = await api.funded(cut, 5)
    issuance, member = await api.funded(other, 5)
    read: list[str] = []
    load_state = store.load_state

    async def reading(conn: Any, book: str, *args: Any, **kwargs: Any) -> Any:
        read.append(book)
        return await load_state(conn, book, *args, **kwargs)

    monkeypatch.setattr(store, "load_state", reading)
    assert (await api.transfer(other, issuance, member, 1)).status_code == 201
    assert read == []  # applied on what the book's last batch left
    answer = await _batch_cut(api, database, cut, cut_issuance, cut_member, uuid.uuid4().hex)
    assert answer.status_code == 503, answer.text
    read.clear()
    assert (await api.transfer(other, issuance, member, 1)).status_code == 201
    assert read == [other]


async def test_unexpected_errors_are_500_and_outages_503_from_any_route(api: Api) -> None:
    async def boom() -> None:
        raise RuntimeError("the cause, for the log only")

    async def refused() -> None:
        raise ConnectionRefusedError(111, "Connect call failed")

    api.app.add_api_route("/test-only/boom", boom)
    api.app.add_api_route("/test-only/refused", refused)
    r = await api.client.get("/test-only/boom")
    assert r.status_code == 500
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["type"] == "urn:timebank:problem:internal"
    assert r.json()["instance"] == "/test-only/boom"
    assert "the cause" not in r.text  # logged, not told
    r = await api.client.get("/test-only/refused")
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "1"
    assert r.json()["type"] == "urn:timebank:problem:unavailable"
    metrics = (await api.client.get("/metrics")).text
    assert 'route="/test-only/boom",status="500"' in metrics
    assert 'route="/test-only/refused",status="503"' in metrics
