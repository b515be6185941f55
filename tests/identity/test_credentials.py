"""Credentials through the API: issued once, listed without secrets, rotated, revoked, limited."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid

import asyncpg
import httpx
import pytest

from app.config import Settings
from app.identity.credentials import create_credential
from app.main import create_app
from tests.conftest import Api, ScratchDatabase
from tests.e2e.test_two_servers import TIMEBANK


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def notices(database: ScratchDatabase, book: str) -> list[dict[str, object]]:
    conn = await asyncpg.connect(database.app_url)
    try:
        rows = await conn.fetch(
            "SELECT body FROM journal_entries WHERE book_code = $1 AND kind LIKE 'notice.%' "
            "ORDER BY seq",
            book,
        )
    finally:
        await conn.close()
    return [json.loads(bytes(r["body"])) for r in rows]


async def test_a_token_is_shown_once_and_a_replay_answers_without_it(
    api: Api, database: ScratchDatabase
) -> None:
    book = await api.book()
    body = {"role": "auditor", "book": book, "name": "区民政局"}
    first = await api.client.post("/v1/credentials", json=body, headers={"Idempotency-Key": "c1"})
    assert first.status_code == 201, first.text
    token = first.json()["token"]
    assert token.startswith("tbk_") and first.json()["token_prefix"] == token[:8]
    replay = await api.client.post("/v1/credentials", json=body, headers={"Idempotency-Key": "c1"})
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"] and replay.json()["token"] is None
    other = await api.client.post(
        "/v1/credentials", json={**body, "name": "x"}, headers={"Idempotency-Key": "c1"}
    )
    assert other.status_code == 422
    # The new token works; the list shows no secret and when it was last used.
    assert (await api.client.get(f"/v1/books/{book}", headers=bearer(token))).status_code == 200
    listed = await api.client.get("/v1/credentials", params={"book": book})
    assert token not in listed.text and "token_hash" not in listed.text
    (item,) = listed.json()["items"]
    assert item["last_used_at"] is not None and item["token"] is None
    granted = await notices(database, book)
    assert [n["kind"] for n in granted] == ["notice.credential_granted"]
    assert granted[0]["meta"] == {
        "credential_id": first.json()["id"],
        "role": "auditor",
        "book": book,
        "organisation_id": None,
        "actor": {"credential": api.credential},
    }
    assert token not in json.dumps(granted)


async def test_revoked_and_rotated_tokens_get_401_at_once(
    api: Api, database: ScratchDatabase
) -> None:
    book = await api.book()
    made = await api.client.post(
        "/v1/credentials",
        json={"role": "admin", "book": book},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    credential, token = made.json()["id"], made.json()["token"]
    assert (await api.client.get(f"/v1/books/{book}", headers=bearer(token))).status_code == 200
    rotated = await api.client.post(
        f"/v1/credentials/{credential}/rotate", headers={"Idempotency-Key": "r1"}
    )
    assert rotated.status_code == 200, rotated.text
    new_token = rotated.json()["token"]
    assert new_token != token
    old = await api.client.get(f"/v1/books/{book}", headers=bearer(token))
    assert old.status_code == 401 and old.json()["type"] == "urn:timebank:problem:unauthorized"
    assert (await api.client.get(f"/v1/books/{book}", headers=bearer(new_token))).status_code == 200
    revoked = await api.client.post(
        f"/v1/credentials/{credential}/revoke", headers={"Idempotency-Key": "v1"}
    )
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert (await api.client.get(f"/v1/books/{book}", headers=bearer(new_token))).status_code == 401
    again = await api.client.post(
        f"/v1/credentials/{credential}/rotate", headers={"Idempotency-Key": "r2"}
    )
    assert again.status_code == 422
    kinds = [n["kind"] for n in await notices(database, book)]
    assert kinds == [
        "notice.credential_granted",
        "notice.credential_rotated",
        "notice.credential_revoked",
    ]


async def test_a_book_admin_manages_only_its_books_credentials(api: Api) -> None:
    home, away = await api.book(), await api.book()
    admin = await api.client.post(
        "/v1/credentials", json={"role": "admin", "book": home}, headers={"Idempotency-Key": "a"}
    )
    headers = bearer(admin.json()["token"]) | {"Idempotency-Key": uuid.uuid4().hex}
    for body, status in [
        ({"role": "auditor", "book": home}, 201),
        ({"role": "auditor", "book": away}, 404),
        ({"role": "auditor"}, 403),  # a platform credential
        ({"role": "kiosk", "book": home}, 422),  # a kiosk needs its kiosk site
    ]:
        r = await api.client.post("/v1/credentials", json=body, headers=headers)
        assert r.status_code == status, (body, r.text)
        headers["Idempotency-Key"] = uuid.uuid4().hex
    listed = await api.client.get("/v1/credentials", headers=bearer(admin.json()["token"]))
    assert {c["book"] for c in listed.json()["items"]} == {home}
    platform = await api.client.get(
        f"/v1/credentials/{api.credential}", headers=bearer(admin.json()["token"])
    )
    assert platform.status_code == 404


async def test_the_rate_limit_answers_429_with_retry_after(test_settings: Settings) -> None:
    # One token per 1000 s: the refusals below cannot depend on how fast the test runs.
    limits = {"rate_limit_per_s": 0.001, "rate_limit_burst": 3}
    app = create_app(test_settings.model_copy(update=limits))
    async with app.router.lifespan_context(app):
        async with app.state.sessions() as session, session.begin():
            _, limited = await create_credential(session, "admin")
            _, other = await create_credential(session, "admin")
            _, unlimited = await create_credential(session, "admin", rate_limit_per_s=0)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            statuses = [
                (await client.get("/v1/organisations", headers=bearer(limited))).status_code
                for _ in range(5)
            ]
            assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
            refused = await client.get("/v1/organisations", headers=bearer(limited))
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["type"] == "urn:timebank:problem:rate-limited"
            assert 900 <= int(refused.headers["Retry-After"]) <= 1000
            # Buckets are per credential, and a credential may be exempt.
            assert (await client.get("/v1/organisations", headers=bearer(other))).status_code == 200
            for _ in range(10):
                r = await client.get("/v1/organisations", headers=bearer(unlimited))
                assert r.status_code == 200


@pytest.mark.slow
async def test_the_cli_binds_an_org_credential_to_its_organisation(
    api: Api, cli_env: dict[str, str]
) -> None:
    book = await api.book()
    org = await api.client.post(
        "/v1/organisations",
        json={"book": book, "kind": "volunteer_team", "name": "青年志愿者服务队"},
        headers={"Idempotency-Key": "o1"},
    )
    org_id = org.json()["id"]
    made = await asyncio.to_thread(
        subprocess.run,
        [TIMEBANK, "credentials", "create", "--role", "org", "--org", org_id],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    mine = await api.client.get(f"/v1/organisations/{org_id}", headers=bearer(token))
    assert mine.status_code == 200
    refused = await api.client.post(
        "/v1/books/x/accounts", json={"asset": "HOUR", "owner": "x"}, headers=bearer(token)
    )
    assert refused.status_code == 403
    unbound = await asyncio.to_thread(
        subprocess.run,
        [TIMEBANK, "credentials", "create", "--role", "org", "--book", book],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unbound.returncode == 1 and "bound to an organisation" in unbound.stderr + unbound.stdout


async def test_a_lost_listener_stops_caching_until_it_reconnects(
    api: Api, database: ScratchDatabase
) -> None:
    authenticator = api.app.state.authenticator
    book = await api.book()
    made = await api.client.post(
        "/v1/credentials", json={"role": "auditor", "book": book}, headers={"Idempotency-Key": "l"}
    )
    token = made.json()["token"]
    assert (await api.client.get(f"/v1/books/{book}", headers=bearer(token))).status_code == 200
    superuser = await asyncpg.connect(database.superuser_url)
    try:
        # The connection that hears revocations is cut, as by a database restart.
        await superuser.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN%'"
        )
        # Revoked by someone this process cannot hear.
        await superuser.execute(
            "UPDATE credentials SET revoked_at = now() WHERE id = $1",
            uuid.UUID(made.json()["id"]),
        )
    finally:
        await superuser.close()
    await asyncio.wait_for(authenticator.lost.wait(), timeout=30)
    assert (await api.client.get(f"/v1/books/{book}", headers=bearer(token))).status_code == 401
    await authenticator.keep_listening()
    assert authenticator.listening
