"""Refusals of mutual recognition between books (通存通兑); each rule has its own problem type.

A refusal of the ledger itself (insufficient funds, a frozen account) is answered with the
ledger's own problem type (see `transfers.ledger_refusal`).
"""

from __future__ import annotations

from app.kit.problems import TimebankError


class AgreementNotFound(TimebankError):
    status, slug, title = 404, "recognition-agreement-not-found", "Recognition agreement not found"


class AgreementExists(TimebankError):
    status, slug, title = (
        409,
        "recognition-agreement-exists",
        "An active agreement exists for this direction and asset pair",
    )


class AgreementEnded(TimebankError):
    status, slug, title = 409, "recognition-agreement-ended", "The recognition agreement has ended"


class TransferNotFound(TimebankError):
    status, slug, title = 404, "recognition-transfer-not-found", "Recognition transfer not found"


class AmountTooSmall(TimebankError):
    status, slug, title = (
        422,
        "recognition-amount-too-small",
        "The amount converts to less than one unit in the receiving book",
    )


class NoAccountInBook(TimebankError):
    status, slug, title = (
        409,
        "recognition-no-account",
        "The member holds no account for this asset in the sending book",
    )


class TransferRefused(TimebankError):
    status, slug, title = 409, "recognition-refused", "The ledger refused the transfer"
