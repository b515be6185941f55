"""Offline checks of what the service hands out: an export, a receipt, a proof (pure: no
database, no network). docs/audit-format.md §8 is the specification they follow."""

from __future__ import annotations

import collections
import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from app.audit import merkle, receipts
from app.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    open_checkpoint,
    parse_checkpoint,
    parse_tlog_proof,
)
from app.audit.export_lines import LineError, read_line, strict_json
from app.audit.keys import SigningKeyError, public_key_from_jwk
from app.audit.ledger_rules import HASH_RE, LedgerRules, RuleError, check_shape
from app.audit.note import NoteError, Verifier
from app.audit.receipt_checker import ReceiptChecker, ReceiptVerdict, start_worker, worker_verdicts
from app.audit.witness_policy import QuorumVerdict, WitnessPolicy
from app.kit.canonical_json import canonical_object_bytes

GENESIS_HASH = "0" * 64
TRAILER_MEMBERS = frozenset(("checkpoint", "from_seq", "to_seq", "prefix", "consistency", "jwks"))
# Lines handed to a process at a time: big enough that passing them costs little next to
# checking their receipts, small enough that a few in flight hold little memory.
CHUNK = 1000


class VerifyError(Exception):
    """The first problem found; `seq` names the entry to blame (None: not one entry's)."""

    def __init__(self, seq: int | None, reason: str) -> None:
        super().__init__(reason)
        self.seq, self.reason = seq, reason

    def __str__(self) -> str:
        where = "checkpoint" if self.seq is None else f"seq {self.seq}"
        return f"FAILED {where}: {self.reason}"


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
        """Add the next leaf hash (`_push`, written out: it runs once an entry)."""
        nodes, level, index, value = self.nodes, 0, self.end, leaf
        while index & 1 and nodes:
            top_level, top_index, top = nodes[-1]
            if top_level != level or top_index != index - 1:
                break
            nodes.pop()
            value = merkle.node_hash(top, value)
            level, index = level + 1, index >> 1
        nodes.append((level, index, value))
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


def check_witnesses(
    note: str, checkpoint: Checkpoint, jwks: Mapping[str, Any], policy: WitnessPolicy
) -> QuorumVerdict:
    """The witnesses of a verified checkpoint `note` by `policy`; VerifyError unless it meets
    the policy."""
    verdict = policy.check(note, note_verifiers(jwks, checkpoint.origin))
    if not verdict.met:
        raise VerifyError(
            None, f"the checkpoint does not meet the witness policy: {verdict.reason}"
        )
    return verdict


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
    receipts: int = 0  # how many entry lines carried a receipt (each checked)
    witnesses: QuorumVerdict | None = None  # with a witness policy: who cosigned


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
    # Whether the entry lines carry receipts, as the first one says (None: none read yet).
    receipts: bool | None = None
    receipts_checked: int = 0
    policy: WitnessPolicy | None = None
    witnesses: QuorumVerdict | None = None

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
        if self.policy is not None:
            self.witnesses = check_witnesses(str(cp["note"]), self.checkpoint, keys, self.policy)
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

    def feed(self, raw: bytes, verdict: ReceiptVerdict | None = None) -> None:
        """Check the next entry line; `verdict`, if given, is `receipt_verdict`'s for it,
        found elsewhere (another process) so that its receipt is not checked again."""
        n = self.seq + 1
        try:
            entry, entry_hash, signed, receipt = read_line(raw)
        except LineError as exc:
            raise VerifyError(n, str(exc)) from None
        if self.receipts is None:
            self.receipts = signed
        elif self.receipts != signed:
            first = "has a receipt" if self.receipts else "has none"
            raise VerifyError(n, f"receipts are mixed: the first entry line {first}, this not")
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
            # The shape is checked: only meta can hold what orjson does not write as JCS
            # (tests/kit); anything it cannot vouch for goes to the reference implementation.
            body = canonical_object_bytes(entry, entry["meta"])
        except Exception as exc:  # what JCS cannot represent
            raise VerifyError(n, f"the entry has no RFC 8785 form: {exc}") from None
        if hashlib.sha256(body).hexdigest() != entry_hash:  # (so entry_hash is 64 hex digits)
            raise VerifyError(n, "entry_hash is not the SHA-256 of the entry's RFC 8785 bytes")
        if signed:
            if verdict is None:
                try:
                    self.checker.check(receipt, entry, body, entry_hash)
                except receipts.ReceiptError as exc:
                    raise VerifyError(n, f"receipt: {exc}") from None
            elif verdict[0]:
                self.checker.kids.add(verdict[1])
            else:
                raise VerifyError(n, f"receipt: {verdict[1]}")
            self.receipts_checked += 1
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
        if self.trusted is not None:
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
            self.receipts_checked,
            self.witnesses,
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
    jobs: int = 1,
    policy: WitnessPolicy | None = None,
) -> ExportReport:
    """Verify an export: its entry lines and its last line (the checkpoint line), whose
    checkpoint must meet `policy` if one is given. With `jobs` > 1, as many other processes
    check the receipts, if the lines have any."""
    try:
        parsed = strict_json(trailer)
    except ValueError as exc:
        raise VerifyError(None, f"the last line is not JSON: {exc}") from None
    verifier = ExportVerifier(parsed, jwks, checkpoint, policy=policy)
    chunks = _chunks(lines, CHUNK)
    first = next(chunks, [])
    if jobs > 1 and first and _signed(first[0]):
        _feed_in_parallel(verifier, itertools.chain([first], chunks), jobs, progress)
    else:
        for chunk in itertools.chain([first], chunks):
            for raw in chunk:
                verifier.feed(raw)
            if progress is not None:
                progress(len(chunk))
    return verifier.finish()


def _chunks(lines: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    iterator = iter(lines)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _signed(raw: bytes) -> bool:
    try:
        return read_line(raw)[2]
    except LineError:
        return False


def _feed_in_parallel(
    verifier: ExportVerifier,
    chunks: Iterable[list[bytes]],
    jobs: int,
    progress: Callable[[int], None] | None,
) -> None:
    """Feed every line here, in order, with the receipts' verdicts found by `jobs` processes
    meanwhile; at most two chunks a process are read ahead."""
    keys = verifier.jwks or {}
    pool = ProcessPoolExecutor(jobs, initializer=start_worker, initargs=(keys,))
    ahead: collections.deque[tuple[list[bytes], Future[list[ReceiptVerdict | None]]]]
    ahead = collections.deque()

    def feed_one() -> None:
        chunk, verdicts = ahead.popleft()
        for raw, verdict in zip(chunk, verdicts.result(), strict=True):
            verifier.feed(raw, verdict)
        if progress is not None:
            progress(len(chunk))

    try:
        for chunk in chunks:
            ahead.append((chunk, pool.submit(worker_verdicts, chunk)))
            if len(ahead) > 2 * jobs:
                feed_one()
        while ahead:
            feed_one()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class ReceiptReport:
    """A verified receipt, and the checkpoint that includes it (if a proof was given)."""

    claims: receipts.ReceiptClaims
    checkpoint: Checkpoint | None = None
    witnesses: QuorumVerdict | None = None


def verify_receipt(
    token: str,
    jwks: Mapping[str, Any],
    proof: str | None = None,
    checkpoint: str | None = None,
    policy: WitnessPolicy | None = None,
) -> ReceiptReport:
    """Verify a receipt with the JWKS; with a proof (a tlog-proof bundle, or the JSON of an
    inclusion proof plus `checkpoint`), also its inclusion in a signed checkpoint, which must
    meet `policy` if one is given."""
    try:
        claims = receipts.verify_receipt(token.strip(), jwks)
    except receipts.ReceiptError as exc:
        raise VerifyError(None, f"receipt: {exc}") from None
    seq = claims["seq"]
    if proof is None:
        if checkpoint is not None:
            raise VerifyError(seq, "a checkpoint needs a proof (--proof)")
        if policy is not None:
            raise VerifyError(seq, "a witness policy needs a proof (--proof)")
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
    witnesses = None if policy is None else check_witnesses(note, signed, jwks, policy)
    if index != seq - 1:
        raise VerifyError(seq, f"the proof is for leaf {index}, the receipt's is {seq - 1}")
    if not merkle.verify_inclusion(leaf, index, signed.size, path, signed.root_hash):
        raise VerifyError(seq, f"the entry is not included in the checkpoint of size {signed.size}")
    return ReceiptReport(claims, signed, witnesses)
