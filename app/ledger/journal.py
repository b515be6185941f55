"""The journal entry format and its hash chain (pure: no I/O). See docs/ledger-format.md."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.kit.canonical_json import JsonObject, canonical_object_bytes

GENESIS_HASH = "0" * 64
MAX_SAFE_INTEGER = 2**53 - 1

# Kinds whose legs move reservations (pending), not posted balances.
KIND_HOLD = "hold"
KIND_HOLD_POST = "hold.post"
KIND_HOLD_VOID = "hold.void"
KIND_REVERSAL = "reversal"
# An ordinary kind that only approving a service record posts (docs/volunteering.md §6).
KIND_SERVICE_CREDIT = "service_credit"
# Correcting an approved record whose units were since spent or lapsed, and the settlement of
# what a correction left owed (docs/volunteering.md §6.1, docs/ledger-format.md §6).
KIND_SERVICE_CORRECTION = "service_correction"
KIND_SERVICE_CORRECTION_SETTLE = "service_correction.settle"
KIND_SERVICE_CORRECTION_WRITE_OFF = "service_correction.write_off"
# Kinds (by their root, before any ".") that only a domain's own route posts, with that route:
# caps, statistics and reports are read back from them, so a client may not forge one.
DOMAIN_KIND_ROUTES = {
    KIND_SERVICE_CREDIT: "approving a service record",
    KIND_SERVICE_CORRECTION: "POST /v1/service-records/{id}/reverse",
    "donation": "POST /v1/organisations/{id}/donations",
    "exchange": "POST /v1/exchanges",
    "gift": "POST /v1/gifts",
    "public_pool": "the routes of /v1/books/{code}/public-pool",
    "recognition": "POST /v1/recognition/transfers",
    "expiry": "`timebank expire`",
}
# Entries a feature's own rows depend on (a service record's status, what a member owes): a
# client's generic reversal would leave those rows saying otherwise, so only the feature's
# route reverses them (app.ledger_api refuses them with that route's name).
RECORD_BOUND_KINDS = {
    KIND_SERVICE_CREDIT: "POST /v1/service-records/{id}/reverse",
    KIND_SERVICE_CORRECTION: "POST /v1/service-records/{id}/reverse (a correction stands)",
    KIND_SERVICE_CORRECTION_SETTLE: "a settlement stands (docs/volunteering.md §6.1)",
    KIND_SERVICE_CORRECTION_WRITE_OFF: "a write-off stands (docs/volunteering.md §6.1)",
}
NOTICE_PREFIX = "notice."
# The meta member in which the ledger records who asked for an entry; callers cannot set it.
ACTOR_KEY = "actor"
# Meta members the ledger sets on domain entries (docs/ledger-format.md §6.9, §6.10): callers
# cannot set them either, so that they mean the same wherever they appear.
LEDGER_META_KEYS = (ACTOR_KEY, "overflow", "counterpart")
# Each is one of a pair of entries in two books (recognition between books): reversing one
# alone would leave the books' clearing accounts unmirrored; a transfer back corrects one.
LINKED_KINDS = ("recognition.out", "recognition.in")


@dataclass(frozen=True, slots=True)
class Leg:
    """One line of an entry: an account, its asset and a signed amount."""

    account_id: str
    asset: str
    amount: int

    def as_json(self) -> JsonObject:
        return {"account_id": self.account_id, "asset": self.asset, "amount": self.amount}


def entry_object(
    *,
    book: str,
    seq: int,
    tx_id: str,
    kind: str,
    posted_at: str,
    legs: Sequence[Leg],
    memo: str,
    meta: Mapping[str, Any],
    prev_hash: str,
) -> JsonObject:
    """The journal object exactly as it is serialised and hashed."""
    return {
        "book": book,
        "seq": seq,
        "tx_id": tx_id,
        "kind": kind,
        "posted_at": posted_at,
        "legs": [leg.as_json() for leg in legs],
        "memo": memo,
        "meta": dict(meta),
        "prev_hash": prev_hash,
    }


def entry_bytes(entry: dict[str, Any]) -> bytes:
    """The RFC 8785 bytes of an entry object (as built by `entry_object`)."""
    # Every member but meta is an ASCII-keyed string, safe integer or list of legs.
    return canonical_object_bytes(entry, entry["meta"])


def hash_bytes(data: bytes) -> str:
    """Lowercase hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


def unbalanced_assets(legs: Iterable[Leg]) -> dict[str, int]:
    """Per asset, the non-zero sums of the legs (empty when the legs balance)."""
    sums: dict[str, int] = {}
    for leg in legs:
        sums[leg.asset] = sums.get(leg.asset, 0) + leg.amount
    return {asset: total for asset, total in sums.items() if total != 0}


@dataclass(slots=True)
class BalanceState:
    """An account's balances: posted, and reservations out (debits) and in (credits)."""

    posted: int = 0
    pending_debits: int = 0
    pending_credits: int = 0

    def as_tuple(self) -> tuple[int, int, int]:
        """(posted, pending_debits, pending_credits)."""
        return self.posted, self.pending_debits, self.pending_credits

    @property
    def available(self) -> int:
        """What can be spent now: posted less outgoing reservations."""
        return self.posted - self.pending_debits

    def reserve(self, amount: int, sign: int = 1) -> None:
        """Add (sign 1) or release (sign -1) a reservation for a leg amount."""
        if amount < 0:
            self.pending_debits += sign * -amount
        else:
            self.pending_credits += sign * amount
