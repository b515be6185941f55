"""C2SP tlog-cosignature/v1 with Ed25519 (https://c2sp.org/tlog-cosignature): a witness's
timestamped statement that a checkpoint is the largest consistent tree head it has seen of a
log. Pure: no database, no network.

A cosignature is a note signature line `— <witness name> base64(key id || timestamp || sig)`:
the key id is SHA-256(name || 0x0A || 0x04 || public key)[:4]; the timestamp a big-endian
uint64 of POSIX seconds (below 2^63); the signature Ed25519 over `cosignature/v1\\n`,
`time <timestamp>\\n` and the checkpoint's whole note text (through its final newline, no
signature line). So a cosigner is a note verifier of its own kind: `app.audit.note.open_note`
checks cosignatures and log signatures of one note together, ignoring unknown keys.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from typing import ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.audit import note
from app.audit.note import (
    EM_DASH,
    MalformedNoteError,
    Signature,
    Verifier,
    key_id,
)

ALG_COSIGNATURE_V1 = 0x04
HEADER = "cosignature/v1\n"
MAX_TIMESTAMP = 2**63 - 1
SIGNATURE_SIZE = 8 + 64


def cosigner_key_id(name: str, public_key: Ed25519PublicKey) -> int:
    """uint32 big-endian of SHA-256(name || 0x0A || 0x04 || 32-byte public key)[:4]."""
    return key_id(name, public_key, ALG_COSIGNATURE_V1)


def signed_message(text: str | bytes, timestamp: int) -> bytes:
    """What a cosignature signs: the header line, the time line, and the note text."""
    body = text.encode() if isinstance(text, str) else text
    return f"{HEADER}time {timestamp}\n".encode() + body


@dataclass(frozen=True)
class Cosigner(Verifier):
    """A witness's cosigning key (signature type 0x04), as a note verifier: its key id and
    vkey carry 0x04, and what it verifies is a timestamped cosignature."""

    ALGORITHM: ClassVar[int] = ALG_COSIGNATURE_V1
    KIND: ClassVar[str] = "an Ed25519 cosignature/v1 key (type 0x04)"

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Whether `signature` (timestamp and Ed25519 signature, no key id) cosigns `text`."""
        if len(signature) != SIGNATURE_SIZE:
            return False
        timestamp = struct.unpack(">Q", signature[:8])[0]
        if timestamp > MAX_TIMESTAMP:
            return False
        try:
            self.public_key.verify(signature[8:], signed_message(text, timestamp))
        except InvalidSignature:
            return False
        return True


def parse_cosigner_key(vkey: str) -> Cosigner:
    """Parse a cosigner's verifier key, checking that its key id matches name and key."""
    return note.parse_key_of(vkey.strip(), Cosigner)


def signer_key(name: str, private_key: Ed25519PrivateKey) -> str:
    """The secret key string `PRIVATE+KEY+<name>+<hex id>+<base64(0x04 || seed)>`."""
    seed = private_key.private_bytes_raw()
    kid = cosigner_key_id(name, private_key.public_key())
    material = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + seed).decode()
    return f"PRIVATE+KEY+{name}+{kid:08x}+{material}"


def parse_signer_key(skey: str) -> tuple[str, Ed25519PrivateKey]:
    """Parse a secret key string of `signer_key`, checking its key id."""
    return note.parse_signer_key(skey.strip(), Cosigner)


def cosign(text: str, name: str, private_key: Ed25519PrivateKey, timestamp: int) -> str:
    """The cosignature line (ending in a newline) of checkpoint note text `text` at
    `timestamp` (POSIX seconds)."""
    if not text.endswith("\n"):
        raise MalformedNoteError("note text must end with a newline")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError("timestamp out of range")
    kid = cosigner_key_id(name, private_key.public_key())
    signature = private_key.sign(signed_message(text, timestamp))
    blob = struct.pack(">IQ", kid, timestamp) + signature
    return f"{EM_DASH} {name} {base64.b64encode(blob).decode()}\n"


def timestamp_of(signature: Signature) -> int:
    """The time a verified cosignature states."""
    raw = base64.b64decode(signature.base64)
    found: int = struct.unpack(">Q", raw[4:12])[0]
    return found


def with_signatures(note: str, lines: list[str]) -> str:
    """`note` (a signed note) with signature `lines` (each ending in a newline) added after its
    own, skipping any it holds already."""
    have = set(note.split("\n"))
    extra = [line for line in lines if line.rstrip("\n") not in have]
    return note + "".join(extra)
