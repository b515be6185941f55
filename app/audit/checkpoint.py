"""C2SP checkpoints (https://c2sp.org/tlog-checkpoint) and offline proof bundles
(https://c2sp.org/tlog-proof).

Followed: C2SP/C2SP `tlog-proof.md` (format `c2sp.org/tlog-proof@v1`) at commit
0065ea5b716154a2dd48508e3f905012a16ce5e9, and `tlog-checkpoint.md` at commit
2793893976c835db049c194d8f2c4f946dcb70ba.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit import merkle
from app.audit.note import Verifier, open_note, sign_note

TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
# Sizes and indexes are bounded like the journal's seq (a signed 64-bit integer).
MAX_SIZE = 2**63 - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


class CheckpointError(ValueError):
    """A checkpoint or proof bundle that is malformed or does not verify."""


def _b64decode(text: str) -> bytes:
    """Strict standard base64 (RFC 4648 §4), canonical encoding only."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise CheckpointError(f"bad base64 {text!r}") from exc
    if base64.b64encode(raw).decode() != text:
        raise CheckpointError(f"non-canonical base64 {text!r}")
    return raw


def _b64hash(text: str) -> bytes:
    raw = _b64decode(text)
    if len(raw) != merkle.HASH_SIZE:
        raise CheckpointError("a hash must be 32 bytes")
    return raw


def _decimal(text: str, what: str) -> int:
    if not _DECIMAL.fullmatch(text) or int(text) > MAX_SIZE:
        raise CheckpointError(f"bad {what} {text!r}")
    return int(text)


def _has_control(text: str) -> bool:
    return any(c < " " or c == "\x7f" for c in text)


@dataclass(frozen=True)
class Checkpoint:
    """The note text of a checkpoint: origin, tree size, root hash and extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or _has_control(self.origin):
            raise CheckpointError("the origin must be a non-empty line")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise CheckpointError("the size must be an integer")
        if not 0 <= self.size <= MAX_SIZE:
            raise CheckpointError("the size is out of range")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != merkle.HASH_SIZE:
            raise CheckpointError("the root hash must be 32 bytes")
        if any(not line or _has_control(line) for line in self.extensions):
            raise CheckpointError("extension lines must be non-empty lines")

    def text(self) -> str:
        """The note text: origin, decimal size, base64 root hash, extensions, each + newline."""
        root = base64.b64encode(self.root_hash).decode()
        return "".join(
            f"{line}\n" for line in (self.origin, str(self.size), root, *self.extensions)
        )


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse checkpoint note text (no signatures), strictly."""
    if not text.endswith("\n"):
        raise CheckpointError("checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError("a checkpoint has at least three lines")
    origin, size, root, *extensions = lines
    return Checkpoint(origin, _decimal(size, "tree size"), _b64hash(root), tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, name: str, private_key: Ed25519PrivateKey) -> str:
    """The checkpoint as a signed note; `name` SHOULD equal the origin."""
    return sign_note(checkpoint.text(), name, private_key)


def open_checkpoint(note: str, origin: str, verifiers: Iterable[Verifier]) -> Checkpoint:
    """Verify a signed checkpoint (app.audit.note rules) and check that its origin is `origin`."""
    text, _ = open_note(note, verifiers)
    checkpoint = parse_checkpoint(text)
    if checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint of {checkpoint.origin!r}, expected {origin!r}")
    return checkpoint


@dataclass(frozen=True)
class TlogProof:
    """A c2sp.org/tlog-proof@v1 bundle: leaf index, inclusion proof, signed checkpoint."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int):
            raise CheckpointError("the index must be an integer")
        if not 0 <= self.index <= MAX_SIZE:
            raise CheckpointError("the index is out of range")
        if any(not isinstance(h, bytes) or len(h) != merkle.HASH_SIZE for h in self.proof):
            raise CheckpointError("proof hashes must be 32 bytes")
        if not self.checkpoint.endswith("\n") or self.checkpoint.startswith("\n"):
            raise CheckpointError("the signed checkpoint must be a note ending in a newline")
        if self.extra is not None and not self.extra:
            raise CheckpointError("extra data, when present, is not empty")

    def text(self) -> str:
        """The bundle text."""
        lines = [TLOG_PROOF_HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode())
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(h).decode() for h in self.proof)
        return "\n".join(lines) + "\n\n" + self.checkpoint


def parse_tlog_proof(text: str) -> TlogProof:
    """Parse a tlog-proof bundle strictly (the checkpoint's signatures are not checked here)."""
    head, sep, checkpoint = text.partition("\n\n")
    if not sep:
        raise CheckpointError("no empty line before the checkpoint")
    lines = head.split("\n")
    if lines[0] != TLOG_PROOF_HEADER:
        raise CheckpointError(f"the first line must be {TLOG_PROOF_HEADER}")
    position = 1
    extra = None
    if position < len(lines) and lines[position].startswith("extra "):
        extra = _b64decode(lines[position][len("extra ") :])
        position += 1
    if position >= len(lines) or not lines[position].startswith("index "):
        raise CheckpointError("missing index line")
    index = _decimal(lines[position][len("index ") :], "index")
    proof = tuple(_b64hash(line) for line in lines[position + 1 :])
    return TlogProof(index, proof, checkpoint, extra)


def verify_tlog_proof(
    bundle: str, leaf_hash: bytes, origin: str, verifiers: Iterable[Verifier]
) -> Checkpoint:
    """Check a bundle offline: signed checkpoint of `origin`, then inclusion of `leaf_hash`.

    Returns the verified checkpoint; raises CheckpointError or app.audit.note.NoteError.
    """
    proof = parse_tlog_proof(bundle)
    checkpoint = open_checkpoint(proof.checkpoint, origin, verifiers)
    if not merkle.verify_inclusion(
        leaf_hash, proof.index, checkpoint.size, proof.proof, checkpoint.root_hash
    ):
        raise CheckpointError("the inclusion proof does not match the checkpoint")
    return checkpoint
