"""`timebank keys rotate`: the new key signs after the lead, old receipts still verify, and every
book records the rotation."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from app.audit import receipts
from app.audit.keys import parse_time
from app.config import Settings
from app.identity.credentials import create_credential
from app.main import create_app
from tests.audit.test_export_verifier import TIMEBANK, run
from tests.conftest import Api, ScratchDatabase

pytestmark = pytest.mark.slow  # each test runs `timebank keys` as a process


@pytest.fixture
async def api_no_lead(test_settings: Settings) -> AsyncIterator[Api]:
    """The app with a rotation lead of 0: its key ring reads the table for every receipt, so
    a rotation by another process shows at once (a test needs no wait for the lead)."""
    app = create_app(test_settings.model_copy(update={"signing_key_rotation_lead_s": 0}))
    async with app.router.lifespan_context(app):
        async with app.state.sessions() as session, session.begin():
            credential, token = await create_credential(session, "admin", name="tests")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            yield Api(client, token, app, str(credential.id))


def kid_of(token: str) -> str:
    header = token.split(".")[0]
    kid: str = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    return kid


async def test_rotation_keeps_old_receipts_valid_and_signs_new_ones_with_the_new_key(
    api_no_lead: Api, cli_env: dict[str, str], database: ScratchDatabase
) -> None:
    api = api_no_lead
    books = [await api.book(), await api.book()]
    issuance, member = await api.funded(books[0], 100)
    before = (await api.transfer(books[0], issuance, member, 1)).json()
    old_kid = kid_of(before["receipt"])

    env = {**cli_env, "TIMEBANK_SIGNING_KEY_ROTATION_LEAD_S": "0"}
    rotated = await run([TIMEBANK, "keys", "rotate", "--yes"], env)
    assert rotated.returncode == 0, rotated.stderr
    new_kid = rotated.stdout.strip().splitlines()[-1]
    assert new_kid != old_kid

    keys: dict[str, Any] = (await api.client.get("/.well-known/jwks.json")).json()
    by_kid = {k["kid"]: k for k in keys["keys"]}
    assert set(by_kid) == {old_kid, new_kid}
    assert by_kid[old_kid]["valid_until"] == by_kid[new_kid]["valid_from"]
    assert "valid_until" not in by_kid[new_kid]
    # The new key signs entries posted from its valid_from on: wait for that instant.
    starts = parse_time(by_kid[new_kid]["valid_from"]).timestamp()
    await asyncio.sleep(max(0.0, starts - time.time()) + 0.01)

    after = (await api.transfer(books[0], issuance, member, 2)).json()
    assert kid_of(after["receipt"]) == new_kid
    for posting in (before, after):
        claims = receipts.verify_receipt(posting["receipt"], keys)
        receipts.check_receipt_entry(claims, posting["entry"], posting["entry_hash"])
    again = (await api.client.get(f"/v1/transactions/{before['id']}/receipt")).json()
    assert again["receipt"] == before["receipt"] and again["kid"] == old_kid

    conn = await asyncpg.connect(database.app_url)
    try:
        rows = await conn.fetch(
            "SELECT book_code, body FROM journal_entries WHERE kind = 'notice.key_rotated'"
        )
    finally:
        await conn.close()
    notices = {r["book_code"]: json.loads(bytes(r["body"])) for r in rows}
    assert set(notices) == set(books)
    for entry in notices.values():
        assert entry["legs"] == []
        assert entry["meta"] == {
            "kid": new_kid,
            "previous_kid": old_kid,
            "valid_from": by_kid[new_kid]["valid_from"],
        }

    # Checkpoints are signed by the key valid when they are signed.
    checkpoint = (await api.client.post(f"/v1/books/{books[1]}/checkpoints")).json()
    assert checkpoint["kid"] == new_kid
    assert len((await api.client.get(f"/v1/books/{books[1]}/log-keys")).text.splitlines()) == 2


async def test_a_key_not_yet_valid_is_not_rotated_again(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "TIMEBANK_SIGNING_KEY_ROTATION_LEAD_S": "3600"}
    # No server has run on this database: the first command makes the first key.
    first = await run([TIMEBANK, "keys", "rotate", "--yes"], env)
    assert first.returncode == 0, first.stderr
    assert "previous None" in first.stderr
    second = await run([TIMEBANK, "keys", "rotate", "--yes"], env)
    assert second.returncode == 0, second.stderr
    third = await run([TIMEBANK, "keys", "rotate", "--yes"], env)
    assert third.returncode == 1
    assert "refused: the current key" in third.stderr
    listed = await run([TIMEBANK, "keys", "list"], env)
    assert listed.returncode == 0
    for done in (first, second):
        assert done.stdout.strip() in listed.stdout


async def _key_notices(database: ScratchDatabase) -> int:
    conn = await asyncpg.connect(database.app_url)
    try:
        found = await conn.fetchval(
            "SELECT count(*) FROM journal_entries WHERE kind = 'notice.key_rotated'"
        )
        return int(found)
    finally:
        await conn.close()


async def test_rotation_shows_its_books_and_needs_yes_without_a_terminal(
    api_no_lead: Api, cli_env: dict[str, str], database: ScratchDatabase
) -> None:
    books = sorted([await api_no_lead.book(), await api_no_lead.book()])
    env = {**cli_env, "TIMEBANK_SIGNING_KEY_ROTATION_LEAD_S": "0"}
    keys_before = (await run([TIMEBANK, "keys", "list"], env)).stdout
    shown = f"notice.key_rotated in 2 book(s): {books[0]}, {books[1]}"
    dry = await run([TIMEBANK, "keys", "rotate", "--dry-run"], env)
    assert dry.returncode == 0, dry.stderr
    assert shown in dry.stderr and "nothing written" in dry.stderr
    unasked = await run([TIMEBANK, "keys", "rotate"], env)
    assert unasked.returncode == 2 and shown in unasked.stderr and "pass --yes" in unasked.stderr
    assert (await run([TIMEBANK, "keys", "list"], env)).stdout == keys_before
    assert await _key_notices(database) == 0
    rotated = await run([TIMEBANK, "keys", "rotate", "--yes"], env)
    assert rotated.returncode == 0, rotated.stderr
    assert await _key_notices(database) == 2
