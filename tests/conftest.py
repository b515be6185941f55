"""Test fixtures: one real PostgreSQL per session, a fresh database per test.

The server is the embedded PostgreSQL (started in a temporary directory and deleted after) or,
with TIMEBANK_TEST_DATABASE_URL, an existing PostgreSQL reached as a superuser. Migrations are
applied once to a template database; each test gets its own copy, so tests never share state
even though the ledger's sequencer commits its own transactions.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app import migrate as migrations
from app.config import Settings
from app.db import DatabaseUrls, EmbeddedPostgres, bootstrap_embedded, with_user
from app.identity.credentials import create_credential
from app.main import create_app

# Longest modules first (tests/schedule.py).
pytest_plugins = ["tests.schedule"]

# One template per pytest-xdist worker (scripts/test runs two), should they share a server.
TEMPLATE_DB = f"timebank_template_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
# The background hold sweeper is started by hand in the tests that need it.
# Rate limits are off except in the tests of the rate limit.
TEST_PERSONAL_DATA_SECRET = "test-only-personal-data-secret-0123456789"
# The log follower, like the sweeper, is run by hand in the tests of the transparency log.
TEST_SIGNING_KEY_PASSPHRASE = "test-only-signing-key-passphrase"
SETTINGS = Settings(
    database_url="unused",
    hold_sweep_interval_s=3600,
    log_follow_interval_s=3600,
    signing_key_passphrase=TEST_SIGNING_KEY_PASSPHRASE,
    log_level="warning",
    personal_data_secret=TEST_PERSONAL_DATA_SECRET,
    rate_limit_per_s=0,
)


@dataclass(frozen=True)
class PgServer:
    superuser_url: str  # a URL of the server's `postgres` database as a superuser
    embedded: bool = False  # ours to configure (and thrown away after the session)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    external = os.environ.get("TIMEBANK_TEST_DATABASE_URL")
    if external:
        yield PgServer(external)
        return
    root = Path(tempfile.mkdtemp(prefix="timebank-test-"))
    server = EmbeddedPostgres(root / "pgdata", cleanup_mode="delete")
    # A SIGTERM (a CI timeout, `timeout`, `kill`) would end the interpreter without its exit
    # handlers and leave the server running: make it an interrupt, which pytest unwinds.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield PgServer(server.superuser_url, embedded=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
async def template(pg_server: PgServer) -> str:
    """The name of a migrated database to copy for each test."""
    settings = SETTINGS.model_copy(update={"database_name": TEMPLATE_DB})
    conn = await asyncpg.connect(pg_server.superuser_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
        if pg_server.embedded:
            await _without_flushes(conn)
    finally:
        await conn.close()
    urls = await bootstrap_embedded(pg_server.superuser_url, settings)
    await migrations.upgrade(urls.owner, settings.app_role)
    return TEMPLATE_DB


async def _without_flushes(conn: asyncpg.Connection) -> None:
    """Stop the session's own server from flushing to disk: copying the template for each test
    and each commit waited on fsync. Only a crash of the machine would lose data, and the
    server is thrown away after the session anyway."""
    for setting in ("fsync", "full_page_writes", "synchronous_commit"):
        await conn.execute(f"ALTER SYSTEM SET {setting} = off")
    await conn.execute("SELECT pg_reload_conf()")


@dataclass(frozen=True)
class ScratchDatabase:
    name: str
    app_url: str
    owner_url: str
    superuser_url: str

    @property
    def urls(self) -> DatabaseUrls:
        return DatabaseUrls(app=self.app_url, owner=self.owner_url)


@asynccontextmanager
async def scratch_database(pg_server: PgServer, template: str) -> AsyncIterator[ScratchDatabase]:
    """A fresh, migrated database, dropped on leaving."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg_server.superuser_url)
    try:
        await conn.execute(
            f'CREATE DATABASE "{name}" TEMPLATE "{template}" OWNER "{SETTINGS.owner_role}"'
        )
    finally:
        await conn.close()
    yield ScratchDatabase(
        name,
        with_user(pg_server.superuser_url, SETTINGS.app_role, name),
        with_user(pg_server.superuser_url, SETTINGS.owner_role, name),
        with_user(pg_server.superuser_url, "postgres", name)
        if "@" in pg_server.superuser_url
        else pg_server.superuser_url,
    )
    conn = await asyncpg.connect(pg_server.superuser_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def database(pg_server: PgServer, template: str) -> AsyncIterator[ScratchDatabase]:
    """A fresh, migrated database for one test."""
    async with scratch_database(pg_server, template) as scratch:
        yield scratch


def superuser_of(pg_server: PgServer, database: ScratchDatabase) -> str:
    """The superuser URL for a test database."""
    from urllib.parse import urlsplit

    user = urlsplit(pg_server.superuser_url).username or "postgres"
    return with_user(pg_server.superuser_url, user, database.name)


@pytest.fixture
def test_settings(database: ScratchDatabase) -> Settings:
    return SETTINGS.model_copy(update={"database_url": database.app_url})


@dataclass
class Api:
    """An httpx client on the app in-process, with an admin token, plus helpers."""

    client: httpx.AsyncClient
    token: str
    app: Any
    credential: str  # the id of the admin credential behind `token`

    async def book(self, code: str | None = None) -> str:
        code = code or f"b{uuid.uuid4().hex[:8]}"
        r = await self.client.post("/v1/books", json={"code": code, "name": f"Book {code}"})
        assert r.status_code == 201, r.text
        return code

    async def account(self, book: str, asset: str = "HOUR", overdraft_limit: int = 0) -> str:
        r = await self.client.post(
            f"/v1/books/{book}/accounts",
            json={"asset": asset, "owner": "test:owner", "overdraft_limit": overdraft_limit},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def transfer(
        self, book: str, src: str, dst: str, amount: int, key: str | None = None, **extra: Any
    ) -> httpx.Response:
        return await self.client.post(
            f"/v1/books/{book}/transactions",
            json={
                "kind": "transfer",
                "legs": [
                    {"account_id": src, "amount": -amount},
                    {"account_id": dst, "amount": amount},
                ],
                **extra,
            },
            headers={"Idempotency-Key": key or uuid.uuid4().hex},
        )

    async def funded(self, book: str, amount: int, asset: str = "HOUR") -> tuple[str, str]:
        """An issuance account and an account funded with `amount` from it."""
        issuance = await self.account(book, asset, overdraft_limit=10**12)
        target = await self.account(book, asset)
        if amount:
            r = await self.transfer(book, issuance, target, amount)
            assert r.status_code == 201, r.text
        return issuance, target

    async def balance(self, account_id: str) -> dict[str, Any]:
        r = await self.client.get(f"/v1/accounts/{account_id}")
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data


@asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[Api]:
    """The app with its lifespan running, and an admin-authenticated client."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with app.state.sessions() as session, session.begin():
            credential, token = await create_credential(session, "admin", name="tests")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://testserver",
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            yield Api(client, token, app, str(credential.id))


@pytest.fixture
async def api(test_settings: Settings) -> AsyncIterator[Api]:
    """The app on the test's own database."""
    async with running_api(test_settings) as running:
        yield running


@pytest.fixture(scope="module")
async def module_api(pg_server: PgServer, template: str) -> AsyncIterator[Api]:
    """The app on a database of the module's own: for a world its tests only read, built once
    (a test that writes takes `api`, a database of its own)."""
    async with scratch_database(pg_server, template) as scratch:
        settings = SETTINGS.model_copy(update={"database_url": scratch.app_url})
        async with running_api(settings) as running:
            yield running


@pytest.fixture
def cli_env(database: ScratchDatabase) -> dict[str, str]:
    """Environment for running `timebank` as a subprocess against the test database."""
    env = dict(os.environ)
    env["TIMEBANK_DATABASE_URL"] = database.app_url
    env["TIMEBANK_MIGRATION_DATABASE_URL"] = database.owner_url
    env["TIMEBANK_LOG_LEVEL"] = "warning"
    env["TIMEBANK_PERSONAL_DATA_SECRET"] = TEST_PERSONAL_DATA_SECRET
    env["TIMEBANK_SIGNING_KEY_PASSPHRASE"] = TEST_SIGNING_KEY_PASSPHRASE
    env["TIMEBANK_RATE_LIMIT_PER_S"] = "0"
    return env


async def gather_limited(coros: list[Any], limit: int = 64) -> list[Any]:
    """Run coroutines concurrently, at most `limit` at a time."""
    gate = asyncio.Semaphore(limit)

    async def run(c: Any) -> Any:
        async with gate:
            return await c

    return await asyncio.gather(*(run(c) for c in coros))
