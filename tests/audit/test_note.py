"""C2SP signed notes: the rules of golang.org/x/mod/sumdb/note (its test cases, on its keys)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from app.audit import note
from app.audit.note import Verifier

V: Any = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "sumdb-note.json").read_text("utf-8")
)
TEXT: str = V["text"]
PETER_SIG: bytes = V["peter_sig_line"].encode()
ENOCH_SIG: bytes = V["enoch_sig_line"].encode()


def peter() -> Verifier:
    return note.parse_verifier_key(V["peter_vkey"])


def enoch() -> Verifier:
    return note.parse_verifier_key(V["enoch_vkey"])


def msg(*sig_lines: bytes) -> bytes:
    return TEXT.encode() + b"\n" + b"".join(sig_lines)


def test_every_mangled_verifier_key_is_refused() -> None:
    vkey = V["peter_vkey"]
    for i in range(len(vkey) + 1):
        for j in range(i + 1, len(vkey) + 1):
            if (i, j) != (0, len(vkey)):
                with pytest.raises(note.MalformedNoteError):
                    note.parse_verifier_key(vkey[i:j])
    for i in range(len(vkey)):
        mangled = vkey[:i] + chr(ord(vkey[i]) + 1) + vkey[i + 1 :]
        with pytest.raises(note.MalformedNoteError):
            note.parse_verifier_key(mangled)


def test_every_mangled_signer_key_is_refused() -> None:
    skey = V["peter_skey"]
    for i in range(len(skey) + 1):
        for j in range(i + 1, len(skey) + 1):
            if (i, j) != (0, len(skey)):
                with pytest.raises(note.MalformedNoteError):
                    note.parse_signer_key(skey[i:j])
    for i in range(len(skey)):
        mangled = skey[:i] + chr(ord(skey[i]) + 1) + skey[i + 1 :]
        with pytest.raises((note.MalformedNoteError, ValueError)):
            note.parse_signer_key(mangled)


def test_generated_key_round_trip() -> None:
    private = Ed25519PrivateKey.generate()
    verifier = Verifier.from_public_key("example.com/log", private.public_key())
    assert note.parse_verifier_key(verifier.vkey()) == verifier
    signed = note.sign_note("hello\n\nworld\n", "example.com/log", private)
    text, sigs = note.open_note(signed, [verifier])
    assert text == "hello\n\nworld\n"
    assert sigs[0].key_id == verifier.key_id
    assert not verifier.verify(b"other", b"\x00" * 64)


def test_sign_refusals() -> None:
    private = Ed25519PrivateKey.generate()
    for text in ["abc", "", "tab\there\n", "bell\x07\n", "lone \ud800 surrogate\n"]:
        with pytest.raises(note.MalformedNoteError):
            note.sign_note(text, "name", private)
    for name in ["", "a+b", "a b", "a\u3000b", "a\nb"]:
        with pytest.raises(note.MalformedNoteError):
            note.sign_note("text\n", name, private)


def test_open_semantics_from_go() -> None:
    # Duplicate signatures by one key are counted once; unknown ones are skipped.
    enoch_abcd = ENOCH_SIG[:60] + b"ABCD" + ENOCH_SIG[60:]
    text, sigs = note.open_note(
        msg(PETER_SIG, PETER_SIG, ENOCH_SIG, ENOCH_SIG, enoch_abcd), [peter()]
    )
    assert text == TEXT
    assert len(sigs) == 1
    # Ambiguous verifiers are an error only when a signature needs them.
    with pytest.raises(note.AmbiguousKeyError):
        note.open_note(msg(ENOCH_SIG), [enoch(), peter(), enoch()])
    assert note.open_note(msg(PETER_SIG), [enoch(), peter(), enoch()])[1][0].name == (
        "PeterNeumann"
    )
    # More than 100 signatures: malformed, whether or not they are known.
    for verifiers in ([peter()], []):
        with pytest.raises(note.MalformedNoteError):
            note.open_note(msg(PETER_SIG * 101), verifiers)
    # A known key's bad signature refuses the whole note.
    with pytest.raises(note.InvalidSignatureError):
        note.open_note(msg(PETER_SIG[:60] + b"ABCD" + PETER_SIG[60:]), [peter()])
    with pytest.raises(note.UnverifiedNoteError):
        note.open_note(msg(PETER_SIG, ENOCH_SIG), [])


@pytest.mark.parametrize(
    "bad",
    [
        TEXT.encode(),
        TEXT.encode() + b"\n",
        TEXT.encode() + b"\n" + PETER_SIG[:-1],
        b"\x01" + TEXT.encode() + b"\n" + PETER_SIG,
        b"\xff" + TEXT.encode() + b"\n" + PETER_SIG,
        TEXT.encode() + b"\n" + "— Bad Name ".encode() + PETER_SIG.split(b" ")[2][:-1],
        TEXT.encode() + b"\n" + PETER_SIG + b"Unexpected line.\n",
        # Beyond the Go table: short, empty or non-canonical signatures, bad prefixes.
        TEXT.encode() + b"\n" + "— PeterNeumann AAAA\n".encode(),
        TEXT.encode() + b"\n" + "— PeterNeumann \n".encode(),
        TEXT.encode() + b"\n" + "— PeterNeumann\n".encode(),
        TEXT.encode() + b"\n" + "— PeterNeumann !!!!\n".encode(),
        TEXT.encode() + b"\n" + PETER_SIG.replace(b"M=\n", b"N=\n"),
        TEXT.encode() + b"\n" + PETER_SIG.replace("—".encode(), b"-"),
        TEXT.encode() + b"\n" + PETER_SIG.replace(b"\n", b"\r\n"),
    ],
)
def test_malformed_notes(bad: bytes) -> None:
    with pytest.raises(note.MalformedNoteError):
        note.open_note(bad, [peter()])


def test_unknown_signature_sharing_name_or_id_is_ignored() -> None:
    private = Ed25519PrivateKey.generate()
    impostor = note.sign_note(TEXT, "PeterNeumann", private)
    with pytest.raises(note.UnverifiedNoteError):
        note.open_note(impostor, [peter()])
    both = impostor + V["peter_sig_line"]
    _, sigs = note.open_note(both, [peter()])
    assert [s.key_id for s in sigs] == [0xC74F20A3]


def test_key_id_definition() -> None:
    v = peter()
    raw = v.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    digest = hashlib.sha256(b"PeterNeumann\n\x01" + raw).digest()
    assert (
        int.from_bytes(digest[:4], "big") == v.key_id == note.key_id("PeterNeumann", v.public_key)
    )
