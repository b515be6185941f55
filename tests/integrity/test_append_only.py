"""The journal is append-only, in the database itself, and verify catches what slips past."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import Api, ScratchDatabase

TIMEBANK = str(Path(sys.executable).with_name("timebank"))


async def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [TIMEBANK, *args], env=env, capture_output=True, text=True, timeout=120
    )


async def seed(api: Api, entries: int = 5) -> tuple[str, str, str]:
    book = await api.book()
    issuance, member = await api.funded(book, 0)
    for i in range(entries):
        assert (await api.transfer(book, issuance, member, 10 + i)).status_code == 201
    return book, issuance, member


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE journal_entries SET kind = 'x'",
        "DELETE FROM journal_entries",
        "TRUNCATE journal_entries CASCADE",
        "UPDATE journal_legs SET amount = 1",
        "DELETE FROM journal_legs",
        "TRUNCATE journal_legs",
    ],
)
async def test_app_role_cannot_change_the_journal(
    api: Api, database: ScratchDatabase, statement: str
) -> None:
    await seed(api, 1)
    conn = await asyncpg.connect(database.app_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE journal_entries SET kind = 'x'",
        "DELETE FROM journal_legs",
        "TRUNCATE journal_legs",
    ],
)
async def test_even_the_owner_is_refused_by_triggers(
    api: Api, database: ScratchDatabase, statement: str
) -> None:
    await seed(api, 1)
    conn = await asyncpg.connect(database.owner_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_app_role_owns_nothing(database: ScratchDatabase) -> None:
    conn = await asyncpg.connect(database.owner_url)
    try:
        owners = await conn.fetch(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
        )
    finally:
        await conn.close()
    assert [r["tableowner"] for r in owners] == ["timebank_owner"]


async def test_database_refuses_broken_chain_unbalanced_legs_and_bad_hash(
    api: Api, database: ScratchDatabase
) -> None:
    book, issuance, member = await seed(api, 1)
    conn = await asyncpg.connect(database.app_url)
    insert = (
        "INSERT INTO journal_entries (book_code, seq, tx_id, kind, posted_at, prev_hash, "
        "entry_hash, body) VALUES ($1, $2, gen_random_uuid(), 'transfer', now(), $3, "
        "encode(sha256($4::bytea), 'hex'), $4::bytea)"
    )
    try:
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="chain broken"):
            await conn.execute(insert, book, 3, "0" * 64, b"{}")  # a gap
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="chain broken"):
            await conn.execute(insert, book, 2, "f" * 64, b"{}")  # wrong prev_hash
        with pytest.raises(asyncpg.CheckViolationError, match="journal_entries_hash"):
            await conn.execute(
                "INSERT INTO journal_entries (book_code, seq, tx_id, kind, posted_at, "
                "prev_hash, entry_hash, body) VALUES ($1, 2, gen_random_uuid(), 't', now(), "
                "$2, $3, 'x')",
                book,
                "0" * 64,
                "a" * 64,
            )
        async with conn.transaction():
            head = await conn.fetchval("SELECT entry_hash FROM book_heads WHERE book_code=$1", book)
            await conn.execute(insert, book, 2, head, b'{"forged":1}')
            with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="unbalanced"):
                await conn.execute(
                    "INSERT INTO journal_legs (book_code, seq, leg_index, account_id, asset, "
                    "amount, posted_after, pending_debits_after, pending_credits_after) VALUES "
                    "($1, 2, 0, $2, 'HOUR', -5, 0, 0, 0), ($1, 2, 1, $3, 'HOUR', 4, 0, 0, 0)",
                    book,
                    issuance,
                    member,
                )
        with pytest.raises(asyncpg.CheckViolationError, match="accounts_within_limit"):
            await conn.execute("UPDATE accounts SET posted = -1 WHERE id = $1", member)
    finally:
        await conn.close()


ENTRY = (
    "($1, {seq}, gen_random_uuid(), 'transfer', now(), {prev}, "
    "encode(sha256('{{\"n\":{seq}}}'::bytea), 'hex'), '{{\"n\":{seq}}}'::bytea)"
)
INSERT_ENTRIES = (
    "INSERT INTO journal_entries (book_code, seq, tx_id, kind, posted_at, prev_hash, entry_hash, "
    "body) VALUES "
)
NEXT = "encode(sha256('{{\"n\":{seq}}}'::bytea), 'hex')"  # the entry_hash of ENTRY {seq}


@pytest.mark.parametrize("prev_hash", ["A" * 64, "g" * 64, "0" * 63, "0" * 65, "0" * 63 + "é"])
async def test_database_refuses_a_prev_hash_that_is_not_64_lowercase_hex(
    api: Api, database: ScratchDatabase, prev_hash: str
) -> None:
    book, _, _ = await seed(api, 1)
    conn = await asyncpg.connect(database.app_url)
    try:
        with pytest.raises(asyncpg.CheckViolationError, match="journal_entries_prev_hash_check"):
            await conn.execute(INSERT_ENTRIES + ENTRY.format(seq=2, prev="$2"), book, prev_hash)
    finally:
        await conn.close()


async def test_database_checks_a_statement_of_several_entries(
    api: Api, database: ScratchDatabase
) -> None:
    """Entries inserted together chain to each other: the first to the stored head, each next
    one to the one before it in the same statement."""
    book, _, _ = await seed(api, 1)  # seq 1 is stored
    conn = await asyncpg.connect(database.app_url)
    try:
        head = await conn.fetchval("SELECT entry_hash FROM book_heads WHERE book_code = $1", book)
        two, three = ENTRY.format(seq=2, prev="$2"), ENTRY.format(seq=3, prev=NEXT.format(seq=2))
        accepted = conn.transaction()  # a well-chained pair is accepted (then rolled back)
        await accepted.start()
        try:
            await conn.execute(INSERT_ENTRIES + f"{two}, {three}", book, head)
            count = "SELECT count(*) FROM journal_entries WHERE book_code = $1"
            assert await conn.fetchval(count, book) == 3
        finally:
            await accepted.rollback()
        bad_three = ENTRY.format(seq=3, prev="$2")  # links to seq 1, not to seq 2
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match=r"seq 3$"):
            await conn.execute(INSERT_ENTRIES + f"{two}, {bad_three}", book, head)
        bad_two = ENTRY.format(seq=2, prev="'" + "e" * 64 + "'")  # the first link is wrong
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match=r"seq 2$"):
            await conn.execute(INSERT_ENTRIES + f"{bad_two}, {three}", book)
        one = ENTRY.format(seq=1, prev="'" + "0" * 64 + "'")
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="chain broken"):
            await conn.execute(INSERT_ENTRIES + one, "nosuchbook")
    finally:
        await conn.close()


async def test_database_checks_every_leg_against_its_entry_and_account(
    api: Api, database: ScratchDatabase
) -> None:
    book, issuance, member = await seed(api, 1)  # seq 1: issuance -10, member +10
    elsewhere = await api.book()
    stranger, _ = await api.funded(elsewhere, 0)
    points = await api.account(book, asset="POINT")
    legs = (
        "INSERT INTO journal_legs (book_code, seq, leg_index, account_id, asset, amount, "
        "posted_after, pending_debits_after, pending_credits_after) VALUES "
        "($1, $2, $6, $3, $4, -5, 0, 0, 0), ($1, $2, $6 + 1, $5, $4, 5, 0, 0, 0)"
    )
    conn = await asyncpg.connect(database.app_url)
    try:
        for seq, first_leg, first, asset, second, bad_leg in (
            (7, 0, issuance, "HOUR", member, 0),  # no entry 7
            (1, 2, issuance, "HOUR", stranger, 3),  # an account of another book
            (1, 2, points, "HOUR", member, 2),  # an account holding another asset
        ):
            with pytest.raises(
                asyncpg.ForeignKeyViolationError, match=f"leg {bad_leg} of book {book} seq {seq} "
            ):
                await conn.execute(legs, book, seq, first, asset, second, first_leg)
        # The same account twice, once with its own asset and once with another: the leg named
        # is the one with the other asset.
        with pytest.raises(asyncpg.ForeignKeyViolationError, match=f"leg 4 of book {book} seq 1 "):
            await conn.execute(
                "INSERT INTO journal_legs (book_code, seq, leg_index, account_id, asset, amount, "
                "posted_after, pending_debits_after, pending_credits_after) VALUES "
                "($1, 1, 2, $2, 'HOUR', -5, 0, 0, 0), ($1, 1, 3, $3, 'HOUR', 5, 0, 0, 0), "
                "($1, 1, 4, $2, 'POINT', -5, 0, 0, 0), ($1, 1, 5, $4, 'POINT', 5, 0, 0, 0)",
                book,
                member,
                issuance,
                points,
            )
    finally:
        await conn.close()


async def tamper(database: ScratchDatabase, sql: str, *args: object) -> None:
    """Change rows behind the service's back, as a superuser with triggers disabled."""
    conn = await asyncpg.connect(database.superuser_url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(sql, *args)
    finally:
        await conn.close()


@pytest.mark.slow
async def test_verify_passes_on_an_honest_journal(api: Api, cli_env: dict[str, str]) -> None:
    book, _, _ = await seed(api, 3)
    result = await run_cli(cli_env, "verify")
    assert result.returncode == 0, result.stderr
    assert "OK: 1 book(s), 3 entries verified" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        (
            "UPDATE journal_legs SET amount = amount + 1, posted_after = posted_after + 1 "
            "WHERE book_code = $1 AND seq = 3 AND leg_index = 1",
            "legs",
        ),
        # A consistent rewrite of one entry (body and hash) breaks the link from the next.
        (
            "UPDATE journal_entries SET body = b.forged, entry_hash = encode(sha256(b.forged), "
            "'hex') FROM (SELECT convert_to(replace(convert_from(body, 'UTF8'), '\"memo\":\"\"', "
            "'\"memo\":\"x\"'), 'UTF8') AS forged FROM journal_entries WHERE book_code = $1 "
            "AND seq = 3) b WHERE book_code = $1 AND seq = 3",
            "prev_hash seq 4 recorded",
        ),
        ("DELETE FROM journal_legs WHERE book_code = $1 AND seq = 3", "legs"),
        (
            "UPDATE journal_entries SET posted_at = posted_at + interval '1 second' "
            "WHERE book_code = $1 AND seq = 3",
            "posted_at",
        ),
        # The columns the service looks reversals and holds up by are bound to the kind.
        (
            "UPDATE journal_entries SET reverses = (SELECT tx_id FROM journal_entries "
            "WHERE book_code = $1 AND seq = 1) WHERE book_code = $1 AND seq = 3",
            "reverses or resolves_hold",
        ),
    ],
    ids=["amount", "memo", "deleted-legs", "posted_at", "stray-reverses"],
)
async def test_verify_names_the_first_tampered_seq(
    api: Api, database: ScratchDatabase, cli_env: dict[str, str], sql: str, reason: str
) -> None:
    book, _, _ = await seed(api, 5)
    await tamper(database, sql, book)
    result = await run_cli(cli_env, "verify")
    assert result.returncode == 1
    assert f"book {book} at seq 3" in result.stderr, result.stderr
    assert reason in result.stderr


@pytest.mark.slow
async def test_verify_catches_a_balance_changed_behind_its_back(
    api: Api, database: ScratchDatabase, cli_env: dict[str, str]
) -> None:
    book, _, member = await seed(api, 5)
    await tamper(database, "UPDATE accounts SET posted = posted + 100 WHERE id = $1", member)
    result = await run_cli(cli_env, "verify")
    assert result.returncode == 1
    assert f"book {book} at seq 5" in result.stderr and member in result.stderr


@pytest.mark.slow
async def test_verify_catches_a_forged_reversal_that_does_not_negate(
    api: Api, database: ScratchDatabase, cli_env: dict[str, str]
) -> None:
    """A well-chained, balanced entry that claims to reverse a transaction but repeats it."""
    from app.kit.clock import rfc3339_micro, utc_now
    from app.ledger.journal import Leg, entry_bytes, entry_object, hash_bytes

    book, issuance, member = await seed(api, 2)
    tx = (await api.client.get(f"/v1/accounts/{member}/entries")).json()["items"][0]["tx_id"]
    conn = await asyncpg.connect(database.superuser_url)
    try:
        head = await conn.fetchrow(
            "SELECT seq, entry_hash FROM book_heads WHERE book_code=$1", book
        )
        seq, now, tx_id = head["seq"] + 1, utc_now(), str(uuid.uuid4())
        legs = [Leg(issuance, "HOUR", -11), Leg(member, "HOUR", 11)]  # same sign: not negated
        entry = entry_object(
            book=book,
            seq=seq,
            tx_id=tx_id,
            kind="reversal",
            posted_at=rfc3339_micro(now),
            legs=legs,
            memo="",
            meta={"reverses": tx},
            prev_hash=head["entry_hash"],
        )
        body = entry_bytes(entry)
        posted = {
            r[0]: r[1]
            for r in await conn.fetch(
                "SELECT id::text, posted FROM accounts WHERE book_code = $1", book
            )
        }
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO journal_entries (book_code, seq, tx_id, kind, posted_at, prev_hash, "
                "entry_hash, body, reverses) VALUES ($1,$2,$3,'reversal',$4,$5,$6,$7,$8)",
                book,
                seq,
                tx_id,
                now,
                head["entry_hash"],
                hash_bytes(body),
                body,
                tx,
            )
            after = [posted[leg.account_id] + leg.amount for leg in legs]
            await conn.execute(
                "INSERT INTO journal_legs VALUES ($1,$2,0,$3,'HOUR',$4,$5,0,0), "
                "($1,$2,1,$6,'HOUR',$7,$8,0,0)",
                book,
                seq,
                issuance,
                legs[0].amount,
                after[0],
                member,
                legs[1].amount,
                after[1],
            )
            for leg, balance in zip(legs, after, strict=True):
                await conn.execute(
                    "UPDATE accounts SET posted=$2, last_seq=$3 WHERE id=$1",
                    leg.account_id,
                    balance,
                    seq,
                )
            await conn.execute(
                "UPDATE book_heads SET seq=$2, entry_hash=$3 WHERE book_code=$1",
                book,
                seq,
                hash_bytes(body),
            )
    finally:
        await conn.close()
    result = await run_cli(cli_env, "verify")
    assert result.returncode == 1
    assert f"book {book} at seq {seq}: a reversal does not negate" in result.stderr
