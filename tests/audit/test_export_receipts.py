"""The export with and without receipts (`receipts=false`, docs/audit-format.md §8.5): the
default still signs every line; without receipts the same lines lose only their receipt, and
`timebank audit verify` checks all the rest (a tampered file fails, the signed checkpoint
catching what the receipts would); lines of both kinds in one file are refused; receipts
checked by other processes (`--jobs`) give the same verdicts."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.audit import offline, receipt_checker
from tests.audit.test_audit_export import (
    Lines,
    audit_verify_here,
    drop_entry,
    edit_amount,
    edit_checkpoint,
    export,
    forge_root,
    rehash,
    saved_jwks,
    swap_entries,
    truncate,
    write,
)
from tests.audit.test_export_verifier import Book, build_book, verify
from tests.conftest import Api


@pytest.fixture(scope="module")
async def module_book(module_api: Api) -> Book:
    """One entry of every kind the API writes (build_book), built once for the module."""
    return await build_book(module_api)


def said(result: Any) -> str:
    """The CLI's output with rich's line wrapping undone."""
    return " ".join(f"{result.stdout}\n{result.stderr}".split())


def receipt_of(line: str) -> str:
    token: str = json.loads(line)["receipt"]
    return token


async def test_the_default_signs_every_line_and_receipts_false_leaves_only_that_out(
    module_api: Api, module_book: Book, tmp_path: Path
) -> None:
    signed = await export(module_api, module_book.code)
    asked = await export(module_api, module_book.code, receipts="true")
    bare = await export(module_api, module_book.code, receipts="false")
    assert asked == signed  # receipts are deterministic: the same claims, the same key
    assert len(bare) == len(signed) == module_book.entries + 1
    for with_receipt, without in zip(signed[:-1], bare[:-1], strict=True):
        assert set(json.loads(with_receipt)) == {"entry", "entry_hash", "receipt"}
        assert set(json.loads(without)) == {"entry", "entry_hash"}
        assert without == with_receipt.replace(f',"receipt":"{receipt_of(with_receipt)}"', "")
    assert bare[-1] == signed[-1]  # the same checkpoint line

    jwks = await saved_jwks(module_api, tmp_path)
    n = module_book.entries
    plain = audit_verify_here(await write(tmp_path / "bare.jsonl", bare), "--jwks", str(jwks))
    assert plain.exit_code == 0, said(plain)
    assert f"seq 1..{n} ({n} entries) verified: hashes, chain, Merkle root" in said(plain)
    assert "receipts: none in the export" in said(plain)
    assert "asset HOUR: posted total 0, pending total 0" in said(plain)
    full = audit_verify_here(await write(tmp_path / "full.jsonl", signed), "--jwks", str(jwks))
    assert full.exit_code == 0, said(full)
    assert "verified: hashes, chain, receipts, Merkle root" in said(full)
    assert f"receipts: {n}, keys " in said(full)

    # A verifier must not depend on how the service writes a line: spaces, another order.
    rewritten = [json.dumps(dict(reversed(json.loads(line).items()))) for line in bare[:-1]]
    again = audit_verify_here(await write(tmp_path / "re.jsonl", [*rewritten, bare[-1]]))
    assert again.exit_code == 0, said(again)


async def test_receipts_must_be_a_boolean(module_api: Api, module_book: Book) -> None:
    r = await module_api.client.get(
        f"/v1/books/{module_book.code}/export", params={"receipts": "maybe"}
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:timebank:problem:validation"


def memo_rehashed(lines: Lines) -> tuple[Lines, str]:
    """With a receipt the receipt catches this (test_audit_export); without, the chain."""
    line = json.loads(lines[3])
    line["entry"]["memo"] = "nothing to see"
    line["entry_hash"] = rehash(line["entry"])
    changed = [*lines[:3], json.dumps(line, ensure_ascii=False), *lines[4:]]
    return changed, "seq 4: entry_hash differs from the prev_hash seq 5 recorded"


def tail_rewritten(lines: Lines) -> tuple[Lines, str]:
    """Entry 4 changed and every later one re-chained: hashes and chain hold, and only the
    signed checkpoint (through the Merkle root) can tell."""
    out, previous = lines[:3], None
    for raw in lines[3:-1]:
        line = json.loads(raw)
        if previous is None:
            line["entry"]["memo"] = "rewritten"
        else:
            line["entry"]["prev_hash"] = previous
        line["entry_hash"] = previous = rehash(line["entry"])
        out.append(json.dumps(line, ensure_ascii=False))
    last = json.loads(lines[-1])["to_seq"]
    return [*out, lines[-1]], f"seq {last}: the Merkle root of seq 1..{last} is not a prefix"


def member_repeated(lines: Lines) -> tuple[Lines, str]:
    """A repeated member, in a line otherwise written as the service writes it."""
    assert lines[5].startswith('{"entry":{"book":')
    changed = lines[5].replace('{"entry":{"book":', '{"entry":{"book":"x","book":', 1)
    return [*lines[:5], changed, *lines[6:]], "seq 6: the line is not JSON: duplicate member"


@pytest.mark.parametrize(
    "tamper",
    [
        edit_amount,
        memo_rehashed,
        tail_rewritten,
        member_repeated,
        drop_entry,
        swap_entries,
        truncate,
        forge_root,
        edit_checkpoint,
    ],
)
async def test_a_tampered_export_without_receipts_is_refused_naming_the_seq(
    module_api: Api,
    module_book: Book,
    tmp_path: Path,
    tamper: Callable[[Lines], tuple[Lines, str]],
) -> None:
    lines = await export(module_api, module_book.code, receipts="false")
    honest = audit_verify_here(await write(tmp_path / "honest.jsonl", lines))
    assert honest.exit_code == 0, said(honest)
    changed, expected = tamper(lines)
    result = audit_verify_here(await write(tmp_path / "tampered.jsonl", changed))
    assert result.exit_code == 1, said(result)
    failure = result.stderr.splitlines()[-1]  # after the progress bar
    assert failure.startswith("FAILED "), result.stderr
    assert expected in failure, result.stderr


async def test_lines_with_and_without_receipts_in_one_file_are_refused(
    module_api: Api, module_book: Book, tmp_path: Path
) -> None:
    signed = await export(module_api, module_book.code)
    bare = await export(module_api, module_book.code, receipts="false")
    for first, then, said_first in ((bare, signed, "has none"), (signed, bare, "has a receipt")):
        mixed = [*first[:6], then[6], *first[7:]]
        result = audit_verify_here(await write(tmp_path / "mixed.jsonl", mixed))
        assert result.exit_code == 1, said(result)
        assert result.stderr.splitlines()[-1] == (
            f"FAILED seq 7: receipts are mixed: the first entry line {said_first}, this not"
        )


@pytest.mark.slow  # the script runs as a process
async def test_the_independent_verifier_takes_an_export_without_receipts(
    module_api: Api, module_book: Book, tmp_path: Path
) -> None:
    bare = await export(module_api, module_book.code, receipts="false")
    signed = await export(module_api, module_book.code)
    result = await verify(await write(tmp_path / "bare.jsonl", bare))
    assert result.returncode == 0, result.stderr
    assert f"OK: book {module_book.code}: {module_book.entries} entries verified" in result.stdout
    assert "not checked (`timebank audit verify`); no receipts" in result.stdout
    cases = {
        "an amount changed": (edit_amount(bare)[0], "FAILED seq 3: entry_hash"),
        "a memo changed and rehashed": (
            memo_rehashed(bare)[0],
            "FAILED seq 4: entry_hash differs from the prev_hash recorded by seq 5",
        ),
        "a signed line among bare ones": (
            [*bare[:6], signed[6], *bare[7:]],
            "FAILED seq 7: receipts are mixed: the first entry line has none, this not",
        ),
        "a bare line among signed ones": (
            [*signed[:6], bare[6], *signed[7:]],
            "FAILED seq 7: receipts are mixed: the first entry line has a receipt, this not",
        ),
    }
    for name, (changed, expected) in cases.items():
        refused = await verify(await write(tmp_path / "changed.jsonl", changed))
        assert refused.returncode == 1, name
        assert refused.stderr.startswith(expected), (name, refused.stderr)


def flipped(token: str) -> str:
    header, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[5] ^= 1
    return f"{header}.{payload}.{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode()}"


def with_receipt(lines: Lines, seq: int, token: str) -> Lines:
    line = json.loads(lines[seq - 1])
    line["receipt"] = token
    return [*lines[: seq - 1], json.dumps(line, ensure_ascii=False), *lines[seq:]]


def outcome(lines: Lines, jobs: int) -> tuple[Any, ...]:
    raw = [line.encode() for line in lines]
    try:
        report = offline.verify_export(raw[:-1], raw[-1], jobs=jobs)
    except offline.VerifyError as exc:
        return ("failed", str(exc))
    return ("ok", report.receipts, sorted(report.kids), report.root, report.head)


async def test_receipts_checked_by_other_processes_give_the_same_verdicts(
    module_api: Api, module_book: Book, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = await export(module_api, module_book.code)
    forged = with_receipt(lines, 7, flipped(receipt_of(lines[6])))
    cases = {
        "honest": lines,
        "a forged receipt": forged,
        "another entry's receipt": with_receipt(lines, 4, receipt_of(lines[8])),
        "an amount changed before a forged receipt": edit_amount(forged)[0],
        "a receipt that is not a string": with_receipt(lines, 9, 1),  # type: ignore[arg-type]
    }
    monkeypatch.setattr(offline, "CHUNK", 2)  # several chunks in flight, in several processes
    checked_here: list[int] = []
    check = receipt_checker.ReceiptChecker.check

    def counted(self: receipt_checker.ReceiptChecker, *args: Any) -> str:
        checked_here.append(1)  # (a worker appends to its own copy)
        return check(self, *args)

    monkeypatch.setattr(receipt_checker.ReceiptChecker, "check", counted)
    for name, changed in cases.items():
        alone = outcome(changed, jobs=1)
        assert len(checked_here) > 0, name
        checked_here.clear()
        assert outcome(changed, jobs=3) == alone, name
        assert checked_here == [], name  # every verdict came from another process
    assert outcome(lines, jobs=1)[:2] == ("ok", module_book.entries)
    assert outcome(forged, jobs=1) == (
        "failed",
        "FAILED seq 7: receipt: the signature does not verify",
    )
