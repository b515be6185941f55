"""A second verifier of witness cosignatures and policies, written from the C2SP texts alone.

Sources (C2SP/C2SP, the commit of each file that was read): signed-note.md @ b3a911e3,
tlog-checkpoint.md @ c0d0289b, tlog-cosignature.md @ 01194db1, tlog-policy.md @ 1896a5ae,
tlog-witness.md @ 95978ca8. It uses the standard library and `cryptography`'s Ed25519 only and
never imports `app`: the tests hold the project's code to it, so it must not share its mistakes.

Every refusal is a `Refused` carrying a short stable reason; the tests compare reasons only
where the vectors name them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ED25519 = 0x01  # signed-note: Ed25519 signature over the note text
COSIGNATURE_V1 = 0x04  # tlog-cosignature: timestamped Ed25519 checkpoint cosignature
EM_DASH = "\u2014"
MAX_SIGNATURES = 100  # signed-note: a limit SHOULD exist, at least 16; docs/witness.md says 100
MAX_TIMESTAMP = 2**63 - 1  # tlog-cosignature: the timestamp MUST NOT exceed it
HASH_SIZE = 32  # RFC 6962 with SHA-256


class Refused(ValueError):
    """An input that the C2SP texts say must be rejected."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def b64decode_strict(text: str) -> bytes:
    """RFC 4648 §4 base64, padded, with no other characters and zero pad bits (canonical)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise Refused("bad-base64", repr(text)) from exc
    # validate=True still accepts non-zero pad bits (`AB==` and `AA==` both mean 0x00);
    # re-encoding exposes them, so that one value has exactly one spelling.
    if base64.b64encode(raw).decode("ascii") != text:
        raise Refused("bad-base64", f"non-canonical {text!r}")
    return raw


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """signed-note: SHA-256(key name || 0x0A || signature type || public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([sig_type]) + public_key).digest()[
        :4
    ]


def check_key_name(name: str) -> None:
    """signed-note: key names are non-empty and hold no Unicode space and no `+`."""
    if not name or "+" in name or any(ch.isspace() for ch in name):
        raise Refused("bad-key-name", repr(name))


@dataclass(frozen=True)
class VKey:
    """A verifier key: `<name>+<hex key id>+base64(type || public key)`."""

    name: str
    key_id: bytes
    sig_type: int
    public_key: bytes

    @property
    def ed25519(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.public_key)


def parse_vkey(text: str) -> VKey:
    """Parse a vkey of type 0x01 or 0x04 (the two this project uses) and check its key id."""
    # The name holds no `+` and the id is hex, but base64 may hold `+`: split twice only.
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise Refused("bad-vkey", "not three parts separated by +")
    name, hex_id, b64 = parts
    check_key_name(name)
    if len(hex_id) != 8 or any(c not in "0123456789abcdef" for c in hex_id):
        raise Refused("bad-vkey", "the key id is not 8 lowercase hex digits")
    raw = b64decode_strict(b64)
    if not raw:
        raise Refused("bad-vkey", "empty key material")
    sig_type, public_key = raw[0], raw[1:]
    if sig_type not in (ED25519, COSIGNATURE_V1):
        raise Refused("bad-vkey", f"signature type 0x{sig_type:02x}")
    if len(public_key) != 32:
        raise Refused("bad-vkey", "an Ed25519 public key is 32 bytes")
    # tlog-cosignature: the id MUST be computed this way; signed-note recommends it for 0x01
    # and says the vkey's id must match the signatures', so a vkey that disagrees with its own
    # key could never verify anything: refuse it early rather than ignore its lines later.
    if bytes.fromhex(hex_id) != key_id(name, sig_type, public_key):
        raise Refused("bad-vkey", "the key id does not match the name and key")
    return VKey(name, bytes.fromhex(hex_id), sig_type, public_key)


@dataclass(frozen=True)
class SignatureLine:
    name: str
    key_id: bytes
    signature: bytes  # after the key id


@dataclass(frozen=True)
class Note:
    text: str  # including its final newline, not the blank line
    signatures: tuple[SignatureLine, ...]


def parse_note(note: str | bytes) -> Note:
    """Split a signed note into its text and signature lines, checking the framing only."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Refused("bad-note", "not UTF-8") from exc
    if any(ord(ch) < 0x20 and ch != "\n" for ch in note):
        raise Refused("bad-note", "a control character other than newline")
    if not note.endswith("\n"):
        raise Refused("bad-note", "does not end in a newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise Refused("bad-note", "no blank line before the signatures")
    text, sig_block = note[: split + 1], note[split + 2 :]
    lines = sig_block[:-1].split("\n") if sig_block else []
    if not lines:
        raise Refused("bad-note", "no signature lines")
    if len(lines) > MAX_SIGNATURES:
        raise Refused("bad-note", "too many signatures")
    signatures = []
    for line in lines:
        if not line.startswith(EM_DASH + " "):
            raise Refused("bad-note", f"not a signature line: {line!r}")
        fields = line[2:].split(" ")
        if len(fields) != 2:
            raise Refused("bad-note", f"not `— <name> <base64>`: {line!r}")
        name, b64 = fields
        check_key_name(name)
        raw = b64decode_strict(b64)
        if len(raw) < 5:
            raise Refused("bad-note", "a signature is four bytes of key id and at least one more")
        signatures.append(SignatureLine(name, raw[:4], raw[4:]))
    return Note(text, tuple(signatures))


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...]


def parse_checkpoint_text(text: str) -> Checkpoint:
    """tlog-checkpoint: origin, size (decimal, no leading zeroes), base64 root, extensions."""
    if not text.endswith("\n"):
        raise Refused("bad-checkpoint", "the text does not end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise Refused("bad-checkpoint", "fewer than three lines")
    origin, size_line, root_line, *extensions = lines
    if not origin:
        raise Refused("bad-checkpoint", "empty origin")
    if not size_line.isascii() or not size_line.isdigit() or size_line != str(int(size_line)):
        raise Refused("bad-checkpoint", f"tree size {size_line!r}")
    root = b64decode_strict(root_line)
    if len(root) != HASH_SIZE:
        raise Refused("bad-checkpoint", "the root hash is not 32 bytes")
    if any(not line for line in extensions):
        raise Refused("bad-checkpoint", "an empty extension line")
    return Checkpoint(origin, int(size_line), root, tuple(extensions))


def cosigned_message(text: str, timestamp: int) -> bytes:
    """tlog-cosignature: `cosignature/v1\\n` `time <t>\\n` then the checkpoint's note text."""
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode("utf-8")


def verify_signature(vkey: VKey, text: str, signature: bytes) -> int | None:
    """Verify one signature by a known key; the cosignature's timestamp, or None for a log key.

    Raises Refused when it does not verify: a known key's bad line spoils the note.
    """
    if vkey.sig_type == ED25519:
        message, sig, timestamp = text.encode("utf-8"), signature, None
    else:
        if len(signature) != 8 + 64:
            raise Refused("bad-signature", f"{vkey.name}: a cosignature is 8 + 64 bytes")
        (timestamp,) = struct.unpack(">Q", signature[:8])
        if timestamp > MAX_TIMESTAMP:
            raise Refused("bad-signature", f"{vkey.name}: timestamp above 2^63 - 1")
        message, sig = cosigned_message(text, timestamp), signature[8:]
    if len(sig) != 64:
        raise Refused("bad-signature", f"{vkey.name}: an Ed25519 signature is 64 bytes")
    try:
        vkey.ed25519.verify(sig, message)
    except InvalidSignature as exc:
        raise Refused("bad-signature", f"{vkey.name} does not verify") from exc
    return timestamp


@dataclass
class Opened:
    """What a note says once its known keys' lines are checked."""

    text: str
    log_keys: list[VKey] = field(default_factory=list)  # log keys whose signature verified
    cosigned: dict[VKey, int] = field(default_factory=dict)  # cosigner -> its timestamp


def open_note(note: str | bytes, keys: list[VKey]) -> Opened:
    """signed-note verification: unknown lines ignored, a known key's bad line refuses all.

    Refuses a note where no known key's line verifies (signed-note MUST).
    """
    parsed = parse_note(note)
    known = {(k.name, k.key_id): k for k in keys}
    opened = Opened(parsed.text)
    for line in parsed.signatures:
        vkey = known.get((line.name, line.key_id))
        if vkey is None:
            continue
        timestamp = verify_signature(vkey, parsed.text, line.signature)
        if timestamp is None:
            if vkey not in opened.log_keys:
                opened.log_keys.append(vkey)
        else:
            # The same cosigner twice: both lines verified, either timestamp is true; keep
            # the latest, which is the stronger statement.
            opened.cosigned[vkey] = max(timestamp, opened.cosigned.get(vkey, 0))
    if not opened.log_keys and not opened.cosigned:
        raise Refused("no-known-signature")
    return opened


# --- tlog-policy -------------------------------------------------------------------------

WHITESPACE = b" \t"


@dataclass(frozen=True)
class Group:
    threshold: int
    members: tuple[bytes, ...]


@dataclass
class Policy:
    logs: list[VKey] = field(default_factory=list)
    witnesses: dict[bytes, VKey] = field(default_factory=dict)  # policy name -> vkey
    groups: dict[bytes, Group] = field(default_factory=dict)
    quorum: bytes | None = None  # None is `quorum none`


def _fields(line: bytes) -> list[bytes]:
    out: list[bytes] = []
    for chunk in line.replace(b"\t", b" ").split(b" "):
        if chunk:
            out.append(chunk)
    return out


def _vkey_from_policy(raw: bytes, line_no: int) -> VKey:
    try:
        return parse_vkey(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise Refused("bad-policy", f"line {line_no}: a vkey that is not UTF-8") from exc
    except Refused as exc:
        raise Refused("bad-policy", f"line {line_no}: {exc}") from exc


def parse_policy(data: bytes) -> Policy:
    """Parse a tlog-policy file; every rule of the text that can be checked is."""
    for octet in data:
        if (octet < 0x20 and octet not in (0x09, 0x0A)) or octet == 0x7F:
            raise Refused("bad-policy", f"octet 0x{octet:02x} is not allowed")
    # Lines end in a newline; a last line without one is read as if it had it (docs/witness.md
    # §3.1: it changes no meaning, and sigsum-go, where the format comes from, reads it so).
    if data and not data.endswith(b"\n"):
        data += b"\n"
    policy = Policy()
    defined: set[bytes] = set()
    # "Each defined name can be listed as a group member at most once": in the whole file, so
    # that a witness contributes to the quorum in one way only (a member of one group, once).
    members_so_far: set[bytes] = set()
    quorum_lines = 0
    log_keys: set[bytes] = set()  # duplicates are refused among logs and among witnesses
    witness_keys: set[bytes] = set()

    def define(name: bytes, line_no: int) -> None:
        if name == b"none":
            raise Refused("bad-policy", f"line {line_no}: `none` is predefined")
        if name in defined:
            raise Refused("bad-policy", f"line {line_no}: {name!r} is defined twice")
        defined.add(name)

    for line_no, line in enumerate(data.split(b"\n")[:-1] if data else [], start=1):
        words = _fields(line)
        if not words or words[0].startswith(b"#"):
            continue
        keyword, args = words[0], words[1:]
        if keyword == b"log":
            if len(args) not in (1, 2):
                raise Refused("bad-policy", f"line {line_no}: log <vkey> [<url>]")
            vkey = _vkey_from_policy(args[0], line_no)
            if vkey.sig_type != ED25519:
                raise Refused("bad-policy", f"line {line_no}: a log key is of type 0x01")
            if vkey.public_key in log_keys:
                raise Refused("bad-policy", f"line {line_no}: duplicate log key")
            log_keys.add(vkey.public_key)
            policy.logs.append(vkey)
        elif keyword == b"witness":
            if len(args) not in (2, 3):
                raise Refused("bad-policy", f"line {line_no}: witness <name> <vkey> [<url>]")
            vkey = _vkey_from_policy(args[1], line_no)
            if vkey.sig_type != COSIGNATURE_V1:
                raise Refused("bad-policy", f"line {line_no}: a witness key is of type 0x04")
            if vkey.public_key in witness_keys:
                raise Refused("bad-policy", f"line {line_no}: duplicate witness key")
            define(args[0], line_no)
            witness_keys.add(vkey.public_key)
            policy.witnesses[args[0]] = vkey
        elif keyword == b"group":
            if len(args) < 3:
                raise Refused("bad-policy", f"line {line_no}: group <name> <k> <name>...")
            name, k_word, members = args[0], args[1], tuple(args[2:])
            for member in members:
                if member == b"none":
                    raise Refused("bad-policy", f"line {line_no}: `none` is not a member")
                if member not in defined:
                    raise Refused("bad-policy", f"line {line_no}: {member!r} is not defined yet")
            for member in members:
                if member in members_so_far:
                    raise Refused("bad-policy", f"line {line_no}: {member!r} is a member already")
                members_so_far.add(member)
            n = len(members)
            if k_word == b"all":
                k = n
            elif k_word == b"any":
                k = 1
            elif k_word.isdigit() and k_word == str(int(k_word)).encode():
                k = int(k_word)
            else:
                raise Refused("bad-policy", f"line {line_no}: threshold {k_word!r}")
            if not 1 <= k <= n:
                raise Refused("bad-policy", f"line {line_no}: threshold {k} of {n}")
            define(name, line_no)
            policy.groups[name] = Group(k, members)
        elif keyword == b"quorum":
            if len(args) != 1:
                raise Refused("bad-policy", f"line {line_no}: quorum <name>")
            quorum_lines += 1
            if args[0] != b"none" and args[0] not in defined:
                raise Refused("bad-policy", f"line {line_no}: {args[0]!r} is not defined yet")
            policy.quorum = None if args[0] == b"none" else args[0]
        else:
            raise Refused("bad-policy", f"line {line_no}: unknown keyword {keyword!r}")
    if quorum_lines != 1:
        raise Refused("bad-policy", f"{quorum_lines} quorum lines, exactly one is required")
    return policy


def satisfied(policy: Policy, name: bytes, cosigned: set[bytes]) -> bool:
    """Has the witness or group `name` witnessed, given the witnesses (policy names) that did?"""
    if name in policy.witnesses:
        return name in cosigned
    group = policy.groups[name]
    return sum(satisfied(policy, m, cosigned) for m in group.members) >= group.threshold


def quorum_met(policy: Policy, cosigned: set[bytes]) -> bool:
    """tlog-policy: the quorum over the set of witnesses that cosigned."""
    return policy.quorum is None or satisfied(policy, policy.quorum, cosigned)


@dataclass(frozen=True)
class Verdict:
    checkpoint: Checkpoint
    cosigned: dict[bytes, int]  # policy witness name -> cosignature timestamp
    quorum_met: bool


def verify_checkpoint(note: str | bytes, policy: Policy, log_keys: Sequence[VKey] = ()) -> Verdict:
    """Verify a checkpoint note against a policy and the log's keys (from the policy or given).

    Refuses a malformed note, a bad line from any known key, or no verifying log signature;
    a note that verifies but lacks the quorum is a Verdict with quorum_met False.
    """
    logs = list(policy.logs) or list(log_keys)
    if not logs:
        raise Refused("no-log-keys")
    witness_keys = list(policy.witnesses.values())
    opened = open_note(note, logs + witness_keys)
    checkpoint = parse_checkpoint_text(opened.text)
    if not opened.log_keys:
        raise Refused("no-log-signature")
    # tlog-policy: a log's vkey name MUST correspond to its origin line.
    if policy.logs and all(k.name != checkpoint.origin for k in opened.log_keys):
        raise Refused("origin-mismatch", checkpoint.origin)
    cosigned = {
        name: opened.cosigned[vkey]
        for name, vkey in policy.witnesses.items()
        if vkey in opened.cosigned
    }
    return Verdict(checkpoint, cosigned, quorum_met(policy, set(cosigned)))


def judge(
    note: str | bytes, policy_file: bytes, log_keys: Sequence[VKey] = ()
) -> tuple[str, dict[str, int]]:
    """The verdict of docs/witness.md on a note under a policy file.

    One of `refused-policy`, `refused-note`, `below-quorum`, `meets-policy`, with the
    cosigners (policy names, as UTF-8) and their timestamps when the note verified.
    """
    try:
        policy = parse_policy(policy_file)
    except Refused:
        return "refused-policy", {}
    try:
        verdict = verify_checkpoint(note, policy, log_keys)
    except Refused:
        return "refused-note", {}
    cosigned = {name.decode("utf-8"): ts for name, ts in verdict.cosigned.items()}
    return ("meets-policy" if verdict.quorum_met else "below-quorum"), cosigned
