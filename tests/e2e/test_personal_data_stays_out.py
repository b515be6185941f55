"""No personal field reaches the journal, any other table in clear, or a log line."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import ScratchDatabase
from tests.e2e.test_two_servers import TIMEBANK, admin_token, free_port, wait_ready
from tests.identity.world import resident_id

pytestmark = pytest.mark.slow  # server processes

NAME = "欧阳娜娜"
PHONE = "13698765432"
NEW_PHONE = "13512344321"
RESIDENT_ID = resident_id("33010619880808123")
OPENID = "oWx9-openid-very-personal-5521"
UNIONID = "uWx9-unionid-very-personal-7788"
PERSONAL = (NAME, PHONE, NEW_PHONE, RESIDENT_ID, OPENID, UNIONID, "1988-08-08", "19880808")


async def test_registration_to_posting_leaves_no_personal_data_behind(
    cli_env: dict[str, str], database: ScratchDatabase, tmp_path: Path
) -> None:
    # A real server with debug logs: every request line is written, so a leak would show.
    env = {**cli_env, "TIMEBANK_LOG_LEVEL": "debug"}
    token = await admin_token(env)
    port = free_port()
    log_file = tmp_path / "server.log"
    with log_file.open("wb") as log:
        server = subprocess.Popen(  # noqa: ASYNC220 - Popen starts it and returns
            [TIMEBANK, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(base, server)
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {token}"}
        ) as client:

            async def post(path: str, body: dict[str, object], **headers: str) -> httpx.Response:
                r = await client.post(
                    path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex, **headers}
                )
                assert r.status_code in (200, 201), r.text
                return r

            book = (await post("/v1/books", {"code": "pii", "name": "隐私"})).json()["code"]
            org = (
                await post(
                    "/v1/organisations",
                    {
                        "book": book,
                        "kind": "social_work_station",
                        "name": "社工站",
                        "accounts": [
                            {"asset": "HOUR", "purpose": "issuance", "overdraft_limit": 10**6}
                        ],
                    },
                )
            ).json()
            mini = (await post("/v1/credentials", {"role": "miniprogram", "book": book})).json()
            mini_auth = {"Authorization": f"Bearer {mini['token']}"}
            member = (
                await post(
                    "/v1/members",
                    {
                        "book": book,
                        "display_name": NAME,
                        "phone": PHONE,
                        "resident_id": RESIDENT_ID,
                        "identity": {"provider": "wechat", "subject": OPENID, "union_id": UNIONID},
                        "organisation_id": org["id"],
                    },
                    **mini_auth,
                )
            ).json()
            acting = {**mini_auth, "X-Member-Id": member["id"]}
            r = await client.patch(
                f"/v1/members/{member['id']}", json={"phone": NEW_PHONE}, headers=acting
            )
            assert r.status_code == 200 and r.json()["phone"] == NEW_PHONE
            hours = next(a["account_id"] for a in member["accounts"] if a["asset"] == "HOUR")
            legs = [
                {"account_id": org["accounts"][0]["id"], "amount": -120},
                {"account_id": hours, "amount": 120},
            ]
            posted = await post(f"/v1/books/{book}/transactions", {"kind": "grant", "legs": legs})
            actor = posted.json()["entry"]["meta"]["actor"]
            assert set(actor) == {"credential"}  # ids only
            history = await client.get(f"/v1/members/{member['id']}/entries", headers=acting)
            assert history.json()["items"][0]["amount"] == 120
            # Certified service and its signed proof (which names the member) stay in the
            # clear only in the answer: the stored proof is encrypted.
            project = (
                await post(
                    "/v1/projects",
                    {
                        "book": book,
                        "organisation_id": org["id"],
                        "title": "助老",
                        "category": "elder_care",
                        "place": "社区",
                        "starts_at": "2026-11-20T09:00:00+08:00",
                        "ends_at": "2026-11-20T12:00:00+08:00",
                        "capacity": 5,
                    },
                )
            ).json()
            record = (
                await post(
                    "/v1/service-records",
                    {
                        "project_id": project["id"],
                        "member_id": member["id"],
                        "started_at": "2026-11-20T09:00:00+08:00",
                        "ended_at": "2026-11-20T10:00:00+08:00",
                        "attested_by": "陈站长",
                    },
                )
            ).json()
            await post(f"/v1/service-records/{record['id']}/approve", {})
            proof = await client.get(f"/v1/members/{member['id']}/service-proof")
            assert (
                proof.status_code == 200 and proof.json()["document"]["volunteer"]["name"] == NAME
            )
            page = await client.get(f"/v1/members/{member['id']}/service-proof?format=html")
            assert page.status_code == 200 and NAME in page.text
            # A refused registration must not echo the value either.
            bad = await client.post(
                "/v1/members",
                json={
                    "book": book,
                    "display_name": NAME,
                    "phone": PHONE,
                    "resident_id": RESIDENT_ID[:-1] + ("0" if RESIDENT_ID[-1] != "0" else "1"),
                    "identity": {"provider": "wechat", "subject": "other"},
                },
            )
            assert bad.status_code == 422 and RESIDENT_ID[:-1] not in bad.text

    finally:
        server.terminate()
        server.wait(timeout=20)
    logs = log_file.read_text()
    assert "http.request" in logs  # the request log lines were written
    assert [v for v in PERSONAL if v in logs] == []

    conn = await asyncpg.connect(database.superuser_url)
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
        dumps = {
            t["tablename"]: "\n".join(
                str(r[0])
                for r in await conn.fetch(f'SELECT row_to_json(t)::text FROM "{t["tablename"]}" t')
            )
            for t in tables
        }
        # The journal's bytes, as hashed, in clear (row_to_json shows bytea as hex).
        bodies = "\n".join(
            bytes(r[0]).decode() for r in await conn.fetch("SELECT body FROM journal_entries")
        )
    finally:
        await conn.close()
    assert "journal_entries" in dumps and "members" in dumps
    assert bodies.count('"kind":"notice.') >= 2  # the organisation and credential notices
    leaks = [(table, v) for table, text in dumps.items() for v in PERSONAL if v in text]
    leaks += [("journal body", v) for v in PERSONAL if v in bodies]
    # Encrypted columns are bytea: their clear text must not appear as hex either.
    hex_leaks = [
        (table, v) for table, text in dumps.items() for v in PERSONAL if v.encode().hex() in text
    ]
    assert leaks == [] and hex_leaks == []
