"""The ledger's refusals, one class per rule."""

from __future__ import annotations

from app.kit.problems import Conflict, NotFound, TimebankError, ValidationFailed

__all__ = ["Conflict", "ValidationFailed"]


class InsufficientFunds(TimebankError):
    status, slug, title = 409, "insufficient-funds", "Insufficient funds"


class UnbalancedLegs(TimebankError):
    status, slug, title = 422, "unbalanced-legs", "Legs do not sum to zero per asset"


class NothingToMove(TimebankError):
    # 409, as insufficient-funds: the body is well formed; the accounts' state when it is
    # posted (a storage cap reached) leaves it nothing to move, and the same body may pass later.
    status, slug, title = 409, "nothing-to-move", "The action would move nothing"


class AccountNotOpen(TimebankError):
    status, slug, title = 409, "account-not-open", "Account is frozen or closed"


class AccountMoved(TimebankError):
    status, slug, title = 409, "account-moved", "The account has moved since it was read"


class AccountNotInBook(TimebankError):
    status, slug, title = 422, "account-not-in-book", "Account does not belong to this book"


class UnknownAccount(TimebankError):
    status, slug, title = 422, "unknown-account", "Unknown account"


class HoldNotPending(TimebankError):
    status, slug, title = 409, "hold-not-pending", "Hold is already resolved"


class HoldExpired(TimebankError):
    status, slug, title = 409, "hold-expired", "Hold has expired"


class HoldAmountExceeded(TimebankError):
    status, slug, title = 422, "hold-amount-exceeded", "Amount exceeds the hold"


class AlreadyReversed(TimebankError):
    status, slug, title = 409, "already-reversed", "Transaction already reversed"


class NotReversible(TimebankError):
    status, slug, title = 422, "not-reversible", "This entry cannot be reversed"


class BookExists(TimebankError):
    status, slug, title = 409, "book-exists", "A book with this code exists"


class BookNotFound(NotFound):
    slug, title = "book-not-found", "Book not found"


class AccountNotFound(NotFound):
    slug, title = "account-not-found", "Account not found"


class TransactionNotFound(NotFound):
    slug, title = "transaction-not-found", "Transaction not found"


class HoldNotFound(NotFound):
    slug, title = "hold-not-found", "Hold not found"
