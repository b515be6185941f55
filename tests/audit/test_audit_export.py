"""The auditor's export: it round-trips through `timebank audit verify`, tampering does not."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from typer.testing import CliRunner

from app.cli import cli
from tests.audit.test_export_verifier import TIMEBANK, Book, build_book, run
from tests.conftest import Api

Lines = list[str]


async def export(api: Api, book: str, **params: Any) -> Lines:
    r = await api.client.get(f"/v1/books/{book}/export", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/jsonl"
    return r.text.splitlines()


async def write(path: Path, lines: Lines) -> Path:
    await asyncio.to_thread(path.write_text, "".join(f"{line}\n" for line in lines), "utf-8")
    return path


async def audit_verify(env: dict[str, str], path: Path, *options: str) -> Any:
    return await run([TIMEBANK, "audit", "verify", str(path), *options], env)


def audit_verify_here(path: Path, *options: str) -> Any:
    """`timebank audit verify` in this process (it needs no database): no start-up cost."""
    return CliRunner().invoke(cli, ["audit", "verify", str(path), *options])


async def saved_jwks(api: Api, tmp_path: Path) -> Path:
    keys = (await api.client.get("/.well-known/jwks.json")).text
    path = tmp_path / "jwks.json"
    await asyncio.to_thread(path.write_text, keys)
    return path


@pytest.fixture
async def book(api: Api) -> Book:
    """The book on the test's own database, for a test that writes or runs the CLI on it."""
    return await build_book(api)


@pytest.fixture(scope="module")
async def module_book(module_api: Api) -> Book:
    """The book built once for the module's tests that only read it."""
    return await build_book(module_api)


@pytest.mark.slow
async def test_an_export_round_trips_through_audit_verify(
    api: Api, book: Book, cli_env: dict[str, str], tmp_path: Path
) -> None:
    # A checkpoint an auditor kept from earlier, before the book grew to its end.
    early = await api.client.post(f"/v1/books/{book.code}/checkpoints")
    assert early.status_code == 201
    await asyncio.to_thread((tmp_path / "early.json").write_text, early.text)
    await build_more(api, book)
    lines = await export(api, book.code)
    assert len(lines) == book.entries + 3
    trailer = json.loads(lines[-1])
    assert set(trailer) == {"checkpoint", "from_seq", "to_seq", "prefix", "consistency", "jwks"}
    assert (trailer["from_seq"], trailer["to_seq"]) == (1, book.entries + 2)
    path = await write(tmp_path / "export.jsonl", lines)
    jwks = await saved_jwks(api, tmp_path)

    result = await audit_verify(cli_env, path, "--jwks", str(jwks))
    assert result.returncode == 0, result.stderr
    assert f"OK: book {book.code}: seq 1..{book.entries + 2}" in result.stdout
    assert "asset HOUR: posted total 0, pending total 0" in result.stdout
    assert "open holds: 1" in result.stdout

    alone = await audit_verify(cli_env, path)
    assert alone.returncode == 0, alone.stderr
    assert "taken from the export itself" in alone.stdout

    checked = await audit_verify(cli_env, path, "--checkpoint", str(tmp_path / "early.json"))
    assert checked.returncode == 0, checked.stderr
    assert f"trusted checkpoint of size {book.entries}: consistent" in checked.stdout


async def build_more(api: Api, book: Book) -> None:
    for amount in (3, 4):
        r = await api.transfer(book.code, book.accounts[1], book.accounts[2], amount)
        assert r.status_code == 201, r.text


@pytest.mark.slow
async def test_a_range_export_verifies_against_the_whole_books_checkpoint(
    api: Api, book: Book, cli_env: dict[str, str], tmp_path: Path
) -> None:
    lines = await export(api, book.code, from_seq=4, to_seq=7)
    assert [json.loads(line)["entry"]["seq"] for line in lines[:-1]] == [4, 5, 6, 7]
    trailer = json.loads(lines[-1])
    assert trailer["checkpoint"]["tree_size"] == book.entries
    result = await audit_verify(cli_env, await write(tmp_path / "range.jsonl", lines))
    assert result.returncode == 0, result.stderr
    assert "seq 4..7 (4 entries)" in result.stdout
    assert "balances: not checked" in result.stdout


@pytest.mark.slow
async def test_an_empty_book_exports_a_checkpoint_of_size_zero(
    api: Api, cli_env: dict[str, str], tmp_path: Path
) -> None:
    empty = await api.book()
    lines = await export(api, empty)
    assert len(lines) == 1
    assert json.loads(lines[0])["checkpoint"]["tree_size"] == 0
    result = await audit_verify(cli_env, await write(tmp_path / "empty.jsonl", lines))
    assert result.returncode == 0, result.stderr


async def test_the_csv_export_has_a_row_per_leg_for_spreadsheets(
    module_api: Api, module_book: Book
) -> None:
    r = await module_api.client.get(
        f"/v1/books/{module_book.code}/export", params={"format": "csv"}
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert len(rows) == 2 * module_book.entries  # every entry of build_book has two legs
    assert {row["seq"] for row in rows} == {str(n) for n in range(1, module_book.entries + 1)}
    assert "陪伴老人" in {row["memo"] for row in rows}
    assert sum(int(row["amount"]) for row in rows if row["kind"] != "hold") == 0


async def test_a_formula_in_a_memo_stays_text_in_the_csv(api: Api) -> None:
    code = await api.book()
    issuance, member = await api.funded(code, 0)
    r = await api.transfer(code, issuance, member, 1, memo="=HYPERLINK(1)")
    assert r.status_code == 201
    csv_text = (
        await api.client.get(f"/v1/books/{code}/export", params={"format": "csv"})
    ).content.decode("utf-8-sig")
    assert "'=HYPERLINK(1)" in csv_text


async def test_the_range_of_an_export_is_checked(module_api: Api, module_book: Book) -> None:
    for params, slug in (
        ({"to_seq": module_book.entries + 1}, "beyond-log-size"),
        ({"from_seq": 8, "to_seq": 7}, "validation"),
    ):
        r = await module_api.client.get(f"/v1/books/{module_book.code}/export", params=params)
        assert r.status_code == 422, r.text
        assert r.json()["type"] == f"urn:timebank:problem:{slug}"


def rehash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(rfc8785.dumps(entry)).hexdigest()


def edit_amount(lines: Lines) -> tuple[Lines, str]:
    line = json.loads(lines[2])
    line["entry"]["legs"][0]["amount"] -= 1
    line["entry"]["legs"][1]["amount"] += 1
    return [*lines[:2], json.dumps(line, ensure_ascii=False), *lines[3:]], "seq 3: entry_hash"


def edit_memo_and_rehash(lines: Lines) -> tuple[Lines, str]:
    line = json.loads(lines[3])
    line["entry"]["memo"] = "nothing to see"
    line["entry_hash"] = rehash(line["entry"])
    changed = [*lines[:3], json.dumps(line, ensure_ascii=False), *lines[4:]]
    return changed, "seq 4: receipt: the receipt differs from the entry in entry_hash, leaf_hash"


def drop_entry(lines: Lines) -> tuple[Lines, str]:
    return [*lines[:4], *lines[5:]], "seq 5: expected seq 5, found seq 6 (missing)"


def swap_entries(lines: Lines) -> tuple[Lines, str]:
    return [*lines[:5], lines[6], lines[5], *lines[7:]], "seq 6: expected seq 6, found seq 7"


def truncate(lines: Lines) -> tuple[Lines, str]:
    return [*lines[:-2], lines[-1]], "seq 10: entries missing"


def forge_root(lines: Lines) -> tuple[Lines, str]:
    trailer = json.loads(lines[-1])
    trailer["prefix"], trailer["consistency"] = [], ["00" * 32]
    return [*lines[:-1], json.dumps(trailer)], "not a prefix of the signed checkpoint"


def edit_checkpoint(lines: Lines) -> tuple[Lines, str]:
    trailer = json.loads(lines[-1])
    note = trailer["checkpoint"]["note"].split("\n")
    note[1] = str(int(note[1]) + 1)
    trailer["checkpoint"]["note"] = "\n".join(note)
    return [*lines[:-1], json.dumps(trailer)], "checkpoint: the checkpoint does not verify"


@pytest.mark.parametrize(
    "tamper",
    [
        edit_amount,
        edit_memo_and_rehash,
        drop_entry,
        swap_entries,
        truncate,
        forge_root,
        edit_checkpoint,
    ],
)
async def test_a_tampered_export_is_refused_naming_the_seq(
    module_api: Api,
    module_book: Book,
    tmp_path: Path,
    tamper: Callable[[Lines], tuple[Lines, str]],
) -> None:
    lines = await export(module_api, module_book.code)
    jwks = await saved_jwks(module_api, tmp_path)
    changed, expected = tamper(lines)
    tampered = await write(tmp_path / "tampered.jsonl", changed)
    result = audit_verify_here(tampered, "--jwks", str(jwks))
    assert result.exit_code == 1, result.stdout
    failure = result.stderr.splitlines()[-1]  # after the progress bar
    assert failure.startswith("FAILED "), result.stderr
    assert expected in failure, result.stderr


@pytest.mark.slow
async def test_verify_receipt_with_and_without_its_proof(
    api: Api, book: Book, cli_env: dict[str, str], tmp_path: Path
) -> None:
    line = json.loads((await export(api, book.code))[4])
    tx = line["entry"]["tx_id"]
    receipt = (await api.client.get(f"/v1/transactions/{tx}/receipt")).text
    bundle = (await api.client.get(f"/v1/transactions/{tx}/proof")).text
    checkpoint = (await api.client.get(f"/v1/books/{book.code}/checkpoint")).text
    files = {"receipt.json": receipt, "bundle.txt": bundle, "checkpoint.json": checkpoint}
    for name, text in files.items():
        await asyncio.to_thread((tmp_path / name).write_text, text)
    jwks = await saved_jwks(api, tmp_path)
    base = [TIMEBANK, "audit", "verify-receipt", "--jwks", str(jwks)]

    alone = await run([*base, line["receipt"]], cli_env)
    assert alone.returncode == 0, alone.stderr
    assert f"seq 5 tx {tx}" in alone.stdout
    proved = await run(
        [*base, str(tmp_path / "receipt.json"), "--proof", str(tmp_path / "bundle.txt")], cli_env
    )
    assert proved.returncode == 0, proved.stderr
    assert f"included in checkpoint timebank.local/ledger/{book.code} size" in proved.stdout
    with_checkpoint = await run(
        [
            *base,
            str(tmp_path / "receipt.json"),
            "--proof",
            str(tmp_path / "bundle.txt"),
            "--checkpoint",
            str(tmp_path / "checkpoint.json"),
        ],
        cli_env,
    )
    assert with_checkpoint.returncode == 0, with_checkpoint.stderr

    other = json.loads((await export(api, book.code))[5])["receipt"]
    wrong = await run([*base, other, "--proof", str(tmp_path / "bundle.txt")], cli_env)
    assert wrong.returncode == 1
    assert "FAILED seq 6: the proof is for leaf 4" in wrong.stderr
    forged = line["receipt"][:-4] + ("AAAA" if not line["receipt"].endswith("AAAA") else "BBBB")
    bad = await run([*base, forged], cli_env)
    assert bad.returncode == 1 and "FAILED" in bad.stderr
