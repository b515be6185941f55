"""C2SP tlog-witness `add-checkpoint`, pure: the request body parsed strictly, the checkpoint's
signatures checked against the log's keys, and the answer decided from the stored state.

Followed: C2SP/C2SP `tlog-witness.md` ("add-checkpoint"). The checks run in the order the text
gives them: 400 (malformed), 404 (unknown origin), 403 (signatures), 400 (old size above the
checkpoint's), 409 (old size is not the stored one), then the 422s (the empty tree's root, a
proof from the empty tree, the consistency proof, the same size with another root).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from app.audit import merkle
from app.audit.checkpoint import MAX_SIZE, Checkpoint, CheckpointError, parse_checkpoint
from app.audit.note import (
    EM_DASH,
    AmbiguousKeyError,
    InvalidSignatureError,
    MalformedNoteError,
    UnverifiedNoteError,
    Verifier,
    open_note,
    strict_b64decode,
)
from app.kit.problems import TimebankError
from app.witness.errors import (
    WitnessInconsistent,
    WitnessMalformedRequest,
    WitnessOldSizeTooLarge,
    WitnessSignatureRefused,
    WitnessUnexpectedProof,
    WitnessUnknownLog,
)

MAX_PROOF_LINES = 63
_OLD_LINE = re.compile(r"old (0|[1-9][0-9]{0,18})")


@dataclass(frozen=True)
class AddCheckpoint:
    """An add-checkpoint request body, parsed: old size, proof hashes, the signed note."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str


def parse_request(body: bytes) -> AddCheckpoint:
    """Parse an add-checkpoint body strictly; WitnessMalformedRequest (400) says what is wrong."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WitnessMalformedRequest("the body is not UTF-8") from None
    head, blank, note = text.partition("\n\n")
    if not blank:
        raise WitnessMalformedRequest("no empty line before the checkpoint")
    lines = head.split("\n")
    old = _OLD_LINE.fullmatch(lines[0])
    if old is None or int(old.group(1)) > MAX_SIZE:
        raise WitnessMalformedRequest("the first line must be `old <size>` (decimal, no leading 0)")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise WitnessMalformedRequest(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            raw = strict_b64decode(line)
        except MalformedNoteError:
            raise WitnessMalformedRequest(f"line {number} is not canonical base64") from None
        if len(raw) != merkle.HASH_SIZE:
            raise WitnessMalformedRequest(f"line {number} is not a 32-byte hash")
        proof.append(raw)
    if not note:
        raise WitnessMalformedRequest("no checkpoint after the empty line")
    return AddCheckpoint(int(old.group(1)), tuple(proof), note)


@dataclass(frozen=True)
class Submission:
    """A request whose checkpoint a known log validly signed."""

    request: AddCheckpoint
    checkpoint: Checkpoint
    # The log's signature lines that verified (each ending in a newline); others are dropped.
    log_signatures: tuple[str, ...]

    @property
    def origin(self) -> str:
        return self.checkpoint.origin

    def signed_note(self) -> str:
        """The checkpoint with the log's verified signatures only."""
        return self.checkpoint.text() + "\n" + "".join(self.log_signatures)


def _note_text(note: str) -> str:
    split = note.rfind("\n\n")
    if split < 0:
        raise WitnessMalformedRequest("the checkpoint has no signature block")
    return note[: split + 1]


def authenticate(request: AddCheckpoint, logs: Mapping[str, Sequence[Verifier]]) -> Submission:
    """The checkpoint parsed and its signatures checked against its log's keys: 400 if
    malformed, 404 if its origin is not witnessed, 403 if no key of the log signed it or a
    line of a key of the log does not verify."""
    try:
        checkpoint = parse_checkpoint(_note_text(request.note))
    except CheckpointError as exc:
        raise WitnessMalformedRequest(f"not a checkpoint: {exc}") from None
    verifiers = logs.get(checkpoint.origin)
    if verifiers is None:
        raise WitnessUnknownLog("this witness does not witness that origin")
    try:
        _, signatures = open_note(request.note, verifiers)
    except (InvalidSignatureError, UnverifiedNoteError) as exc:
        raise WitnessSignatureRefused(str(exc), origin=checkpoint.origin) from None
    except (MalformedNoteError, AmbiguousKeyError) as exc:
        raise WitnessMalformedRequest(f"not a signed note: {exc}") from None
    lines = tuple(f"{EM_DASH} {s.name} {s.base64}\n" for s in signatures)
    return Submission(request, checkpoint, lines)


@dataclass(frozen=True)
class Stored:
    """What the witness holds for a log: the size and root of the latest cosigned checkpoint."""

    size: int
    root: bytes


NEVER_COSIGNED = Stored(0, merkle.EMPTY_ROOT)


@dataclass(frozen=True)
class Refusal:
    """Why a checkpoint is not cosigned. `error` is the problem to answer, or None for the 409
    whose body is the stored size; `alarm` when a validly signed checkpoint is inconsistent."""

    status: int
    reason: str
    error: TimebankError | None
    alarm: bool = False


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def decide(submission: Submission, stored: Stored) -> Refusal | None:
    """None to cosign, or the refusal, given what the witness stored for the origin."""
    request, checkpoint = submission.request, submission.checkpoint
    old, size, proof = request.old_size, checkpoint.size, request.proof
    if old > size:
        return Refusal(
            400,
            "old-size-too-large",
            WitnessOldSizeTooLarge(f"old size {old} is above the checkpoint's size {size}"),
        )
    if old != stored.size:
        return Refusal(409, "old-size-mismatch", None)
    if size == 0 and checkpoint.root_hash != merkle.EMPTY_ROOT:
        return _inconsistent("empty-tree-root", "a checkpoint of size 0 has another root")
    if old == 0 or old == size:
        if old == size and checkpoint.root_hash != stored.root:
            return _inconsistent(
                "same-size-different-root",
                f"size {size} was cosigned with root {_b64(stored.root)}",
            )
        if proof:
            return Refusal(
                422,
                "unexpected-proof",
                WitnessUnexpectedProof(f"a proof from size {old} to {size} is empty"),
            )
        return None
    if not merkle.verify_consistency(old, size, proof, stored.root, checkpoint.root_hash):
        return _inconsistent(
            "consistency-proof-failed",
            f"the proof does not show size {size} extends the cosigned size {old}",
        )
    return None


def _inconsistent(reason: str, detail: str) -> Refusal:
    return Refusal(422, reason, WitnessInconsistent(detail, reason=reason), alarm=True)
