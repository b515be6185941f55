"""Offline checks of what the service hands out: an export, a receipt, a proof (pure: no
database, no network). docs/audit-format.md §8 is the specification they follow."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.audit import merkle, receipts
from app.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    open_checkpoint,
    parse_checkpoint,
    parse_tlog_proof,
)
from app.audit.keys import SigningKeyError, jwk_thumbprint, public_key_from_jwk, signing_window
from app.audit.ledger_rules import HASH_RE, LedgerRules, RuleError, check_shape
from app.audit.note import NoteError, Verifier
from app.audit.receipting import receipt_claims
from app.kit import deep_json
from app.kit.canonical_json import canonical_bytes

GENESIS_HASH = "0" * 64
MAX_SAFE_INTEGER = 2**53 - 1
LINE_MEMBERS = frozenset(("entry", "entry_hash", "receipt"))
TRAILER_MEMBERS = frozenset(("checkpoint", "from_seq", "to_seq", "prefix", "consistency", "jwks"))


class VerifyError(Exception):
    """The first problem found; `seq` names the entry to blame (None: not one entry's)."""

    def __init__(self, seq: int | None, reason: str) -> None:
        super().__init__(reason)
        self.seq, self.reason = seq, reason

    def __str__(self) -> str:
        where = "checkpoint" if self.seq is None else f"seq {self.seq}"
        return f"FAILED {where}: {self.reason}"


def strict_json(raw: bytes | str) -> Any:
    """JSON with no duplicate member and no NaN or Infinity (ValueError otherwise)."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            raise ValueError("duplicate member")
        return out

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    return deep_json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)


def _b64url(segment: str) -> bytes:
    if not segment or len(segment) % 4 == 1:
        raise receipts.MalformedReceiptError("bad base64url segment")
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise receipts.MalformedReceiptError("bad base64url segment") from exc
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != segment:
        raise receipts.MalformedReceiptError("non-canonical base64url segment")
    return raw


@dataclass(frozen=True)
class _Key:
    public_key: Ed25519PublicKey
    start: float | None
    end: float | None


class ReceiptChecker:
    """Checks many receipts against one JWKS and their entries: the rules of
    `app.audit.receipts.verify_receipt` and `check_receipt_entry`, with each header and key
    examined once (a test holds both to the same verdicts)."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._jwks = jwks
        self._headers: dict[str, str] = {}
        self._keys: dict[str, _Key] = {}
        self.kids: set[str] = set()

    def _kid(self, segment: str) -> str:
        kid = self._headers.get(segment)
        if kid is None:
            try:
                header = strict_json(_b64url(segment))
            except ValueError as exc:
                raise receipts.MalformedReceiptError(f"the header is not JSON: {exc}") from None
            if not isinstance(header, dict) or set(header) != {"alg", "kid", "typ"}:
                raise receipts.MalformedReceiptError("the header must be exactly alg, kid, typ")
            if header["alg"] != receipts.ALG:
                raise receipts.WrongAlgorithmError(f"alg must be {receipts.ALG}")
            if header["typ"] != receipts.RECEIPT_TYP or not isinstance(header["kid"], str):
                raise receipts.MalformedReceiptError("typ or kid is wrong")
            kid = self._headers[segment] = header["kid"]
        return kid

    def _key(self, kid: str) -> _Key:
        key = self._keys.get(kid)
        if key is None:
            listed = self._jwks.get("keys")
            found = [k for k in listed or () if isinstance(k, dict) and k.get("kid") == kid]
            if not isinstance(listed, list) or len(found) != 1:
                raise receipts.UnknownKeyError(f"no single key with kid {kid!r}")
            try:
                public = public_key_from_jwk(found[0])
                if jwk_thumbprint(found[0]) != kid:
                    raise receipts.UnknownKeyError("the JWK's kid is not its thumbprint")
                start, end = signing_window(found[0])
            except SigningKeyError as exc:
                raise receipts.UnknownKeyError(f"unusable key {kid!r}: {exc}") from None
            key = self._keys[kid] = _Key(
                public,
                None if start is None else start.timestamp(),
                None if end is None else end.timestamp(),
            )
        return key

    def check(self, token: str, entry: Mapping[str, Any], body: bytes, entry_hash: str) -> str:
        """Raise a ReceiptError unless `token` is a valid receipt of this entry; its kid."""
        if not isinstance(token, str) or token.count(".") != 2:
            raise receipts.MalformedReceiptError("not a JWS compact serialisation")
        header, payload, signature = token.split(".")
        kid = self._kid(header)
        key = self._key(kid)
        try:
            key.public_key.verify(_b64url(signature), f"{header}.{payload}".encode())
        except InvalidSignature:
            raise receipts.BadSignatureError("the signature does not verify") from None
        raw = _b64url(payload)
        try:
            iat = strict_json(raw).get("iat")
        except (ValueError, AttributeError):
            raise receipts.MalformedReceiptError("the payload is not a JSON object") from None
        if type(iat) is not int or not 0 <= iat <= MAX_SAFE_INTEGER:
            raise receipts.MalformedReceiptError("iat must be an integer >= 0")
        expected = receipt_claims(entry, body, entry_hash)
        expected["iat"] = iat
        if canonical_bytes(expected) != raw:
            # The slow path only to say why.
            claims = receipts.verify_receipt(token, self._jwks)
            receipts.check_receipt_entry(claims, entry, entry_hash)
            raise receipts.MalformedReceiptError("the payload is not the entry's canonical claims")
        if (key.start is not None and iat < key.start) or (key.end is not None and iat >= key.end):
            raise receipts.KeyNotValidError("iat is outside the signing key's validity period")
        self.kids.add(kid)
        return kid


class CompactRange:
    """The complete subtrees covering leaves [begin, end): O(log n) hashes, whatever n."""

    def __init__(self, begin: int) -> None:
        self.begin = self.end = begin
        self.nodes: list[tuple[int, int, bytes]] = []

    @staticmethod
    def _push(stack: list[tuple[int, int, bytes]], node: tuple[int, int, bytes]) -> None:
        level, index, value = node
        while index & 1 and stack and stack[-1][:2] == (level, index - 1):
            value = merkle.node_hash(stack.pop()[2], value)
            level, index = level + 1, index >> 1
        stack.append((level, index, value))

    def append(self, leaf: bytes) -> None:
        """Add the next leaf hash."""
        self._push(self.nodes, (0, self.end, leaf))
        self.end += 1

    def root(self, prefix: list[bytes], nodes: list[tuple[int, int, bytes]] | None = None) -> bytes:
        """The root of the tree of `end` leaves, given the hashes of the complete subtrees of
        [0, begin) (merkle.peaks order)."""
        stack = [(lv, ix, h) for (lv, ix), h in zip(merkle.peaks(self.begin), prefix, strict=True)]
        for node in self.nodes if nodes is None else nodes:
            self._push(stack, node)
        if not stack:
            return merkle.EMPTY_ROOT
        result = stack[-1][2]
        for _, _, value in reversed(stack[:-1]):
            result = merkle.node_hash(value, result)
        return result


def checkpoint_text(text: str) -> str:
    """A signed checkpoint note from a file: the note itself, or the JSON the API answers."""
    if text.lstrip().startswith("{"):
        document = strict_json(text)
        note = document.get("note") if isinstance(document, dict) else None
        if not isinstance(note, str):
            raise ValueError("the JSON has no note")
        return str(note)
    return text


def note_verifiers(jwks: Mapping[str, Any], name: str) -> list[Verifier]:
    """The JWKS keys as signed-note verifiers under key name `name` (unusable keys skipped)."""
    out = []
    for jwk in jwks.get("keys") or ():
        try:
            out.append(Verifier.from_public_key(name, public_key_from_jwk(jwk)))
        except (SigningKeyError, NoteError, AttributeError):
            continue
    return out


def open_book_checkpoint(note: str, book: str, jwks: Mapping[str, Any]) -> Checkpoint:
    """Verify a signed checkpoint of `book`: its origin ends in "/<book>" and a JWKS key
    signed it under the origin as key name."""
    try:
        origin = parse_checkpoint(note[: note.rfind("\n\n") + 1]).origin
        if origin.rsplit("/", 1)[-1] != book:
            raise CheckpointError(f"origin {origin!r} is not book {book!r}'s")
        return open_checkpoint(note, origin, note_verifiers(jwks, origin))
    except (CheckpointError, NoteError) as exc:
        raise VerifyError(None, f"the checkpoint does not verify: {exc}") from None


def _hex_hashes(value: Any, what: str) -> list[bytes]:
    if not isinstance(value, list) or not all(_is_hex(h) for h in value):
        raise VerifyError(None, f"{what} must be a list of 64-digit lowercase hex hashes")
    return [bytes.fromhex(h) for h in value]


def _is_hex(value: Any) -> bool:
    return type(value) is str and HASH_RE.fullmatch(value) is not None


@dataclass
class ExportReport:
    """What a verified export shows."""

    book: str
    from_seq: int
    to_seq: int
    checkpoint: Checkpoint
    root: bytes
    kids: set[str]
    keys_from_export: bool
    trusted_size: int | None = None
    totals: dict[str, tuple[int, int]] | None = None
    accounts: int = 0
    open_holds: int = 0
    head: str = GENESIS_HASH


@dataclass
class ExportVerifier:
    """Feed the entry lines of an export in order, then `finish`; raises VerifyError."""

    trailer: dict[str, Any]
    jwks: Mapping[str, Any] | None = None
    trusted_note: str | None = None
    book: str = ""
    checkpoint: Checkpoint | None = None
    trusted: Checkpoint | None = None
    rules: LedgerRules | None = None
    tree: CompactRange = field(default_factory=lambda: CompactRange(0))
    snapshot: list[tuple[int, int, bytes]] | None = None
    head: str | None = None
    seq: int = 0

    def __post_init__(self) -> None:
        trailer = self.trailer
        if not isinstance(trailer, dict) or set(trailer) != TRAILER_MEMBERS:
            raise VerifyError(None, "the last line is not the export's checkpoint line")
        first, last = trailer["from_seq"], trailer["to_seq"]
        if not (type(first) is int and type(last) is int and 1 <= first <= max(last, 1)):
            raise VerifyError(None, "from_seq and to_seq are not a range")
        cp = trailer["checkpoint"]
        if not isinstance(cp, dict) or not isinstance(cp.get("book"), str):
            raise VerifyError(None, "the checkpoint line has no book")
        self.book = cp["book"]
        self.keys_from_export = self.jwks is None
        keys = trailer["jwks"] if self.jwks is None else self.jwks
        if not isinstance(keys, dict):
            raise VerifyError(None, "the JWKS is not a JSON object")
        self.jwks = keys
        self.checker = ReceiptChecker(keys)
        self.checkpoint = open_book_checkpoint(str(cp.get("note")), self.book, keys)
        if self.checkpoint.size < last:
            raise VerifyError(None, f"the checkpoint ({self.checkpoint.size}) ends before {last}")
        self.prefix = _hex_hashes(trailer["prefix"], "prefix")
        self.consistency = _hex_hashes(trailer["consistency"], "consistency")
        if len(self.prefix) != len(merkle.peaks(first - 1)):
            raise VerifyError(None, f"prefix must hold the {first - 1} earlier leaves' peaks")
        if self.trusted_note is not None:
            self.trusted = open_book_checkpoint(self.trusted_note, self.book, keys)
        self.first, self.last, self.seq = first, last, first - 1
        self.rules = LedgerRules() if first == 1 else None
        self.head = GENESIS_HASH if first == 1 else None
        self.tree = CompactRange(first - 1)
        self._snapshot_if_due()

    def _snapshot_if_due(self) -> None:
        if self.trusted is not None and self.trusted.size == self.tree.end:
            self.snapshot = list(self.tree.nodes)

    def feed(self, raw: bytes) -> None:
        """Check the next entry line."""
        n = self.seq + 1
        try:
            line = strict_json(raw)
        except ValueError as exc:
            raise VerifyError(n, f"the line is not JSON: {exc}") from None
        if not isinstance(line, dict) or set(line) != LINE_MEMBERS:
            raise VerifyError(n, "the line must have exactly entry, entry_hash and receipt")
        entry, entry_hash = line["entry"], line["entry_hash"]
        if n > self.last:
            raise VerifyError(n, f"more entries than the range ends at ({self.last})")
        try:
            check_shape(entry, n)
        except RuleError as exc:
            raise VerifyError(exc.seq, exc.reason) from None
        if entry["seq"] != n:
            what = "missing" if entry["seq"] > n else "repeated or out of order"
            raise VerifyError(n, f"expected seq {n}, found seq {entry['seq']} ({what})")
        if entry["book"] != self.book:
            raise VerifyError(n, f"book {entry['book']!r} is not the export's {self.book!r}")
        try:
            # The fast path of canonical_bytes writes the RFC 8785 bytes (tests/kit); anything
            # it cannot vouch for goes to the reference implementation.
            body = canonical_bytes(entry)
        except Exception as exc:  # what JCS cannot represent
            raise VerifyError(n, f"the entry has no RFC 8785 form: {exc}") from None
        if not _is_hex(entry_hash) or hashlib.sha256(body).hexdigest() != entry_hash:
            raise VerifyError(n, "entry_hash is not the SHA-256 of the entry's RFC 8785 bytes")
        try:
            self.checker.check(line["receipt"], entry, body, entry_hash)
        except receipts.ReceiptError as exc:
            raise VerifyError(n, f"receipt: {exc}") from None
        if self.head is not None and entry["prev_hash"] != self.head:
            if n == 1:
                raise VerifyError(n, "the first entry's prev_hash is not 64 zeros")
            raise VerifyError(n - 1, f"entry_hash differs from the prev_hash seq {n} recorded")
        if self.rules is not None:
            try:
                self.rules.apply(entry)
            except RuleError as exc:
                raise VerifyError(exc.seq, exc.reason) from None
        self.tree.append(merkle.leaf_hash(body))
        self._snapshot_if_due()
        self.head, self.seq = entry_hash, n

    def finish(self) -> ExportReport:
        """Check the end of the range, the Merkle root against the checkpoint, and the
        trusted checkpoint if one was given."""
        checkpoint = self.checkpoint
        if checkpoint is None:  # pragma: no cover - set in __post_init__
            raise VerifyError(None, "no checkpoint")
        if self.seq != self.last:
            raise VerifyError(self.seq + 1, f"entries missing: the range ends at {self.last}")
        totals = None
        if self.rules is not None:
            try:
                totals = self.rules.finish(self.seq)
            except RuleError as exc:
                raise VerifyError(exc.seq, exc.reason) from None
        root = self.tree.root(self.prefix)
        if not merkle.verify_consistency(
            self.last, checkpoint.size, self.consistency, root, checkpoint.root_hash
        ):
            raise VerifyError(
                self.last or None,
                f"the Merkle root of seq 1..{self.last} is not a prefix of the signed "
                f"checkpoint of size {checkpoint.size}",
            )
        self._check_trusted(checkpoint)
        return ExportReport(
            self.book,
            self.first,
            self.last,
            checkpoint,
            root,
            self.checker.kids,
            self.keys_from_export,
            None if self.trusted is None else self.trusted.size,
            totals,
            0 if self.rules is None else len(self.rules.balances),
            0 if self.rules is None else self.rules.open_holds(),
            self.head or GENESIS_HASH,
        )

    def _check_trusted(self, checkpoint: Checkpoint) -> None:
        trusted = self.trusted
        if trusted is None:
            return
        if trusted.size == checkpoint.size:
            same = trusted.root_hash == checkpoint.root_hash
        elif self.snapshot is not None:
            same = self.tree.root(self.prefix, self.snapshot) == trusted.root_hash
        else:
            raise VerifyError(
                None,
                f"the trusted checkpoint's size {trusted.size} is neither the export's "
                f"checkpoint's nor within its range {self.first - 1}..{self.last}",
            )
        if not same:
            raise VerifyError(
                min(trusted.size, self.last) or None,
                f"the export disagrees with the trusted checkpoint of size {trusted.size}",
            )


def verify_export(
    lines: Iterable[bytes],
    trailer: bytes,
    jwks: Mapping[str, Any] | None = None,
    checkpoint: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ExportReport:
    """Verify an export: its entry lines and its last line (the checkpoint line)."""
    try:
        parsed = strict_json(trailer)
    except ValueError as exc:
        raise VerifyError(None, f"the last line is not JSON: {exc}") from None
    verifier = ExportVerifier(parsed, jwks, checkpoint)
    for count, raw in enumerate(lines, 1):
        verifier.feed(raw)
        if progress is not None and count % 1000 == 0:
            progress(1000)
    return verifier.finish()


@dataclass
class ReceiptReport:
    """A verified receipt, and the checkpoint that includes it (if a proof was given)."""

    claims: receipts.ReceiptClaims
    checkpoint: Checkpoint | None = None


def verify_receipt(
    token: str,
    jwks: Mapping[str, Any],
    proof: str | None = None,
    checkpoint: str | None = None,
) -> ReceiptReport:
    """Verify a receipt with the JWKS; with a proof (a tlog-proof bundle, or the JSON of an
    inclusion proof plus `checkpoint`), also its inclusion in a signed checkpoint."""
    try:
        claims = receipts.verify_receipt(token.strip(), jwks)
    except receipts.ReceiptError as exc:
        raise VerifyError(None, f"receipt: {exc}") from None
    seq = claims["seq"]
    if proof is None:
        if checkpoint is not None:
            raise VerifyError(seq, "a checkpoint needs a proof (--proof)")
        return ReceiptReport(claims)
    leaf = bytes.fromhex(claims["leaf_hash"])
    note: str | None
    if proof.startswith("c2sp.org/tlog-proof@v1\n"):
        try:
            bundle = parse_tlog_proof(proof)
        except CheckpointError as exc:
            raise VerifyError(seq, f"the proof bundle is malformed: {exc}") from None
        index: Any = bundle.index
        path, note = list(bundle.proof), bundle.checkpoint
    else:
        data = strict_json(proof)
        index = data.get("leaf_index") if isinstance(data, dict) else None
        path = _hex_hashes(data.get("proof"), "proof") if isinstance(data, dict) else []
        note = None
    if checkpoint is not None:
        note = checkpoint
    if note is None:
        raise VerifyError(seq, "an inclusion proof in JSON needs --checkpoint")
    signed = open_book_checkpoint(note, claims["book"], jwks)
    if index != seq - 1:
        raise VerifyError(seq, f"the proof is for leaf {index}, the receipt's is {seq - 1}")
    if not merkle.verify_inclusion(leaf, index, signed.size, path, signed.root_hash):
        raise VerifyError(seq, f"the entry is not included in the checkpoint of size {signed.size}")
    return ReceiptReport(claims, signed)
