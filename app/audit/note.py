"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys.

The same format and rules as golang.org/x/mod/sumdb/note: a text ending in a newline, a blank
line, then signature lines `— <key name> <base64(4-byte key id || signature)>`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Self, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = 0x01
EM_DASH = "\u2014"
_SIG_PREFIX = EM_DASH + " "
# golang.org/x/mod/sumdb/note refuses notes with more; the spec asks for at least 16.
MAX_SIGNATURES = 100


V = TypeVar("V", bound="Verifier")


class NoteError(ValueError):
    """A note that cannot be accepted."""


class MalformedNoteError(NoteError):
    """The note (or a key string) does not follow the format."""


class UnverifiedNoteError(NoteError):
    """The note parsed, but no signature is from a known key."""


class InvalidSignatureError(NoteError):
    """A signature from a known key does not verify: the whole note is refused."""


class AmbiguousKeyError(NoteError):
    """Two known verifiers share a key name and key id."""


def is_valid_key_name(name: str) -> bool:
    """Key names are non-empty and contain no Unicode space, no '+' and no control character
    (a note may not carry one: such a key could never sign)."""
    return (
        bool(name)
        and "+" not in name
        and not any(c.isspace() or c < " " or c == "\x7f" for c in name)
    )


def raw_public(key: Ed25519PublicKey) -> bytes:
    """The 32 bytes of an Ed25519 public key."""
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(name: str, public_key: Ed25519PublicKey, algorithm: int = ALG_ED25519) -> int:
    """uint32 big-endian of SHA-256(name || 0x0A || algorithm || 32-byte public key)[:4]
    (0x01: a note key; 0x04: a cosigner's, app.audit.cosignature)."""
    digest = hashlib.sha256(
        name.encode() + b"\n" + bytes([algorithm]) + raw_public(public_key)
    ).digest()
    key_id_value: int = struct.unpack(">I", digest[:4])[0]
    return key_id_value


def strict_b64decode(text: str) -> bytes:
    """Strict standard base64: alphabet and padding checked, and the encoding canonical."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise MalformedNoteError("bad base64") from exc
    if base64.b64encode(raw).decode() != text:
        raise MalformedNoteError("non-canonical base64")
    return raw


@dataclass(frozen=True)
class Verifier:
    """A known note key: its name, key id and Ed25519 public key. Its signature type byte
    (`ALGORITHM`, 0x01) enters its key id and its vkey; a subclass may have another."""

    ALGORITHM: ClassVar[int] = ALG_ED25519
    KIND: ClassVar[str] = "an Ed25519 note key"

    name: str
    key_id: int
    public_key: Ed25519PublicKey

    @classmethod
    def from_public_key(cls, name: str, public_key: Ed25519PublicKey) -> Self:
        """The verifier for `public_key` under key name `name`."""
        if not is_valid_key_name(name):
            raise MalformedNoteError(f"invalid key name {name!r}")
        return cls(name, key_id(name, public_key, cls.ALGORITHM), public_key)

    def vkey(self) -> str:
        """The verifier key string `<name>+<8 hex key id>+<base64(type || public key)>`."""
        b64 = base64.b64encode(bytes([self.ALGORITHM]) + raw_public(self.public_key)).decode()
        return f"{self.name}+{self.key_id:08x}+{b64}"

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Whether `signature` (without the key id) signs `text`."""
        try:
            self.public_key.verify(signature, text)
        except InvalidSignature:
            return False
        return True


def split_key_string(value: str, parts: int) -> list[str]:
    fields = value.split("+", parts - 1)
    if len(fields) != parts:
        raise MalformedNoteError("malformed key string")
    return fields


def parse_key_id(hex8: str) -> int:
    if len(hex8) != 8 or any(c not in "0123456789abcdefABCDEF" for c in hex8):
        raise MalformedNoteError("malformed key id")
    return int(hex8, 16)


def _key_material(b64: str, kind: type[Verifier]) -> bytes:
    raw = strict_b64decode(b64)
    if len(raw) != 33 or raw[0] != kind.ALGORITHM:
        raise MalformedNoteError(f"not {kind.KIND}")
    return raw[1:]


def parse_verifier_key(vkey: str) -> Verifier:
    """Parse a note key's verifier key string, checking that its key id matches name and key."""
    return parse_key_of(vkey, Verifier)


def parse_key_of(vkey: str, kind: type[V]) -> V:
    """Parse a verifier key string of `kind` (a note key, or e.g. a cosigner's), checking
    that its key id matches name and key."""
    name, hex8, b64 = split_key_string(vkey, 3)
    if not is_valid_key_name(name):
        raise MalformedNoteError("invalid key name")
    claimed = parse_key_id(hex8)
    public_key = Ed25519PublicKey.from_public_bytes(_key_material(b64, kind))
    verifier = kind.from_public_key(name, public_key)
    if verifier.key_id != claimed:
        raise MalformedNoteError("key id does not match the key")
    return verifier


def parse_signer_key(skey: str, kind: type[Verifier] = Verifier) -> tuple[str, Ed25519PrivateKey]:
    """Parse a signer key `PRIVATE+KEY+<name>+<hex id>+<base64(type || seed)>` of `kind`
    (golang's form for note keys): a plaintext secret, for published vectors and a witness's
    own key file (the service's keys are in app.audit.keys)."""
    private, key, name, hex8, b64 = split_key_string(skey, 5)
    if private != "PRIVATE" or key != "KEY" or not is_valid_key_name(name):
        raise MalformedNoteError("malformed signer key")
    claimed = parse_key_id(hex8)
    private_key = Ed25519PrivateKey.from_private_bytes(_key_material(b64, kind))
    if key_id(name, private_key.public_key(), kind.ALGORITHM) != claimed:
        raise MalformedNoteError("key id does not match the key")
    return name, private_key


@dataclass(frozen=True)
class Signature:
    """One signature line of a note."""

    name: str
    key_id: int
    base64: str


def _check_note_chars(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedNoteError("not valid UTF-8") from exc
    if any(c < " " and c != "\n" for c in text):
        raise MalformedNoteError("control character in note")


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """The signed note: `text` (which must end in a newline), a blank line and one signature."""
    if not text.endswith("\n"):
        raise MalformedNoteError("note text must end with a newline")
    _check_note_chars(text)
    verifier = Verifier.from_public_key(name, private_key.public_key())
    signature = private_key.sign(text.encode())
    blob = struct.pack(">I", verifier.key_id) + signature
    return f"{text}\n{_SIG_PREFIX}{name} {base64.b64encode(blob).decode()}\n"


def open_note(note: str | bytes, verifiers: Iterable[Verifier]) -> tuple[str, list[Signature]]:
    """The text of a signed note and its verified signatures (unknown keys ignored); raises a
    NoteError subclass if malformed, a known key's signature fails, or no known key signed."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedNoteError("not valid UTF-8") from exc
    _check_note_chars(note)
    split = note.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("no signature block")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise MalformedNoteError("no signature, or no newline after the last one")

    known: dict[tuple[str, int], list[Verifier]] = {}
    for verifier in verifiers:
        known.setdefault((verifier.name, verifier.key_id), []).append(verifier)

    text_bytes = text.encode()
    verified: list[Signature] = []
    seen: set[tuple[str, int]] = set()
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError("too many signatures")
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise MalformedNoteError("malformed signature line")
        name, _, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not is_valid_key_name(name) or not b64:
            raise MalformedNoteError("malformed signature line")
        raw = strict_b64decode(b64)
        if len(raw) < 5:
            raise MalformedNoteError("signature too short")
        sig_key_id: int = struct.unpack(">I", raw[:4])[0]
        candidates = known.get((name, sig_key_id))
        if not candidates:
            continue
        if len(candidates) > 1:
            raise AmbiguousKeyError(f"ambiguous key {name}+{sig_key_id:08x}")
        # Every line of a known key is checked (signed-note: verifiers MUST verify it), a
        # second one too, which golang.org/x/mod/sumdb/note skips; it is reported once.
        if not candidates[0].verify(text_bytes, raw[4:]):
            raise InvalidSignatureError(f"invalid signature for key {name}+{sig_key_id:08x}")
        if (name, sig_key_id) in seen:
            continue
        seen.add((name, sig_key_id))
        verified.append(Signature(name, sig_key_id, b64))
    if not verified:
        raise UnverifiedNoteError("note has no verifiable signatures")
    return text, verified
