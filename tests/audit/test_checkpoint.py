"""C2SP checkpoints and tlog-proof bundles: formats, strict parsing, offline verification."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit import merkle, note
from app.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    TlogProof,
    open_checkpoint,
    parse_checkpoint,
    parse_tlog_proof,
    sign_checkpoint,
    verify_tlog_proof,
)
from app.audit.merkle import MemoryTree
from app.audit.note import Verifier

C2SP = Path(__file__).resolve().parents[1] / "vectors" / "c2sp"
ORIGIN = "timebank.example/ledger/xh"
ROOT = bytes(range(32))


def test_checkpoint_text_round_trip() -> None:
    cp = Checkpoint(ORIGIN, 2, ROOT)
    text = cp.text()
    assert text == f"{ORIGIN}\n2\n{base64.b64encode(ROOT).decode()}\n"
    assert parse_checkpoint(text) == cp
    with_ext = Checkpoint(ORIGIN, 0, merkle.EMPTY_ROOT, ("ext one", "ext two"))
    assert parse_checkpoint(with_ext.text()) == with_ext


def test_c2sp_checkpoint_example_parses() -> None:
    signed = (C2SP / "tlog-checkpoint-example.txt").read_text("utf-8")
    with pytest.raises(note.UnverifiedNoteError):
        note.open_note(signed, [])  # well formed; we do not hold the example's key
    body = signed[: signed.rindex("\n\n") + 1]
    cp = parse_checkpoint(body)
    assert (cp.origin, cp.size) == ("example.com/behind-the-sofa", 20852163)
    assert cp.text() == body


def test_c2sp_signed_note_example_is_well_formed() -> None:
    signed = (C2SP / "signed-note-example.txt").read_text("utf-8")
    with pytest.raises(note.UnverifiedNoteError):
        note.open_note(signed, [])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "origin\n1\n",
        "origin\n1\n" + base64.b64encode(ROOT).decode(),
        "\n1\n" + base64.b64encode(ROOT).decode() + "\n",
        "origin\n01\n" + base64.b64encode(ROOT).decode() + "\n",
        "origin\n-1\n" + base64.b64encode(ROOT).decode() + "\n",
        "origin\n+1\n" + base64.b64encode(ROOT).decode() + "\n",
        "origin\n1 \n" + base64.b64encode(ROOT).decode() + "\n",
        "origin\n\uff11\n" + base64.b64encode(ROOT).decode() + "\n",
        "origin\n9223372036854775808\n" + base64.b64encode(ROOT).decode() + "\n",
        "origin\n1\n" + base64.b64encode(ROOT[:31]).decode() + "\n",
        "origin\n1\n" + base64.b64encode(ROOT).decode().rstrip("=") + "\n",
        "origin\n1\n" + base64.urlsafe_b64encode(b"\xff" * 32).decode() + "\n",
        "origin\n1\n" + base64.b64encode(ROOT).decode()[:-2] + "B=\n",
        "origin\n1\n" + base64.b64encode(ROOT).decode() + "\n\n",
        "origin\n1\n" + base64.b64encode(ROOT).decode() + "\next\n\n",
        "ori\tgin\n1\n" + base64.b64encode(ROOT).decode() + "\n",
    ],
)
def test_parse_checkpoint_is_strict(text: str) -> None:
    with pytest.raises(CheckpointError):
        parse_checkpoint(text)


def test_checkpoint_fields_are_checked() -> None:
    for args in [("", 1, ROOT), ("o", -1, ROOT), ("o", 1, ROOT[:5]), ("o", True, ROOT)]:
        with pytest.raises(CheckpointError):
            Checkpoint(*args)
    with pytest.raises(CheckpointError):
        Checkpoint("o", 1, ROOT, ("",))


def key_and_verifier() -> tuple[Ed25519PrivateKey, Verifier]:
    private = Ed25519PrivateKey.generate()
    return private, Verifier.from_public_key(ORIGIN, private.public_key())


def test_signed_checkpoint_round_trip() -> None:
    private, verifier = key_and_verifier()
    cp = Checkpoint(ORIGIN, 7, ROOT)
    signed = sign_checkpoint(cp, ORIGIN, private)
    assert open_checkpoint(signed, ORIGIN, [verifier]) == cp
    with pytest.raises(CheckpointError):
        open_checkpoint(signed, "other.example/log", [verifier])
    tampered = signed.replace("\n7\n", "\n8\n")
    with pytest.raises(note.InvalidSignatureError):
        open_checkpoint(tampered, ORIGIN, [verifier])


def test_tlog_proof_round_trip() -> None:
    bundle = TlogProof(5, (ROOT, bytes(32)), "o\n1\nx\n\n— o sig\n", b"extra data")
    text = bundle.text()
    assert text.startswith("c2sp.org/tlog-proof@v1\nextra ZXh0cmEgZGF0YQ==\nindex 5\n")
    assert parse_tlog_proof(text) == bundle
    bare = TlogProof(0, (), "o\n1\nx\n\n— o sig\n")
    assert bare.text() == "c2sp.org/tlog-proof@v1\nindex 0\n\no\n1\nx\n\n— o sig\n"
    assert parse_tlog_proof(bare.text()) == bare


def test_c2sp_tlog_proof_example_parses() -> None:
    text = (C2SP / "tlog-proof-example.txt").read_text("utf-8")
    bundle = parse_tlog_proof(text)
    assert bundle.index == 73894
    assert len(bundle.proof) == 5
    assert bundle.extra is not None and bundle.extra.startswith(b"age-v1.2.1-darwin-arm64")
    assert bundle.checkpoint.startswith("example.com/fancylog\n109482\n")
    assert bundle.text() == text


GOOD_CP = "o\n1\n" + base64.b64encode(ROOT).decode() + "\n\n— o c2ln\n"


@pytest.mark.parametrize(
    "text",
    [
        "c2sp.org/tlog-proof@v2\nindex 0\n\n" + GOOD_CP,
        "c2sp.org/tlog-proof@v1\nindex 01\n\n" + GOOD_CP,
        "c2sp.org/tlog-proof@v1\nindex -1\n\n" + GOOD_CP,
        "c2sp.org/tlog-proof@v1\nindex\n\n" + GOOD_CP,
        "c2sp.org/tlog-proof@v1\n\n" + GOOD_CP,
        "c2sp.org/tlog-proof@v1\nindex 0\n" + GOOD_CP,
        "c2sp.org/tlog-proof@v1\nindex 0\n\n",
        "c2sp.org/tlog-proof@v1\nindex 0\n\n\n" + GOOD_CP,
        "c2sp.org/tlog-proof@v1\nextra \nindex 0\n\n" + GOOD_CP,
        "c2sp.org/tlog-proof@v1\nextra !!\nindex 0\n\n" + GOOD_CP,
        "c2sp.org/tlog-proof@v1\nindex 0\nextra AAAA\n\n" + GOOD_CP,
        "c2sp.org/tlog-proof@v1\nindex 0\nAAAA\n\n" + GOOD_CP,
        "c2sp.org/tlog-proof@v1\nindex 0\n" + base64.b64encode(ROOT).decode() + " \n\n" + GOOD_CP,
        "c2sp.org/tlog-proof@v1\r\nindex 0\n\n" + GOOD_CP,
        "c2sp.org/tlog-proof@v1\nindex 0\n\n" + GOOD_CP[:-1],
    ],
)
def test_parse_tlog_proof_is_strict(text: str) -> None:
    with pytest.raises(CheckpointError):
        parse_tlog_proof(text)


def test_verify_tlog_proof_offline() -> None:
    private, verifier = key_and_verifier()
    tree = MemoryTree()
    entries = [f"entry {i}".encode() for i in range(13)]
    tree.extend(merkle.leaf_hash(e) for e in entries)
    cp = Checkpoint(ORIGIN, tree.size, tree.root())
    signed = sign_checkpoint(cp, ORIGIN, private)
    for index in (0, 6, 12):
        bundle = TlogProof(index, tuple(tree.inclusion_proof(index)), signed).text()
        leaf = merkle.leaf_hash(entries[index])
        assert verify_tlog_proof(bundle, leaf, ORIGIN, [verifier]) == cp
        with pytest.raises(CheckpointError):
            verify_tlog_proof(bundle, merkle.leaf_hash(b"forged"), ORIGIN, [verifier])
        with pytest.raises(CheckpointError):
            verify_tlog_proof(bundle, leaf, "other.example/log", [verifier])
    wrong_index = TlogProof(1, tuple(tree.inclusion_proof(0)), signed).text()
    with pytest.raises(CheckpointError):
        verify_tlog_proof(wrong_index, merkle.leaf_hash(entries[0]), ORIGIN, [verifier])
    _, stranger = key_and_verifier()
    bundle = TlogProof(0, tuple(tree.inclusion_proof(0)), signed).text()
    with pytest.raises(note.UnverifiedNoteError):
        verify_tlog_proof(bundle, merkle.leaf_hash(entries[0]), ORIGIN, [stranger])
