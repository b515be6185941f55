"""Recompute a book's chain and balances from its journal (pure: fed rows, no I/O).

The checks bind every stored column to the hashed bytes without parsing JSON: RFC 8785 sorts
keys, so an entry's bytes start with its book, kind and legs and end with its posted_at,
prev_hash, seq and tx_id, all of which can be rebuilt from the rows and compared as bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any, NamedTuple

from app.kit import deep_json
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


# A leg's stored columns: seq, account_id, asset, amount, posted_after, pending_debits_after,
# pending_credits_after. Plain tuples (as read from the database): verification unpacks them.
LegRow = tuple[int, str, str, int, int, int, int]
# Where the kind is one of these roots, the kind's own rules apply (see _check_kind).
RESERVED_ROOTS = ("hold", "reversal", "notice")


@dataclass
class BookVerifier:
    """Feed entries in seq order; `finish` compares the result with the stored balances.

    `feed` runs once per entry of a book: it is written for speed (tuples unpacked once, the
    common kinds on a short path) with exactly the checks described in docs/ledger-format.md.
    """

    book: str
    seq: int = 0
    head_hash: str = GENESIS_HASH
    balances: dict[str, BalanceState] = field(default_factory=dict)
    assets: dict[str, str] = field(default_factory=dict)
    open_holds: dict[str, Sequence[LegRow]] = field(default_factory=dict)
    last_posted_at: str = ""

    def fail(self, seq: int, reason: str) -> VerificationError:
        return VerificationError(self.book, seq, reason)

    def feed(self, entry: Sequence[Any], legs: Sequence[LegRow]) -> None:
        """Check one entry (the columns of EntryRow, in order) and apply its legs."""
        seq, tx_id, kind, posted_at, prev_hash, entry_hash, body, reverses, resolves = entry
        if seq != self.seq + 1:
            raise self.fail(self.seq + 1, f"sequence gap: next entry has seq {seq}")
        if sha256(body).hexdigest() != entry_hash:
            raise self.fail(seq, "entry_hash is not the SHA-256 of the entry bytes")
        if prev_hash != self.head_hash:
            if seq == 1:
                raise self.fail(seq, "the first entry's prev_hash is not 64 zeros")
            # The earlier entry no longer hashes to what this one committed to.
            raise self.fail(seq - 1, f"entry_hash differs from the prev_hash seq {seq} recorded")
        special = kind.startswith(RESERVED_ROOTS)
        # One pass over the legs gathers what the checks below need, in the order they report:
        # the hashed legs' text, a changed asset, the sums, and (ordinary kinds) the first
        # running balance that differs, applied as it goes (a failure ends verification).
        parts: list[str] = []
        sums: dict[str, int] = {}
        changed_asset: str | None = None
        bad_balance: str | None = None
        assets, balances = self.assets, self.balances
        for _s, account, asset, amount, posted_after, pd_after, pc_after in legs:
            parts.append(f'{{"account_id":"{account}","amount":{amount},"asset":"{asset}"}}')
            if assets.setdefault(account, asset) != asset and changed_asset is None:
                changed_asset = account
            sums[asset] = sums.get(asset, 0) + amount
            if special:
                continue
            balance = balances.get(account)
            if balance is None:
                balance = balances[account] = BalanceState()
            balance.posted += amount
            if (
                posted_after != balance.posted
                or pd_after != balance.pending_debits
                or pc_after != balance.pending_credits
            ) and bad_balance is None:
                bad_balance = account
        if not body.startswith(
            f'{{"book":"{self.book}","kind":"{kind}","legs":[{",".join(parts)}],"memo":'.encode()
        ):
            raise self.fail(seq, "book, kind or legs differ from the hashed entry")
        if not body.endswith(
            f'"posted_at":"{posted_at}","prev_hash":"{prev_hash}","seq":{seq},'
            f'"tx_id":"{tx_id}"}}'.encode()
        ):
            raise self.fail(seq, "posted_at, prev_hash, seq or tx_id differ from the hashed entry")
        # Fixed-width timestamps: string order is time order.
        if posted_at < self.last_posted_at:
            raise self.fail(seq, "posted_at goes backwards")
        self.last_posted_at = posted_at
        # Only a reversal names what it reverses, and only a hold's post or void its hold.
        if (reverses is not None and kind != KIND_REVERSAL) or (
            resolves is not None and kind not in (KIND_HOLD_POST, KIND_HOLD_VOID)
        ):
            raise self.fail(seq, "reverses or resolves_hold is set on an entry of another kind")
        if special:
            self._check_kind(seq, kind, legs)
            self._check_references(seq, kind, body, reverses, resolves)
        if changed_asset is not None:
            raise self.fail(seq, f"account {changed_asset} changed asset")
        if any(sums.values()):
            raise self.fail(seq, f"legs do not balance: {sums}")
        if bad_balance is not None:
            raise self.fail(seq, f"running balance of {bad_balance} differs")
        if special:
            if kind in SYSTEM_KINDS:
                self._apply_system(seq, kind, tx_id, resolves, legs)
            else:
                self._apply_posted(seq, legs)
        self.seq, self.head_hash = seq, entry_hash

    def _check_kind(self, seq: int, kind: str, legs: Sequence[LegRow]) -> None:
        root = kind.split(".", 1)[0]
        if root == "notice":
            if legs:
                raise self.fail(seq, "a notice carries no legs")
        elif root in ("hold", "reversal") and kind not in SYSTEM_KINDS:
            raise self.fail(seq, f"unknown reserved kind {kind!r}")
        elif kind == KIND_HOLD and (len(legs) != 2 or legs[0][3] >= 0):
            raise self.fail(seq, "a hold moves one amount from one account to another")

    def _check_references(
        self, seq: int, kind: str, body: bytes, reverses: str | None, resolves: str | None
    ) -> None:
        # Only these few kinds are parsed: their meta names what they refer to.
        if kind in (KIND_HOLD_POST, KIND_HOLD_VOID):
            meta = deep_json.loads(body)["meta"]
            if resolves is None or meta.get("hold") != str(resolves):
                raise self.fail(seq, "hold reference differs from the hashed entry")
        if kind == KIND_REVERSAL:
            meta = deep_json.loads(body)["meta"]
            if reverses is None or meta.get("reverses") != str(reverses):
                raise self.fail(seq, "reversal reference differs from the hashed entry")

    def _apply_posted(self, seq: int, legs: Sequence[LegRow]) -> None:
        """Ordinary kinds, reversals and hold posts: each leg moves `posted`."""
        balances = self.balances
        for _s, account, _asset, amount, posted_after, pd_after, pc_after in legs:
            balance = balances.get(account)
            if balance is None:
                balance = balances[account] = BalanceState()
            balance.posted += amount
            if (
                posted_after != balance.posted
                or pd_after != balance.pending_debits
                or pc_after != balance.pending_credits
            ):
                raise self.fail(seq, f"running balance of {account} differs")

    def _apply_system(
        self, seq: int, kind: str, tx_id: str, resolves: str | None, legs: Sequence[LegRow]
    ) -> None:
        if kind in (KIND_HOLD_POST, KIND_HOLD_VOID):
            held = self.open_holds.pop(resolves or "", None)
            if held is None:
                raise self.fail(seq, "resolves a hold that is not pending")
            for leg in held:
                self._balance(leg[1]).reserve(leg[3], sign=-1)
            if kind == KIND_HOLD_VOID and [(h[1], h[3]) for h in held] != [
                (leg[1], leg[3]) for leg in legs
            ]:
                raise self.fail(seq, "a void's legs differ from the hold's")
            if kind == KIND_HOLD_POST and not _posts_within(held, legs):
                raise self.fail(seq, "a post moves other accounts or more than the hold")
        if kind in (KIND_REVERSAL, KIND_HOLD_POST):
            self._apply_posted(seq, legs)
            return
        if kind == KIND_HOLD:
            self.open_holds[tx_id] = list(legs)
        for _s, account, _asset, amount, posted_after, pd_after, pc_after in legs:
            balance = self._balance(account)
            if kind == KIND_HOLD:
                balance.reserve(amount)
            stored = (posted_after, pd_after, pc_after)
            if stored != (balance.posted, balance.pending_debits, balance.pending_credits):
                raise self.fail(seq, f"running balance of {account} differs")

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
    amount = legs[1][3]
    return (
        [leg[1] for leg in legs] == [h[1] for h in held]
        and legs[0][3] == -amount
        and 0 < amount <= held[1][3]
    )


@dataclass(frozen=True, slots=True)
class BookSummary:
    """What a verified book holds: its entries, head hash, accounts and open holds."""

    book: str
    entries: int
    head: str
    accounts: int
    open_holds: int


def summary(verifier: BookVerifier) -> BookSummary:
    """What a verified book holds."""
    return BookSummary(
        book=verifier.book,
        entries=verifier.seq,
        head=verifier.head_hash,
        accounts=len(verifier.balances),
        open_holds=len(verifier.open_holds),
    )
