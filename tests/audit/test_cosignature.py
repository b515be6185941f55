"""tlog-cosignature/v1: cosignatures verify with the checkpoint they were made on, at the time
they state, under the key id of type 0x04, and nothing else verifies."""

from __future__ import annotations

import base64
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit import cosignature
from app.audit.checkpoint import Checkpoint, sign_checkpoint
from app.audit.note import (
    InvalidSignatureError,
    MalformedNoteError,
    Verifier,
    key_id,
    open_note,
)

ORIGIN = "timebank.example/log/district"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
WITNESS_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
WITNESS = "witness.example/mzj"
LOG = Verifier.from_public_key(ORIGIN, LOG_KEY.public_key())


def signed() -> str:
    return sign_checkpoint(Checkpoint(ORIGIN, 7, bytes(32)), ORIGIN, LOG_KEY)


def test_a_cosignature_verifies_beside_the_log_signature() -> None:
    note = signed()
    text = note[: note.rfind("\n\n") + 1]
    line = cosignature.cosign(text, WITNESS, WITNESS_KEY, 1_764_900_000)
    cosigner = cosignature.Cosigner.from_public_key(WITNESS, WITNESS_KEY.public_key())
    _, found = open_note(cosignature.with_signatures(note, [line]), [LOG, cosigner])
    assert [s.name for s in found] == [ORIGIN, WITNESS]
    assert cosignature.timestamp_of(found[1]) == 1_764_900_000
    # The same Ed25519 key has different key ids as a note key and as a cosigner.
    assert cosigner.key_id != key_id(WITNESS, WITNESS_KEY.public_key())
    assert cosignature.parse_cosigner_key(cosigner.vkey()) == cosigner


def test_the_signed_message_is_header_time_and_note_text() -> None:
    note = signed()
    text = note[: note.rfind("\n\n") + 1]
    line = cosignature.cosign(text, WITNESS, WITNESS_KEY, 42)
    raw = base64.b64decode(line.split()[-1])
    assert struct.unpack(">IQ", raw[:12]) == (
        cosignature.cosigner_key_id(WITNESS, WITNESS_KEY.public_key()),
        42,
    )
    WITNESS_KEY.public_key().verify(raw[12:], b"cosignature/v1\ntime 42\n" + text.encode())


@pytest.mark.parametrize("change", ["time", "text", "key type"])
def test_anything_changed_fails(change: str) -> None:
    note = signed()
    text = note[: note.rfind("\n\n") + 1]
    line = cosignature.cosign(text, WITNESS, WITNESS_KEY, 42)
    cosigner = cosignature.Cosigner.from_public_key(WITNESS, WITNESS_KEY.public_key())
    if change == "time":
        name, b64 = line.rstrip("\n").split(" ")[1:]
        raw = bytearray(base64.b64decode(b64))
        raw[11] ^= 1
        line = f"\u2014 {name} {base64.b64encode(bytes(raw)).decode()}\n"
        with pytest.raises(InvalidSignatureError):
            open_note(cosignature.with_signatures(note, [line]), [LOG, cosigner])
    elif change == "text":
        other = sign_checkpoint(Checkpoint(ORIGIN, 8, bytes(32)), ORIGIN, LOG_KEY)
        with pytest.raises(InvalidSignatureError):
            open_note(cosignature.with_signatures(other, [line]), [LOG, cosigner])
    else:
        # Read as a plain note key (type 0x01), the key id differs: the line is ignored.
        plain = Verifier.from_public_key(WITNESS, WITNESS_KEY.public_key())
        _, found = open_note(cosignature.with_signatures(note, [line]), [LOG, plain])
        assert [s.name for s in found] == [ORIGIN]


def test_key_strings_round_trip_and_refuse_other_types() -> None:
    skey = cosignature.signer_key(WITNESS, WITNESS_KEY)
    name, key = cosignature.parse_signer_key(skey)
    assert name == WITNESS and key.private_bytes_raw() == WITNESS_KEY.private_bytes_raw()
    with pytest.raises(MalformedNoteError):
        cosignature.parse_cosigner_key(LOG.vkey())  # type 0x01
    with pytest.raises(MalformedNoteError):
        cosignature.parse_cosigner_key(f"{WITNESS}+00000000+" + LOG.vkey().split("+")[2])
