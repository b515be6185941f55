"""Recompute a book's chain and balances from its journal (pure: fed rows, no I/O).

The checks bind every stored column to the hashed bytes without parsing JSON: RFC 8785 sorts
keys, so an entry's bytes start with its book, kind and legs and end with its posted_at,
prev_hash, seq and tx_id, all of which can be rebuilt from the rows and compared as bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from app.ledger.journal import (
    GENESIS_HASH,
    KIND_HOLD,
    KIND_HOLD_POST,
    KIND_HOLD_VOID,
    KIND_REVERSAL,
    BalanceState,
)


class VerificationError(Exception):
    """The journal of `book` differs from what its rows say, first at `seq`."""

    def __init__(self, book: str, seq: int, reason: str) -> None:
        super().__init__(f"book {book}: seq {seq}: {reason}")
        self.book, self.seq, self.reason = book, seq, reason


class EntryRow(NamedTuple):
    """An entry's stored columns; posted_at as the journal writes it (RFC 3339, `Z`)."""

    seq: int
    tx_id: str
    kind: str
    posted_at: str
    prev_hash: str
    entry_hash: str
    body: bytes
    reverses: str | None
    resolves_hold: str | None


class LegRow(NamedTuple):
    """A leg's stored columns."""

    account_id: str
    asset: str
    amount: int
    posted_after: int
    pending_debits_after: int
    pending_credits_after: int


@dataclass
class BookVerifier:
    """Feed entries in seq order; `finish` compares the result with the stored balances."""

    book: str
    seq: int = 0
    head_hash: str = GENESIS_HASH
    balances: dict[str, BalanceState] = field(default_factory=dict)
    assets: dict[str, str] = field(default_factory=dict)
    open_holds: dict[str, list[LegRow]] = field(default_factory=dict)
    last_posted_at: str = ""

    def fail(self, seq: int, reason: str) -> VerificationError:
        return VerificationError(self.book, seq, reason)

    def feed(self, entry: EntryRow, legs: Sequence[LegRow]) -> None:
        """Check one entry and apply its legs."""
        seq = entry.seq
        if seq != self.seq + 1:
            raise self.fail(self.seq + 1, f"sequence gap: next entry has seq {seq}")
        if hashlib.sha256(entry.body).hexdigest() != entry.entry_hash:
            raise self.fail(seq, "entry_hash is not the SHA-256 of the entry bytes")
        if entry.prev_hash != self.head_hash:
            if seq == 1:
                raise self.fail(seq, "the first entry's prev_hash is not 64 zeros")
            # The earlier entry no longer hashes to what this one committed to.
            raise self.fail(seq - 1, f"entry_hash differs from the prev_hash seq {seq} recorded")
        if not entry.body.startswith(_prefix(self.book, entry.kind, legs)):
            raise self.fail(seq, "book, kind or legs differ from the hashed entry")
        if not entry.body.endswith(_suffix(entry)):
            raise self.fail(seq, "posted_at, prev_hash, seq or tx_id differ from the hashed entry")
        # Fixed-width timestamps: string order is time order.
        if entry.posted_at < self.last_posted_at:
            raise self.fail(seq, "posted_at goes backwards")
        self.last_posted_at = entry.posted_at
        self._check_kind(entry, legs)
        self._check_references(entry)
        self._apply(entry, legs)
        self.seq, self.head_hash = seq, entry.entry_hash

    def _check_kind(self, entry: EntryRow, legs: Sequence[LegRow]) -> None:
        root = entry.kind.split(".", 1)[0]
        if root == "notice":
            if legs:
                raise self.fail(entry.seq, "a notice carries no legs")
        elif root in ("hold", "reversal") and entry.kind not in SYSTEM_KINDS:
            raise self.fail(entry.seq, f"unknown reserved kind {entry.kind!r}")
        elif entry.kind == KIND_HOLD and (len(legs) != 2 or legs[0].amount >= 0):
            raise self.fail(entry.seq, "a hold moves one amount from one account to another")

    def _check_references(self, entry: EntryRow) -> None:
        # Only these few kinds are parsed: their meta names what they refer to.
        if entry.kind in (KIND_HOLD_POST, KIND_HOLD_VOID):
            meta = json.loads(entry.body)["meta"]
            if entry.resolves_hold is None or meta.get("hold") != str(entry.resolves_hold):
                raise self.fail(entry.seq, "hold reference differs from the hashed entry")
        if entry.kind == KIND_REVERSAL:
            meta = json.loads(entry.body)["meta"]
            if entry.reverses is None or meta.get("reverses") != str(entry.reverses):
                raise self.fail(entry.seq, "reversal reference differs from the hashed entry")

    def _apply(self, entry: EntryRow, legs: Sequence[LegRow]) -> None:
        sums: dict[str, int] = {}
        for leg in legs:
            sums[leg.asset] = sums.get(leg.asset, 0) + leg.amount
            known = self.assets.setdefault(leg.account_id, leg.asset)
            if known != leg.asset:
                raise self.fail(entry.seq, f"account {leg.account_id} changed asset")
        if any(sums.values()):
            raise self.fail(entry.seq, f"legs do not balance: {sums}")
        if entry.kind in (KIND_HOLD_POST, KIND_HOLD_VOID):
            held = self.open_holds.pop(entry.resolves_hold or "", None)
            if held is None:
                raise self.fail(entry.seq, "resolves a hold that is not pending")
            for leg in held:
                self._balance(leg.account_id).reserve(leg.amount, sign=-1)
            if entry.kind == KIND_HOLD_VOID and [(h.account_id, h.amount) for h in held] != [
                (leg.account_id, leg.amount) for leg in legs
            ]:
                raise self.fail(entry.seq, "a void's legs differ from the hold's")
            if entry.kind == KIND_HOLD_POST and not _posts_within(held, legs):
                raise self.fail(entry.seq, "a post moves other accounts or more than the hold")
        if entry.kind == KIND_HOLD:
            self.open_holds[entry.tx_id] = list(legs)
        for leg in legs:
            balance = self._balance(leg.account_id)
            if entry.kind == KIND_HOLD:
                balance.reserve(leg.amount)
            elif entry.kind != KIND_HOLD_VOID:
                balance.posted += leg.amount
            stored = (leg.posted_after, leg.pending_debits_after, leg.pending_credits_after)
            if stored != (balance.posted, balance.pending_debits, balance.pending_credits):
                raise self.fail(entry.seq, f"running balance of {leg.account_id} differs")

    def _balance(self, account_id: str) -> BalanceState:
        balance = self.balances.get(account_id)
        if balance is None:
            balance = self.balances[account_id] = BalanceState()
        return balance

    def finish(self, head: tuple[int, str], accounts: dict[str, tuple[int, int, int, int]]) -> None:
        """Compare with the stored head and each account's (posted, pd, pc, last_seq)."""
        if head != (self.seq, self.head_hash):
            raise self.fail(max(self.seq, 1), f"stored head {head} differs from the journal")
        for account_id, (posted, pd, pc, last_seq) in sorted(accounts.items()):
            expected = self.balances.get(account_id, BalanceState())
            if (posted, pd, pc) != (
                expected.posted,
                expected.pending_debits,
                expected.pending_credits,
            ):
                raise self.fail(last_seq, f"stored balance of account {account_id} differs")


SYSTEM_KINDS = (KIND_HOLD, KIND_HOLD_POST, KIND_HOLD_VOID, KIND_REVERSAL)


def _posts_within(held: Sequence[LegRow], legs: Sequence[LegRow]) -> bool:
    if len(legs) != 2 or len(held) != 2:
        return False
    amount = legs[1].amount
    return (
        [leg.account_id for leg in legs] == [h.account_id for h in held]
        and legs[0].amount == -amount
        and 0 < amount <= held[1].amount
    )


def _prefix(book: str, kind: str, legs: Sequence[LegRow]) -> bytes:
    parts = ",".join(
        f'{{"account_id":"{leg.account_id}","amount":{leg.amount},"asset":"{leg.asset}"}}'
        for leg in legs
    )
    return f'{{"book":"{book}","kind":"{kind}","legs":[{parts}],"memo":'.encode()


def _suffix(entry: EntryRow) -> bytes:
    return (
        f'"posted_at":"{entry.posted_at}","prev_hash":"{entry.prev_hash}",'
        f'"seq":{entry.seq},"tx_id":"{entry.tx_id}"}}'
    ).encode()


def summary(verifier: BookVerifier) -> dict[str, Any]:
    """What a verified book holds."""
    return {
        "book": verifier.book,
        "entries": verifier.seq,
        "head": verifier.head_hash,
        "accounts": len(verifier.balances),
        "open_holds": len(verifier.open_holds),
    }
