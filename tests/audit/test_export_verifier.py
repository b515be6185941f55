"""`timebank export` output passes the independent verifier, and tampering with it does not.

scripts/verify-export is written from docs/ledger-format.md alone; these tests tie it to what
the service really writes: every kind of entry the API can post, balances and the head.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from tests.conftest import Api

ROOT = Path(__file__).resolve().parents[2]
VERIFIER = ROOT / "scripts" / "verify-export"
pytestmark = pytest.mark.slow  # each test runs the CLI or the verifier as a process
TIMEBANK = str(Path(sys.executable).with_name("timebank"))


async def run(
    args: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, args, env=env, capture_output=True, text=True, timeout=120
    )


async def verify(path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return await run([sys.executable, str(VERIFIER), str(path), *options])


async def post(api: Api, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = await api.client.post(path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code in (200, 201), r.text
    data: dict[str, Any] = r.json()
    return data


@dataclass
class Book:
    code: str
    accounts: list[str]
    entries: int


async def build_book(api: Api) -> Book:
    """One entry of every kind the API writes, two assets, and a hold left pending."""
    book = await api.book()
    issuance, alice = await api.funded(book, 500)  # seq 1
    bob = await api.account(book)
    first = await api.transfer(book, alice, bob, 100, memo="garden work")  # seq 2
    assert first.status_code == 201, first.text
    back = await api.transfer(book, bob, alice, 20)  # seq 3
    assert back.status_code == 201, back.text

    def hold(amount: int, memo: str) -> dict[str, Any]:
        return {
            "from_account_id": alice,
            "to_account_id": bob,
            "amount": amount,
            "expires_in": 3600,
            "memo": memo,
        }

    posted = await post(api, f"/v1/books/{book}/holds", hold(80, "陪伴老人"))  # seq 4
    done = await post(api, f"/v1/holds/{posted['id']}/post", {"amount": 50})  # seq 5
    assert done["entry"]["legs"][1]["amount"] == 50
    voided = await post(api, f"/v1/books/{book}/holds", hold(30, "cancelled visit"))  # seq 6
    await post(api, f"/v1/holds/{voided['id']}/void")  # seq 7
    reversal = await post(api, f"/v1/transactions/{first.json()['id']}/reversal")  # seq 8
    assert reversal["entry"]["meta"]["reverses"] == first.json()["id"]
    points_issuance, points_member = await api.funded(book, 7, asset="POINT")  # seq 9
    await post(api, f"/v1/books/{book}/holds", hold(10, "still pending"))  # seq 10
    accounts = [issuance, alice, bob, points_issuance, points_member]
    return Book(book, accounts, 10)


async def export(env: dict[str, str], book: str, path: Path) -> list[str]:
    result = await run([TIMEBANK, "export", "--book", book, "--output", str(path)], env)
    assert result.returncode == 0, result.stderr
    text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    return text.splitlines()


async def write_lines(path: Path, lines: list[str]) -> Path:
    await asyncio.to_thread(path.write_text, "".join(f"{line}\n" for line in lines), "utf-8")
    return path


def rehash(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry with an entry_hash that matches its (changed) content."""
    body = {k: v for k, v in entry.items() if k != "entry_hash"}
    return {**body, "entry_hash": hashlib.sha256(rfc8785.dumps(body)).hexdigest()}


async def test_an_honest_export_verifies_with_the_services_balances_and_head(
    api: Api, cli_env: dict[str, str], tmp_path: Path
) -> None:
    book = await build_book(api)
    path = tmp_path / "book.jsonl"
    lines = await export(cli_env, book.code, path)
    kinds = [json.loads(line)["kind"] for line in lines]
    assert kinds == [
        "transfer",
        "transfer",
        "transfer",
        "hold",
        "hold.post",
        "hold",
        "hold.void",
        "reversal",
        "transfer",
        "hold",
    ]

    head = (await api.client.get(f"/v1/books/{book.code}/head")).json()
    result = await verify(path, "--balances", "--expect-head", head["entry_hash"])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"OK: book {book.code}: {book.entries} entries verified" in out
    assert f"head: seq {head['seq']} {head['entry_hash']}" in out
    assert head["seq"] == book.entries
    assert "accounts: 5" in out
    assert "open holds: 1" in out
    assert "asset HOUR: posted total 0, pending total 0" in out
    assert "asset POINT: posted total 0, pending total 0" in out

    recomputed = {
        parts[0]: [int(p) for p in parts[2:]]
        for parts in (line.split() for line in out.splitlines())
        if len(parts) == 7 and parts[0] in book.accounts
    }
    assert set(recomputed) == set(book.accounts)
    for account_id in book.accounts:
        served = await api.balance(account_id)
        fields = ("posted", "pending_debits", "pending_credits", "pending", "available")
        assert recomputed[account_id] == [served[f] for f in fields], account_id


def change_amount(lines: list[str]) -> tuple[list[str], int, str]:
    entry = json.loads(lines[2])
    entry["legs"][0]["amount"] -= 1
    entry["legs"][1]["amount"] += 1
    return [*lines[:2], json.dumps(entry, ensure_ascii=False), *lines[3:]], 3, "entry_hash"


def delete_line(lines: list[str]) -> tuple[list[str], int, str]:
    return [*lines[:4], *lines[5:]], 5, "expected seq 5, found seq 6"


def change_memo_and_rehash(lines: list[str]) -> tuple[list[str], int, str]:
    entry = rehash({**json.loads(lines[3]), "memo": "nothing to see"})
    changed = [*lines[:3], json.dumps(entry, ensure_ascii=False), *lines[4:]]
    return changed, 4, "prev_hash recorded by seq 5"


@pytest.mark.parametrize("tamper", [change_amount, delete_line, change_memo_and_rehash])
async def test_a_tampered_export_is_rejected_at_the_tampered_seq(
    api: Api,
    cli_env: dict[str, str],
    tmp_path: Path,
    tamper: Callable[[list[str]], tuple[list[str], int, str]],
) -> None:
    book = await build_book(api)
    path = tmp_path / "book.jsonl"
    lines = await export(cli_env, book.code, path)
    assert (await verify(path)).returncode == 0

    changed, seq, reason = tamper(lines)
    bad = await write_lines(tmp_path / "tampered.jsonl", changed)
    result = await verify(bad)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"FAILED seq {seq}: "), result.stderr
    assert reason in result.stderr


async def test_a_rewritten_head_passes_alone_and_fails_against_the_known_head(
    api: Api, cli_env: dict[str, str], tmp_path: Path
) -> None:
    # The documented limit: the last entry has no successor to commit to its hash.
    book = await build_book(api)
    lines = await export(cli_env, book.code, tmp_path / "book.jsonl")
    last = rehash({**json.loads(lines[-1]), "memo": "rewritten"})
    bad = await write_lines(tmp_path / "rewritten.jsonl", [*lines[:-1], json.dumps(last)])

    alone = await verify(bad)
    assert alone.returncode == 0, alone.stderr
    assert f"head: seq {book.entries} {last['entry_hash']}" in alone.stdout

    head = (await api.client.get(f"/v1/books/{book.code}/head")).json()
    assert head["entry_hash"] != last["entry_hash"]
    checked = await verify(bad, "--expect-head", head["entry_hash"])
    assert checked.returncode == 1
    assert checked.stderr.startswith(f"FAILED seq {book.entries}: "), checked.stderr


def rechain(entries: list[dict[str, Any]]) -> list[str]:
    """Export lines for entries whose prev_hash and entry_hash are all recomputed."""
    lines, previous = [], "0" * 64
    for entry in entries:
        body = {k: v for k, v in entry.items() if k != "entry_hash"}
        body["prev_hash"] = previous
        line = rehash(body)
        previous = line["entry_hash"]
        lines.append(json.dumps(line, ensure_ascii=False))
    return lines


def appended_copy(entries: list[dict[str, Any]], seq: int) -> list[dict[str, Any]]:
    copy = {**entries[seq - 1], "seq": len(entries) + 1, "tx_id": str(uuid.uuid4())}
    return [*entries, {**copy, "posted_at": entries[-1]["posted_at"]}]


def with_legs(entries: list[dict[str, Any]], seq: int, amount: int) -> list[dict[str, Any]]:
    entry = entries[seq - 1]
    legs = [{**entry["legs"][0], "amount": -amount}, {**entry["legs"][1], "amount": amount}]
    return [*entries[: seq - 1], {**entry, "legs": legs}, *entries[seq:]]


def with_member(entries: list[dict[str, Any]], seq: int, **change: Any) -> list[dict[str, Any]]:
    return [*entries[: seq - 1], {**entries[seq - 1], **change}, *entries[seq:]]


async def test_a_consistently_rechained_export_still_breaks_the_ledger_rules(
    api: Api, cli_env: dict[str, str], tmp_path: Path
) -> None:
    # A forger who recomputes every hash is still held to holds, reversals and balance.
    book = await build_book(api)
    entries = [json.loads(line) for line in await export(cli_env, book.code, tmp_path / "b")]
    assert (await verify(tmp_path / "b")).returncode == 0
    unbalanced = with_member(entries, 2, legs=[entries[1]["legs"][0]])
    cases = {
        "the same transaction reversed twice": (appended_copy(entries, 8), 11, "already reversed"),
        "a hold voided twice": (appended_copy(entries, 7), 11, "already resolved at seq 7"),
        "a hold posted for more than held": (with_legs(entries, 5, 90), 5, "the 80 held"),
        "a void that releases less than held": (with_legs(entries, 7, 29), 7, "legs differ"),
        "time going backwards": (
            with_member(entries, 6, posted_at="2000-01-01T00:00:00.000000Z"),
            6,
            "posted_at is earlier",
        ),
        "an entry that does not balance": (unbalanced, 2, "do not balance"),
        # One half of a transfer between books is not reversible alone (ledger-format §6.5).
        "a reversal of a linked entry": (
            with_member(entries, 2, kind="recognition.out"),
            8,
            "not an earlier reversible entry",
        ),
    }
    for name, (forged, seq, reason) in cases.items():
        path = await write_lines(tmp_path / "forged.jsonl", rechain(forged))
        result = await verify(path)
        assert result.returncode == 1, name
        assert result.stderr.startswith(f"FAILED seq {seq}: "), (name, result.stderr)
        assert reason in result.stderr, (name, result.stderr)


async def test_the_apis_export_is_verified_too(api: Api, tmp_path: Path) -> None:
    # The file an auditor downloads: entry lines with receipts, then the checkpoint line.
    book = await build_book(api)
    r = await api.client.get(f"/v1/books/{book.code}/export")
    assert r.status_code == 200, r.text
    lines = r.text.splitlines()
    path = await write_lines(tmp_path / "api.jsonl", lines)
    result = await verify(path, "--balances")
    assert result.returncode == 0, result.stderr
    assert f"OK: book {book.code}: {book.entries} entries verified" in result.stdout
    assert "open holds: 1" in result.stdout
    assert "checkpoint (signature not checked): " in result.stdout

    def entry_line(seq: int, **change: Any) -> str:
        line = json.loads(lines[seq - 1])
        return json.dumps({**line, "entry": {**line["entry"], **change}}, ensure_ascii=False)

    trailer, first = json.loads(lines[-1]), json.loads(lines[0])
    wrong_book = {**trailer, "checkpoint": {**trailer["checkpoint"], "book": "other"}}
    cases = {
        "an entry changed": ([*lines[:2], entry_line(3, memo="x"), *lines[3:]], 3, "entry_hash"),
        "the checkpoint line missing": (lines[:-1], book.entries + 1, "checkpoint line"),
        "a line after it": ([*lines, lines[0]], book.entries + 1, "follows"),
        "a shorter range claimed": (
            [*lines[:-1], json.dumps({**trailer, "to_seq": book.entries - 1})],
            book.entries,
            "more entries than the range",
        ),
        "another book's checkpoint": (
            [*lines[:-1], json.dumps(wrong_book)],
            book.entries,
            "not",
        ),
        "the two formats mixed": (
            [json.dumps({**first["entry"], "entry_hash": first["entry_hash"]}), *lines[1:]],
            2,
            "same export format",
        ),
    }
    for name, (changed, seq, reason) in cases.items():
        bad = await write_lines(tmp_path / "bad.jsonl", changed)
        result = await verify(bad)
        assert result.returncode == 1, (name, result.stdout)
        assert result.stderr.startswith(f"FAILED seq {seq}: "), (name, result.stderr)
        assert reason in result.stderr, (name, result.stderr)

    partial = (await api.client.get(f"/v1/books/{book.code}/export?from_seq=3")).text
    path = await write_lines(tmp_path / "partial.jsonl", partial.splitlines())
    result = await verify(path)
    assert result.returncode == 2, result.stdout
    assert "starts at seq 3" in result.stderr and "timebank audit verify" in result.stderr
