"""A meta nested as deep as the service accepts, and deeper (entries the service accepted
before the door limited depth: the journal keeps them for ever), never stops a book's audit:
both exports verify with `timebank audit verify` and `scripts/verify-export`, the receipt with
`timebank audit verify-receipt`, and `timebank verify` passes. The kiosk page's checker is
driven in tests/e2e/test_kiosk_page.py. Also: the verifier script's own parser and
canonicaliser agree with `json` and `rfc8785` (vectors, random JSON, any depth)."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import importlib.machinery
import importlib.util
import io
import json
import struct
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from app.cli import cli
from app.kit import deep_json
from app.kit.canonical_json import canonical_bytes
from app.kit.schemas import MAX_META_BYTES
from app.ledger.posting import Draft
from tests.audit.test_export_verifier import TIMEBANK, VERIFIER, run
from tests.conftest import Api
from tests.kit.test_canonical_json import json_values
from tests.kit.test_deep_json import (
    no_constant,
    no_duplicates,
    outcome,
    recursion_limit,
    texts,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "jcs"
# Deeper than any limit: about what a 4 KiB meta could nest before the door limited depth.
LEGACY_DEPTH = 1500


def load_script() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("verify_export", str(VERIFIER))
    spec = importlib.util.spec_from_loader("verify_export", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["verify_export"] = module  # dataclasses look their module up there
    loader.exec_module(module)
    return module


script = load_script()


def nested(depth: int) -> dict[str, Any]:
    """A meta of `depth` levels of containers (itself the first), arrays and objects in turn,
    with a scalar of each kind at the bottom: about 2 to 6 bytes of canonical JSON a level."""
    value: Any = [1, "é", None, True]
    for level in range(depth - 2):
        value = {"k": value} if level % 2 else [value]
    return {"deep": value}


def depth_of(value: Any) -> int:
    """Levels of containers in `value`, itself the first (explicit stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


# --- the verifier script's JSON ------------------------------------------------------------------


def test_the_scripts_canonical_bytes_match_the_rfc8785_vectors() -> None:
    names = sorted(p.stem for p in (VECTORS / "output").glob("*.json"))
    assert len(names) == 6
    for name in names:
        source = (VECTORS / "input" / f"{name}.json").read_text("utf-8")
        expected = (VECTORS / "output" / f"{name}.json").read_bytes()
        assert script.canonical(script.parse_deep(source)) == expected, name
        assert script.canonical(json.loads(source)) == expected, name
    for line in (VECTORS / "es6-number-samples.txt").read_text().splitlines():
        ieee, expected_text = line.split(",")
        (number,) = struct.unpack(">d", bytes.fromhex(ieee.rjust(16, "0")))
        assert script.canonical([number]) == f"[{expected_text}]".encode(), line


@settings(max_examples=500)
@given(json_values)
def test_the_scripts_canonical_bytes_equal_rfc8785(value: Any) -> None:
    try:
        expected = rfc8785.dumps(value)
    except Exception:
        with pytest.raises(Exception):  # noqa: B017 - whatever the reference refuses
            script.canonical(value)
        return
    assert script.canonical(value) == expected


@settings(max_examples=60, deadline=None)
@given(json_values, st.integers(1000, 2500))
def test_the_scripts_canonical_bytes_equal_rfc8785_at_any_depth(value: Any, depth: int) -> None:
    deep: Any = value
    for level in range(depth):
        deep = {"k": deep, "\u00e9": level} if level % 2 else [deep]
    try:
        with recursion_limit(10 * depth + 1000):
            expected = rfc8785.dumps(deep)
    except Exception:
        with pytest.raises(Exception):  # noqa: B017 - whatever the reference refuses
            script.canonical(deep)
        return
    assert script.canonical(deep) == expected


@settings(max_examples=1500)
@given(texts)
def test_the_scripts_parser_reads_and_refuses_what_strict_json_loads_does(text: str) -> None:
    def strict(t: str) -> Any:
        return json.loads(t, object_pairs_hook=no_duplicates, parse_constant=no_constant)

    def verdict(read: Any) -> tuple[str, Any]:  # the script's errors are all ValueErrors
        result = outcome(read, text)
        return result if result[0] == "ok" else ("error", None)

    assert verdict(script.parse_deep) == verdict(strict)
    assert verdict(script.parse_line) == verdict(strict)


def test_the_scripts_parser_reads_any_depth() -> None:
    text = canonical_bytes(nested(LEGACY_DEPTH)).decode()
    with pytest.raises(RecursionError):
        json.loads(text)
    parsed = script.parse_line(text)
    assert script.canonical(parsed) == script.canonical(deep_json.loads(text))
    assert depth_of(parsed) == LEGACY_DEPTH
    with pytest.raises(ValueError, match="duplicate"):
        script.parse_line("[" * LEGACY_DEPTH + '{"a":1,"a":2}' + "]" * LEGACY_DEPTH)
    with pytest.raises(ValueError, match="not JSON"):
        script.parse_line("[" * LEGACY_DEPTH + "NaN" + "]" * LEGACY_DEPTH)


# --- a book with the deepest meta accepted, and a legacy deeper one ------------------------------


async def post_meta(
    api: Api, book: str, accounts: tuple[str, str], meta: Any, key: str | None = None
) -> Any:
    """A transfer with this meta, its body written without recursion (httpx's json= would
    use json.dumps)."""
    body = {
        "kind": "transfer",
        "legs": [
            {"account_id": accounts[0], "amount": -1},
            {"account_id": accounts[1], "amount": 1},
        ],
        "meta": meta,
    }
    return await api.client.post(
        f"/v1/books/{book}/transactions",
        content=canonical_bytes(body),
        headers={"Idempotency-Key": key or uuid.uuid4().hex, "Content-Type": "application/json"},
    )


async def deepest_accepted(api: Api, book: str, accounts: tuple[str, str]) -> tuple[int, str]:
    """The deepest `nested(depth)` meta the API accepts today (the depth limit of the door, or
    what 4 KiB holds), found by bisection; its depth and the tx id of the entry posted."""
    low, high = 2, MAX_META_BYTES // 2  # 2 is accepted; `high` cannot fit 4 KiB
    posted = await post_meta(api, book, accounts, nested(low))
    assert posted.status_code == 201, posted.text
    tx = str(posted.json()["id"])
    while high - low > 1:
        middle = (low + high) // 2
        answer = await post_meta(api, book, accounts, nested(middle))
        if answer.status_code == 201:
            low, tx = middle, str(answer.json()["id"])
        else:
            high = middle
    return low, tx


@dataclass
class DeepBook:
    code: str
    accepted_depth: int
    accepted_tx: str
    legacy_tx: str
    entries: int


async def deep_book(api: Api) -> DeepBook:
    book = await api.book()
    issuance, member = await api.funded(book, 0)
    depth, accepted_tx = await deepest_accepted(api, book, (issuance, member))
    # A repeat of such a posting is answered again from the journal.
    key = uuid.uuid4().hex
    first = await post_meta(api, book, (issuance, member), nested(depth), key)
    again = await post_meta(api, book, (issuance, member), nested(depth), key)
    assert first.status_code == again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["entry_hash"] == first.json()["entry_hash"]
    # Written as the service wrote entries before the door limited depth: by its sequencer.
    legacy = Draft(
        book, "post", "transfer", [(issuance, -2), (member, 2)], "", nested(LEGACY_DEPTH)
    )
    written = await api.app.state.sequencer.submit(legacy)
    assert written.status_code == 201, written.payload
    legacy_tx = str(deep_json.loads(written.payload)["id"])
    # Entries after them, so that they sit inside the chain rather than at its head.
    after = await api.transfer(book, issuance, member, 3, meta=nested(2))
    assert after.status_code == 201, after.text
    head = (await api.client.get(f"/v1/books/{book}/head")).json()["seq"]
    return DeepBook(book, depth, accepted_tx, legacy_tx, head)


async def write_bytes(path: Path, data: bytes) -> Path:
    await asyncio.to_thread(path.write_bytes, data)
    return path


@pytest.mark.slow
async def test_exports_of_a_book_with_deep_metas_verify_with_every_verifier(
    api: Api, cli_env: dict[str, str], tmp_path: Path
) -> None:
    book = await deep_book(api)
    # Whatever the door's limit (about 920 levels today, where json.loads gives up on the
    # request; 32 for the whole body once depth is limited), a meta nests well past a few.
    assert book.accepted_depth >= 16
    legacy = (await api.client.get(f"/v1/transactions/{book.legacy_tx}/receipt")).json()
    assert legacy["book"] == book.code
    for tx in (book.accepted_tx, book.legacy_tx):  # read back whole, with their receipts
        posting = await api.client.get(f"/v1/transactions/{tx}")
        assert posting.status_code == 200, posting.text
        body = canonical_bytes(deep_json.loads(posting.content)["entry"])
        assert hashlib.sha256(body).hexdigest() == deep_json.loads(posting.content)["entry_hash"]
        assert b'"receipt":"' in posting.content

    # The API's export, verified offline by both verifiers.
    r = await api.client.get(f"/v1/books/{book.code}/export")
    assert r.status_code == 200, r.text
    api_export = await write_bytes(tmp_path / "api.jsonl", r.content)
    lines = r.content.splitlines()
    assert len(lines) == book.entries + 1
    entries = [deep_json.loads(line)["entry"] for line in lines[:-1]]
    depths = {e["tx_id"]: depth_of(e["meta"]) for e in entries}
    assert depths[book.accepted_tx] == book.accepted_depth
    assert depths[book.legacy_tx] == LEGACY_DEPTH
    spreadsheet = await api.client.get(f"/v1/books/{book.code}/export", params={"format": "csv"})
    assert spreadsheet.status_code == 200, spreadsheet.text
    rows = csv.DictReader(io.StringIO(spreadsheet.content.decode("utf-8-sig")))
    metas = {row["tx_id"]: row["meta"] for row in rows}
    assert depth_of(deep_json.loads(metas[book.legacy_tx])) == LEGACY_DEPTH
    keys = (await api.client.get("/.well-known/jwks.json")).content
    jwks = await write_bytes(tmp_path / "jwks.json", keys)

    audit = await run([TIMEBANK, "audit", "verify", str(api_export), "--jwks", str(jwks)])
    assert audit.returncode == 0, audit.stderr
    assert f"OK: book {book.code}: seq 1..{book.entries}" in audit.stdout
    independent = await run([sys.executable, str(VERIFIER), str(api_export)])
    assert independent.returncode == 0, independent.stderr
    assert f"OK: book {book.code}: {book.entries} entries verified" in independent.stdout
    assert "checkpoint (signature not checked)" in independent.stdout

    # `timebank export`'s file, by the independent verifier; the service's own verify.
    cli_export = tmp_path / "cli.jsonl"
    exported = await run(
        [TIMEBANK, "export", "--book", book.code, "--output", str(cli_export)], cli_env
    )
    assert exported.returncode == 0, exported.stderr
    head = (await api.client.get(f"/v1/books/{book.code}/head")).json()
    checked = await run(
        [sys.executable, str(VERIFIER), str(cli_export), "--expect-head", head["entry_hash"]]
    )
    assert checked.returncode == 0, checked.stderr
    assert f"OK: book {book.code}: {book.entries} entries verified" in checked.stdout
    online = await run([TIMEBANK, "verify", "--book", book.code], cli_env)
    assert online.returncode == 0, online.stderr + online.stdout

    # The deep entry's receipt and its proof bundle, offline.
    receipt = await write_bytes(tmp_path / "receipt.jwt", legacy["receipt"].encode())
    proof = await api.client.get(f"/v1/transactions/{book.legacy_tx}/proof")
    assert proof.status_code == 200, proof.text
    bundle = await write_bytes(tmp_path / "proof.txt", proof.content)
    one = await run(
        [
            TIMEBANK,
            "audit",
            "verify-receipt",
            str(receipt),
            "--jwks",
            str(jwks),
            "--proof",
            str(bundle),
        ]
    )
    assert one.returncode == 0, one.stderr
    assert "included in checkpoint" in one.stdout


@pytest.mark.slow
async def test_a_changed_deep_meta_is_caught_at_its_seq(
    api: Api, cli_env: dict[str, str], tmp_path: Path
) -> None:
    book = await deep_book(api)
    r = await api.client.get(f"/v1/books/{book.code}/export")
    lines = r.content.splitlines()
    seq = next(
        i + 1
        for i, line in enumerate(lines[:-1])
        if deep_json.loads(line)["entry"]["tx_id"] == book.legacy_tx
    )
    # One scalar at the bottom of the legacy meta changed: "é" becomes "e".
    forged = lines[seq - 1].replace('"é"'.encode(), b'"e"')
    assert forged != lines[seq - 1]
    path = await write_bytes(
        tmp_path / "forged.jsonl", b"\n".join([*lines[: seq - 1], forged, *lines[seq:]]) + b"\n"
    )
    for verifier in (
        [TIMEBANK, "audit", "verify", str(path)],
        [sys.executable, str(VERIFIER), str(path)],
    ):
        result = await run(verifier)
        assert result.returncode == 1, (verifier, result.stdout)
        assert result.stderr.strip().splitlines()[-1].startswith(f"FAILED seq {seq}: "), (
            result.stderr
        )


# --- the offline commands answer any input with a verdict, never a traceback ---------------------


def test_the_offline_commands_refuse_deep_or_odd_input_without_crashing(tmp_path: Path) -> None:
    runner = CliRunner()

    def exit_code(*args: str) -> int:
        result = runner.invoke(cli, ["audit", *args])
        assert isinstance(result.exception, SystemExit), (args, result.exception)
        return int(result.exit_code)

    deep = b"[" * 5000 + b"]" * 5000
    export = tmp_path / "deep.jsonl"
    export.write_bytes(b'{"entry": ' + deep + b', "entry_hash": "", "receipt": ""}\n' + deep)
    assert exit_code("verify", str(export)) == 1  # the last line is no checkpoint line
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    receipt = tmp_path / "receipt.json"
    for text, code in (
        ("[1]", 1),
        ("{not json", 2),
        ('{"receipt": ' + "[" * 5000 + "]" * 5000 + "}", 1),
        ("e" + "[" * 5000, 1),
    ):
        receipt.write_text(text)
        assert exit_code("verify-receipt", str(receipt), "--jwks", str(jwks)) == code, text[:20]
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text("{" + '"a":[' * 3000 + "1" + "]" * 3000 + "}")
    assert exit_code("verify", str(export), "--checkpoint", str(checkpoint)) == 2
