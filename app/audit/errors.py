"""Refusals of the transparency log, receipts and export (docs/errors.md)."""

from __future__ import annotations

from app.kit.problems import NotFound, TimebankError


class CheckpointNotFound(NotFound):
    slug, title = "checkpoint-not-found", "Checkpoint not found"


class BeyondLogSize(TimebankError):
    """A seq or tree size past the book's head: nothing to prove yet (never an integrity
    alarm). `head_seq` is the journal's last seq, `tree_size` the size proofs can use now."""

    status, slug, title = 422, "beyond-log-size", "The book's log is not that large"

    def __init__(self, book: str, field: str, value: int, head_seq: int, tree_size: int) -> None:
        super().__init__(
            f"{field} {value} is past the head of book {book!r}: its journal ends at seq "
            f"{head_seq}",
            field=f"query/{field}",
            head_seq=head_seq,
            tree_size=tree_size,
        )


class LogInconsistent(TimebankError):
    status, slug, title = 500, "log-inconsistent", "The log disagrees with its last checkpoint"


class SigningKeyUnavailable(TimebankError):
    status, slug, title = 503, "signing-key-unavailable", "No usable signing key"


class KeyRotationRefused(TimebankError):
    status, slug, title = 409, "key-rotation-refused", "The signing key cannot be rotated now"


class ReceiptTooLarge(TimebankError):
    status, slug, title = 422, "receipt-too-large", "The receipt does not fit one QR code"
