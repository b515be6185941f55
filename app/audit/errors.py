"""Refusals of the transparency log, receipts and export (docs/errors.md)."""

from __future__ import annotations

from app.errors import NotFound, TimebankError


class CheckpointNotFound(NotFound):
    slug, title = "checkpoint-not-found", "Checkpoint not found"


class LogInconsistent(TimebankError):
    status, slug, title = 500, "log-inconsistent", "The log disagrees with its last checkpoint"


class SigningKeyUnavailable(TimebankError):
    status, slug, title = 503, "signing-key-unavailable", "No usable signing key"


class KeyRotationRefused(TimebankError):
    status, slug, title = 409, "key-rotation-refused", "The signing key cannot be rotated now"


class ReceiptTooLarge(TimebankError):
    status, slug, title = 422, "receipt-too-large", "The receipt does not fit one QR code"
