"""The `timebank` command against the test database."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import subprocess
import sys
import uuid
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from app.identity.credentials import create_credential
from app.main import create_app
from tests.conftest import SETTINGS, ScratchDatabase
from tests.e2e.test_two_servers import free_port

pytestmark = pytest.mark.slow  # each test runs `timebank` as a process
TIMEBANK = str(Path(sys.executable).with_name("timebank"))
# A small district: the default (300 members, 30 days) takes tens of seconds.
SMALL_DEMO = ("--members", "30", "--days", "5")


async def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [TIMEBANK, *args], env=env, capture_output=True, text=True, timeout=120
    )


async def test_a_database_that_cannot_be_reached_is_one_line_and_exit_3(
    cli_env: dict[str, str],
) -> None:
    # Two hosts, neither listening: the multi-host connect tries both, then gives up.
    hosts = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    env = {**cli_env, "TIMEBANK_DATABASE_URL": f"postgresql://nobody@{hosts}/nowhere"}
    env["TIMEBANK_MIGRATION_DATABASE_URL"] = env["TIMEBANK_DATABASE_URL"]
    for args in (("verify",), ("credentials", "create", "--role", "admin")):
        result = await run(env, *args)
        assert result.returncode == 3, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("timebank: the database cannot be reached now: ")
        assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


async def test_credentials_create_prints_a_working_token_last(
    cli_env: dict[str, str], database: ScratchDatabase
) -> None:
    result = await run(cli_env, "credentials", "create", "--role", "admin", "--name", "ops")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("tbk_") and len(token) > 40
    app = create_app(SETTINGS.model_copy(update={"database_url": database.app_url}))
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        async with client:
            ok = await client.get("/v1/books/none", headers={"Authorization": f"Bearer {token}"})
            assert ok.status_code == 404  # authenticated; the book does not exist
            async with app.state.sessions() as session:
                from sqlalchemy import text

                stored = (await session.execute(text("SELECT token_hash FROM credentials"))).all()
    assert token not in str(stored)
    bad = await run(cli_env, "credentials", "create", "--role", "wizard")
    assert bad.returncode == 2


async def test_demo_then_verify_and_export(cli_env: dict[str, str], tmp_path: Path) -> None:
    demo = await run(cli_env, "demo", "--yes", *SMALL_DEMO)
    assert demo.returncode == 0, demo.stderr
    summary = json.loads(demo.stdout)
    assert summary["created"] is True and summary["book"]["code"] == "demo"
    assert summary["members"] == 30 and summary["projects"] == 8
    assert sum(summary["organisations"].values()) == 11
    records = summary["records"]
    assert records["approved"] > 0 and records["rejected"] > 0 and records["reversed"] == 1
    assert summary["certified_minutes"] > 0
    head = summary["head_seq"]
    assert summary["book"]["head"]["seq"] == head
    again = await run(cli_env, "demo", "--yes", *SMALL_DEMO)
    assert again.returncode == 0, again.stderr
    repeated = json.loads(again.stdout)
    assert repeated["created"] is False and repeated["head_seq"] == head
    assert repeated["records"] == records
    verify = await run(cli_env, "verify")
    assert verify.returncode == 0 and f"{head} entries verified" in verify.stdout
    out = tmp_path / "demo.jsonl"
    export = await run(cli_env, "export", "--book", "demo", "--output", str(out))
    assert export.returncode == 0, export.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["seq"] for e in lines] == list(range(1, head + 1))
    assert all(len(e["entry_hash"]) == 64 for e in lines)
    kinds = Counter(e["kind"] for e in lines)
    # Each approved record and the reversed one were credited once; one credit was reversed.
    assert kinds["service_credit"] == records["approved"] + records["reversed"]
    assert kinds["reversal"] == 1
    assert kinds["notice.organisation_created"] == 11
    assert kinds["notice.credential_granted"] == summary["credentials"]
    assert sum(kinds.values()) == head
    # On the same demo book (one seeding for both): a book-bound grant is a notice there.
    await a_book_bound_grant_is_a_notice_in_that_book(cli_env, tmp_path, head)


async def a_book_bound_grant_is_a_notice_in_that_book(
    cli_env: dict[str, str], tmp_path: Path, head: int
) -> None:
    granted = await run(cli_env, "credentials", "create", "--role", "auditor", "--book", "demo")
    assert granted.returncode == 0, granted.stderr
    out = tmp_path / "demo.jsonl"
    assert (await run(cli_env, "export", "--book", "demo", "--output", str(out))).returncode == 0
    last = json.loads(out.read_text().splitlines()[-1])
    assert last["kind"] == "notice.credential_granted" and last["legs"] == []
    assert last["meta"]["role"] == "auditor" and last["meta"]["book"] == "demo"
    token = granted.stdout.strip().splitlines()[-1]
    assert token not in out.read_text()
    verify = await run(cli_env, "verify")
    assert verify.returncode == 0 and f"{head + 1} entries verified" in verify.stdout
    independent = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(Path(__file__).parents[1] / "scripts" / "verify-export"), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert independent.returncode == 0, independent.stderr
    unknown = await run(cli_env, "credentials", "create", "--role", "admin", "--book", "nope")
    assert unknown.returncode == 1 and "no book" in unknown.stderr


async def test_demo_shows_what_it_would_seed_and_needs_yes_without_a_terminal(
    cli_env: dict[str, str], database: ScratchDatabase
) -> None:
    dry = await run(cli_env, "demo", "--dry-run", *SMALL_DEMO)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) == {
        "dry_run": True,
        "book": "demo",
        "book_exists": False,
        "members": 30,
        "days": 5,
        "organisations": 11,
        "projects": 8,
    }
    assert "would open book 'demo'" in dry.stderr and "30 members, 8 projects" in dry.stderr
    unasked = await run(cli_env, "demo", *SMALL_DEMO)
    assert unasked.returncode == 2 and "pass --yes" in unasked.stderr
    conn = await asyncpg.connect(database.app_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM books") == 0
    finally:
        await conn.close()


async def _lapsing_points(database: ScratchDatabase) -> tuple[date, str]:
    """A book `pts` where a member holds 70 GIFTPT (valid for the year they were earned in):
    the day they lapse (next 1 January, a future day) and the member's account."""
    app = create_app(SETTINGS.model_copy(update={"database_url": database.app_url}))
    async with app.router.lifespan_context(app):
        async with app.state.sessions() as session, session.begin():
            _, token = await create_credential(session, "admin", name="tests")
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://t",
            headers={"Authorization": f"Bearer {token}"},
        )
        async with client:

            async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
                r = await client.post(
                    path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
                )
                assert r.status_code in (200, 201), r.text
                answer: dict[str, Any] = r.json()
                return answer

            await post("/v1/books", {"code": "pts", "name": "Points"})
            await post(
                "/v1/assets",
                {
                    "code": "GIFTPT",
                    "name": "Gift points",
                    "unit": "point",
                    "expires_after_years": 0,
                },
            )
            issuance = await post(
                "/v1/books/pts/accounts",
                {"asset": "GIFTPT", "owner": "system:issuance", "overdraft_limit": 10**9},
            )
            member = str(uuid.uuid4())
            held = await post(
                "/v1/books/pts/accounts", {"asset": "GIFTPT", "owner": f"member:{member}"}
            )
            earned = await post(
                "/v1/books/pts/transactions",
                {
                    "legs": [
                        {"account_id": issuance["id"], "amount": -70},
                        {"account_id": held["id"], "amount": 70},
                    ]
                },
            )
    posted_at = datetime.fromisoformat(earned["entry"]["posted_at"].replace("Z", "+00:00"))
    return date(posted_at.astimezone(ZoneInfo("Asia/Shanghai")).year + 1, 1, 1), held["id"]


async def _expiries(database: ScratchDatabase) -> int:
    conn = await asyncpg.connect(database.app_url)
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM journal_entries WHERE kind = 'expiry'")
        )
    finally:
        await conn.close()


async def test_expire_posts_what_lapsed_once(
    cli_env: dict[str, str], database: ScratchDatabase
) -> None:
    lapse, account = await _lapsing_points(database)
    early = await run(cli_env, "expire", "--yes")  # today: nothing earned this year has lapsed
    assert early.returncode == 0, early.stderr
    assert json.loads(early.stdout)["entries_posted"] == 0
    first = await run(cli_env, "expire", "--as-of", lapse.isoformat(), "--allow-future", "--yes")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {
        "as_of": lapse.isoformat(),
        "dry_run": False,
        "accounts_examined": 1,
        "entries_posted": 1,
        "units_expired_by_asset": {"GIFTPT": 70},
        "units_expired_by_book": {"pts": {"GIFTPT": 70}},
        "first_accounts": [account],
        "accounts_unsettled": 0,
    }
    again = await run(cli_env, "expire", "--as-of", lapse.isoformat(), "--allow-future", "-y")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["entries_posted"] == 0
    assert json.loads(again.stdout)["units_expired_by_asset"] == {"GIFTPT": 0}
    assert await _expiries(database) == 1
    verify = await run(cli_env, "verify", "--book", "pts")
    assert verify.returncode == 0, verify.stderr
    bad = await run(cli_env, "expire", "--as-of", "next year")
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr


async def test_expire_refuses_a_day_after_today_unless_allowed(
    cli_env: dict[str, str], database: ScratchDatabase
) -> None:
    lapse, _ = await _lapsing_points(database)
    # A mistyped year, even with --yes: refused before anything is read or posted.
    future = await run(cli_env, "expire", "--as-of", lapse.isoformat(), "--yes")
    assert future.returncode == 2, future.stderr
    assert "--allow-future" in future.stderr and "after today" in future.stderr
    assert future.stdout == "" and await _expiries(database) == 0
    allowed = await run(cli_env, "expire", "--as-of", lapse.isoformat(), "--allow-future", "-y")
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["entries_posted"] == 1
    assert await _expiries(database) == 1


async def test_expire_shows_its_plan_and_posts_it_only_when_confirmed(
    cli_env: dict[str, str], database: ScratchDatabase
) -> None:
    lapse, account = await _lapsing_points(database)
    day = ("--as-of", lapse.isoformat(), "--allow-future")
    dry = await run(cli_env, "expire", *day, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["dry_run"] is True and plan["entries_posted"] == 1
    assert plan["units_expired_by_book"] == {"pts": {"GIFTPT": 70}}
    assert plan["first_accounts"] == [account]
    assert "1 entries would be posted" in dry.stderr and "book pts: 70 GIFTPT" in dry.stderr
    assert await _expiries(database) == 0
    # No terminal (stdin is not one here) and no --yes: the plan, then nothing posted, exit 2.
    unasked = await run(cli_env, "expire", *day)
    assert unasked.returncode == 2, unasked.stderr
    assert "book pts: 70 GIFTPT" in unasked.stderr and "pass --yes" in unasked.stderr
    assert unasked.stdout == "" and await _expiries(database) == 0
    posted = await run(cli_env, "expire", *day, "--yes")
    assert posted.returncode == 0, posted.stderr
    assert await _expiries(database) == 1
    # What was posted is what the plan showed.
    assert json.loads(posted.stdout) == {**plan, "dry_run": False}


def _on_a_terminal(env: dict[str, str], answer: str, *args: str) -> tuple[int, str]:
    """Run `timebank` with stdin and stderr on a pseudo-terminal, typing `answer` at its
    question."""
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [TIMEBANK, *args], env=env, stdin=secondary, stderr=secondary, stdout=subprocess.DEVNULL
    )
    os.close(secondary)
    shown = b""
    answered = False
    try:
        while True:
            # A bound on a hang (a question never asked), not on how long anything takes.
            ready, _, _ = select.select([primary], [], [], 120)
            assert ready, f"no output for 120 s; so far: {shown!r}"
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # the child closed the terminal: it has exited
                break
            if not chunk:
                break
            shown += chunk
            if not answered and b"[y/N]" in shown:
                os.write(primary, answer.encode() + b"\n")
                answered = True
    finally:
        os.close(primary)
        if process.poll() is None and not answered:
            process.kill()
    return process.wait(timeout=120), shown.decode(errors="replace")


async def test_expire_on_a_terminal_asks_before_posting(
    cli_env: dict[str, str], database: ScratchDatabase
) -> None:
    lapse, _ = await _lapsing_points(database)
    day = ("expire", "--as-of", lapse.isoformat(), "--allow-future")
    code, shown = await asyncio.to_thread(_on_a_terminal, cli_env, "n", *day)
    assert code == 1 and "post 1 expiry entries" in shown and "nothing written" in shown
    assert await _expiries(database) == 0
    code, shown = await asyncio.to_thread(_on_a_terminal, cli_env, "y", *day)
    assert code == 0, shown
    assert await _expiries(database) == 1
