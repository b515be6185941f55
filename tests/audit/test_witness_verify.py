"""The verifiers with a witness policy: `timebank audit verify`, `verify-receipt` on a proof
bundle and scripts/verify-export refuse a checkpoint without the quorum of cosignatures, and
change nothing without the option."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from app.audit.cosignature import Cosigner, cosign, with_signatures
from app.cli import cli
from tests.audit.test_audit_export import audit_verify_here, export, saved_jwks, write
from tests.audit.test_export_verifier import VERIFIER, Book, build_book, verify
from tests.conftest import Api

Lines = list[str]
KEYS = [Ed25519PrivateKey.from_private_bytes(bytes([0x40 + i]) * 32) for i in range(3)]
NAMES = ["mzj.example/witness", "jiwei.example/witness", "foundation.example/witness"]
LABELS = ["civil-affairs", "discipline", "foundation"]
T0 = 1_764_900_000  # 2025-12-05T02:00:00Z
POLICY = (
    "# the district's witnesses: any two of three\n"
    + "".join(
        f"witness {label} {Cosigner.from_public_key(name, key.public_key()).vkey()}\n"
        for label, name, key in zip(LABELS, NAMES, KEYS, strict=True)
    )
    + "group district 2 civil-affairs discipline foundation\nquorum district\n"
)
NEEDS = "district (2 of civil-affairs, discipline, foundation)"


def cosigned_note(note: str, which: list[int], corrupt: int | None = None) -> str:
    """`note` with the cosignatures of witnesses `which`; the one of `corrupt` broken."""
    text = note[: note.rfind("\n\n") + 1]
    lines = []
    for i in which:
        line = cosign(text, NAMES[i], KEYS[i], T0 + i)
        if i == corrupt:  # a flipped bit of the signature, the key id kept
            name, blob = line[:-1].rsplit(" ", 1)
            raw = bytearray(base64.b64decode(blob))
            raw[-1] ^= 1
            line = f"{name} {base64.b64encode(bytes(raw)).decode()}\n"
        lines.append(line)
    return with_signatures(note, lines)


def cosigned_export(lines: Lines, which: list[int], corrupt: int | None = None) -> Lines:
    trailer = json.loads(lines[-1])
    note = trailer["checkpoint"]["note"]
    trailer["checkpoint"]["note"] = cosigned_note(note, which, corrupt)
    return [*lines[:-1], json.dumps(trailer, ensure_ascii=False)]


@pytest.fixture(scope="module")
async def book_export(module_api: Api) -> tuple[Book, Lines]:
    book = await build_book(module_api)
    return book, await export(module_api, book.code)


@pytest.fixture
async def policy(tmp_path: Path) -> Path:
    path = tmp_path / "witnesses.policy"
    await asyncio.to_thread(path.write_text, POLICY)
    return path


# Which witnesses cosign, whose line is corrupted, and whether 2 of 3 is met.
CASES: dict[str, tuple[list[int], int | None, bool]] = {
    "three": ([0, 1, 2], None, True),
    "two": ([2, 0], None, True),
    "one": ([1], None, False),
    "none": ([], None, False),
    "two and a corrupted third": ([0, 1, 2], 2, False),
    "a corrupted one of two": ([0, 1], 0, False),
}


def said(result: Any) -> str:
    return f"{result.stdout}\n{result.stderr}"


async def test_audit_verify_needs_the_quorum(
    book_export: tuple[Book, Lines], policy: Path, tmp_path: Path
) -> None:
    book, lines = book_export
    for case, (which, corrupt, met) in CASES.items():
        path = await write(tmp_path / "cosigned.jsonl", cosigned_export(lines, which, corrupt))
        plain = audit_verify_here(path, "--jobs", "1")
        assert plain.exit_code == 0, (case, said(plain))
        assert "witness" not in plain.stdout, case
        result = audit_verify_here(path, "--jobs", "1", "--witness-policy", str(policy))
        if met:
            assert result.exit_code == 0, (case, said(result))
            assert f"OK: book {book.code}" in result.stdout
            cosigners = ", ".join(
                f"{LABELS[i]} ({NAMES[i]}, 2025-12-05T02:00:0{i}Z)" for i in which
            )
            assert f"witnesses: cosigned by {cosigners}" in result.stdout, result.stdout
            assert f"witness policy met: {NEEDS}" in result.stdout
            continue
        assert result.exit_code == 1, (case, said(result))
        failure = result.stderr.splitlines()[-1]
        assert failure.startswith("FAILED checkpoint: the checkpoint does not meet the witness")
        if corrupt is None:
            who = ", ".join(LABELS[i] for i in which) or "no listed witness"
            assert failure.endswith(f"it needs {NEEDS}; cosigned by {who}"), failure
        else:
            assert f"invalid signature for key {NAMES[corrupt]}+" in failure, failure


async def test_a_bad_policy_file_is_an_error_naming_the_line(
    book_export: tuple[Book, Lines], tmp_path: Path
) -> None:
    _, lines = book_export
    path = await write(tmp_path / "export.jsonl", lines)
    bad = tmp_path / "bad.policy"
    await asyncio.to_thread(bad.write_text, POLICY.replace(" 2 civil", " 4 civil"))
    result = audit_verify_here(path, "--witness-policy", str(bad))
    assert result.exit_code == 2, said(result)
    assert "line 5: the threshold must be between 1 and 3" in result.stderr


async def test_verify_receipt_checks_the_bundles_checkpoint(
    module_api: Api, book_export: tuple[Book, Lines], policy: Path, tmp_path: Path
) -> None:
    _, lines = book_export
    tx = json.loads(lines[3])["entry"]["tx_id"]
    receipt = (await module_api.client.get(f"/v1/transactions/{tx}/receipt")).json()["receipt"]
    bundle = (await module_api.client.get(f"/v1/transactions/{tx}/proof")).text
    head, _, note = bundle.partition("\n\n")
    jwks = await saved_jwks(module_api, tmp_path)
    base = ["audit", "verify-receipt", receipt, "--jwks", str(jwks)]

    for case, (which, corrupt, met) in CASES.items():
        path = tmp_path / "bundle.txt"
        await asyncio.to_thread(path.write_text, f"{head}\n\n{cosigned_note(note, which, corrupt)}")
        plain = CliRunner().invoke(cli, [*base, "--proof", str(path)])
        assert plain.exit_code == 0, (case, said(plain))
        assert "witness" not in plain.stdout
        result = CliRunner().invoke(
            cli, [*base, "--proof", str(path), "--witness-policy", str(policy)]
        )
        if met:
            assert result.exit_code == 0, (case, said(result))
            assert "included in checkpoint" in result.stdout
            assert f"witness policy met: {NEEDS}" in result.stdout
        else:
            assert result.exit_code == 1, (case, said(result))
            assert result.stderr.startswith(
                "FAILED checkpoint: the checkpoint does not meet the witness policy: "
            ), result.stderr

    alone = CliRunner().invoke(cli, [*base, "--witness-policy", str(policy)])
    assert alone.exit_code == 1 and "a witness policy needs a proof" in alone.stderr


@pytest.mark.slow
async def test_the_independent_verifier_needs_the_quorum_too(
    book_export: tuple[Book, Lines], policy: Path, tmp_path: Path
) -> None:
    book, lines = book_export
    option = ("--witness-policy", str(policy))
    for case, (which, corrupt, met) in CASES.items():
        path = await write(tmp_path / "cosigned.jsonl", cosigned_export(lines, which, corrupt))
        plain = await verify(path)
        assert plain.returncode == 0, (case, plain.stderr)
        assert "checkpoint (signature not checked)" in plain.stdout
        result = await verify(path, *option)
        if met:
            assert result.returncode == 0, (case, result.stderr)
            assert f"OK: book {book.code}: {book.entries} entries verified" in result.stdout
            assert f"covers seq 1..{book.entries}" in result.stdout
            cosigners = ", ".join(
                f"{LABELS[i]} ({NAMES[i]}, 2025-12-05T02:00:0{i}Z)" for i in which
            )
            assert f"witnesses: cosigned by {cosigners}" in result.stdout, result.stdout
            assert f"witness policy met: {NEEDS}" in result.stdout
            continue
        assert result.returncode == 1, (case, result.stdout)
        assert result.stderr.startswith("FAILED checkpoint: "), result.stderr
        if corrupt is None:
            who = ", ".join(f"{LABELS[i]} ({NAMES[i]}" for i in which) or "no witness"
            assert f"it needs {NEEDS}; cosigned by {who}" in result.stderr, result.stderr
        else:
            assert f"the signature of {NAMES[corrupt]}+" in result.stderr, result.stderr


@pytest.mark.slow
async def test_the_independent_verifier_ties_the_entries_to_the_cosigned_checkpoint(
    module_api: Api, book_export: tuple[Book, Lines], policy: Path, tmp_path: Path
) -> None:
    book, _ = book_export
    # A true prefix of the book, with the consistency proof to the whole book's checkpoint.
    end = book.entries - 3
    good = cosigned_export(await export(module_api, book.code, to_seq=end), [0, 1])
    trailer = json.loads(good[-1])
    assert trailer["checkpoint"]["tree_size"] == book.entries and trailer["consistency"]
    result = await verify(
        await write(tmp_path / "prefix.jsonl", good), "--witness-policy", str(policy)
    )
    assert result.returncode == 0, result.stderr
    assert (
        f"size {book.entries} signed by the export's jwks; its Merkle root covers seq 1..{end}"
        in result.stdout
    )

    other_key = Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key()
    other_x = base64.urlsafe_b64encode(other_key.public_bytes_raw()).decode()
    foreign = {**trailer["jwks"], "keys": [{**trailer["jwks"]["keys"][0], "x": other_x[:43]}]}

    def changed(**members: Any) -> Lines:
        return [*good[:-1], json.dumps({**trailer, **members}, ensure_ascii=False)]

    flipped = trailer["consistency"][:]
    flipped[0] = ("0" if flipped[0][0] != "0" else "1") + flipped[0][1:]
    cases = {
        "a wrong consistency proof": (
            changed(consistency=flipped),
            f"FAILED seq {end}: the Merkle root of seq 1..{end} is not a prefix",
        ),
        "an unsigned tree_size changed": (
            changed(checkpoint={**trailer["checkpoint"], "tree_size": book.entries + 1}),
            "FAILED checkpoint: tree_size or root differs from what the signed note states",
        ),
        "keys that did not sign it": (
            changed(jwks=foreign),
            "FAILED checkpoint: no key of the export's jwks signed the checkpoint",
        ),
    }
    for case, (changed_lines, expected) in cases.items():
        path = await write(tmp_path / "changed.jsonl", changed_lines)
        result = await verify(path, "--witness-policy", str(policy))
        assert result.returncode == 1, (case, result.stdout)
        assert result.stderr.startswith(expected), (case, result.stderr)


@pytest.mark.slow
async def test_the_independent_verifier_imports_cryptography_only_for_a_policy(
    book_export: tuple[Book, Lines], policy: Path, tmp_path: Path
) -> None:
    _, lines = book_export
    path = await write(tmp_path / "export.jsonl", cosigned_export(lines, [0, 1]))
    hidden = tmp_path / "hidden" / "cryptography"
    hidden.mkdir(parents=True)
    await asyncio.to_thread(
        (hidden / "__init__.py").write_text, "raise ImportError('not installed')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(hidden.parent)}

    def run(*options: str) -> Any:
        return subprocess.run(
            [sys.executable, str(VERIFIER), str(path), *options],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    plain = await asyncio.to_thread(run)
    assert plain.returncode == 0, plain.stderr
    missing = await asyncio.to_thread(run, "--witness-policy", str(policy))
    assert missing.returncode == 2, missing.stdout
    assert "--witness-policy needs the `cryptography` package" in missing.stderr
    bad = tmp_path / "bad.policy"
    await asyncio.to_thread(bad.write_text, POLICY + "quorum none\n")
    refused = await verify(path, "--witness-policy", str(bad))
    assert refused.returncode == 2
    assert "line 7: a second quorum line" in refused.stderr
