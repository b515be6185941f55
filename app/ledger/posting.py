"""The ledger's rules applied to in-memory account state (pure: no I/O).

The sequencer reads the state a batch needs, applies each request here in order,
and writes what comes out. A request that breaks a rule raises and leaves the state untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from app.kit.clock import rfc3339_micro
from app.ledger import errors
from app.ledger.journal import (
    ACTOR_KEY,
    KIND_HOLD,
    KIND_HOLD_POST,
    KIND_HOLD_VOID,
    KIND_REVERSAL,
    BalanceState,
    Leg,
    unbalanced_assets,
)

Action = Literal["post", "hold", "hold_post", "hold_void", "reversal"]


@dataclass(slots=True)
class AccountState:
    """An account as locked by the batch."""

    id: str
    book: str
    asset: str
    status: str
    overdraft_limit: int
    balance: BalanceState
    last_seq: int

    def copy(self) -> AccountState:
        """A copy whose balance can change without touching this one."""
        b = self.balance
        return AccountState(
            self.id,
            self.book,
            self.asset,
            self.status,
            self.overdraft_limit,
            BalanceState(b.posted, b.pending_debits, b.pending_credits),
            self.last_seq,
        )


@dataclass(slots=True)
class HoldState:
    """A hold as locked by the batch."""

    id: str
    book: str
    from_account_id: str
    to_account_id: str
    asset: str
    amount: int
    expires_at: datetime
    status: str


@dataclass(slots=True)
class Draft:
    """What a caller asks the ledger to append, before it has a place in the chain."""

    book: str
    action: Action
    kind: str
    legs: list[tuple[str, int]] = field(default_factory=list)
    memo: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    hold_id: str | None = None
    post_amount: int | None = None
    expires_in_s: int | None = None
    reverses: str | None = None
    void_reason: str = "voided"
    # Who asked (opaque ids), recorded in the entry's meta so the chain proves it.
    actor: dict[str, str] | None = None
    # Storage caps (account id -> most it may hold): what a credit would carry beyond a cap
    # goes to `overflow_to` (a book's public time pool) in the same entry, as a leg of its own.
    storage_caps: dict[str, int] = field(default_factory=dict)
    overflow_to: str | None = None
    # Accounts of the legs the draft was computed from, with the last seq read of each: the
    # draft is refused (account-moved) if any of them has had an entry since.
    unmoved_since: dict[str, int] = field(default_factory=dict)
    # The account the action is for (a grant's, gift's or exchange's receiver): the draft is
    # refused (nothing-to-move) when, after storage caps, it would credit that account nothing.
    beneficiary: str | None = None


@dataclass(slots=True)
class Applied:
    """The outcome of one draft: the entry's legs and meta, and balances after each leg."""

    kind: str
    legs: list[Leg]
    meta: dict[str, Any]
    leg_balances: list[BalanceState]
    touched: dict[str, AccountState]
    new_hold: HoldState | None = None
    resolved_hold: tuple[str, str, int | None] | None = None  # (hold id, status, posted)


def _account(accounts: dict[str, AccountState], book: str, account_id: str) -> AccountState:
    state = accounts.get(account_id)
    if state is None:
        raise errors.UnknownAccount(f"account {account_id} does not exist", account_id=account_id)
    if state.book != book:
        raise errors.AccountNotInBook(
            f"account {account_id} belongs to book {state.book!r}, not {book!r}",
            account_id=account_id,
        )
    return state


def _require_open(state: AccountState) -> None:
    if state.status != "open":
        raise errors.AccountNotOpen(
            f"account {state.id} is {state.status}",
            account_id=state.id,
            account_status=state.status,
        )


def _check_limit(state: AccountState, before: AccountState) -> None:
    if state.balance.available + state.overdraft_limit < 0:
        # What the account has, as a client would show it: not what it would have had.
        raise errors.InsufficientFunds(
            f"account {state.id} would go below its limit",
            account_id=state.id,
            available=before.balance.available,
            overdraft_limit=state.overdraft_limit,
        )


def _hold_legs(hold: HoldState, amount: int) -> list[Leg]:
    return [
        Leg(hold.from_account_id, hold.asset, -amount),
        Leg(hold.to_account_id, hold.asset, amount),
    ]


def _divert_overflow(
    draft: Draft,
    legs: list[Leg],
    work: Callable[[str], AccountState],
    meta: dict[str, Any],
) -> list[Leg]:
    """Cut each credit to a capped account at its cap; the rest goes to `overflow_to`."""
    held = {account_id: work(account_id).balance.posted for account_id in draft.storage_caps}
    kept: list[Leg] = []
    overflow: list[dict[str, Any]] = []
    for leg in legs:
        cap = draft.storage_caps.get(leg.account_id)
        if cap is None or leg.amount <= 0:
            kept.append(leg)
            continue
        room = max(0, cap - held[leg.account_id])
        credited = min(leg.amount, room)
        held[leg.account_id] += credited
        if credited:
            kept.append(Leg(leg.account_id, leg.asset, credited))
        if leg.amount > credited:
            overflow.append(
                {"account": leg.account_id, "amount": leg.amount - credited, "cap": cap}
            )
    if not overflow:
        return legs
    if draft.overflow_to is None:
        raise errors.ValidationFailed("a storage cap needs an account to take the overflow")
    pool = work(draft.overflow_to)
    _require_open(pool)
    for item in overflow:
        kept.append(Leg(pool.id, pool.asset, item["amount"]))
    meta["overflow"] = overflow
    return kept


def _require_movement(draft: Draft, legs: list[Leg]) -> None:
    """Refuse an entry whose legs, once caps have diverted what they would, change no
    account's balance, or leave the draft's beneficiary nothing."""
    net: dict[str, int] = {}
    for leg in legs:
        net[leg.account_id] = net.get(leg.account_id, 0) + leg.amount
    if draft.beneficiary is not None and net.get(draft.beneficiary, 0) <= 0:
        cap = draft.storage_caps.get(draft.beneficiary)
        if cap is None:
            raise errors.NothingToMove(
                f"account {draft.beneficiary} would receive nothing",
                account_id=draft.beneficiary,
            )
        raise errors.NothingToMove(
            f"account {draft.beneficiary} would receive nothing: it already holds its storage "
            f"cap of {cap}, and what it would receive would go to the public time pool",
            account_id=draft.beneficiary,
            storage_cap=cap,
        )
    if legs and not any(net.values()):
        raise errors.NothingToMove(
            "the entry's legs cancel out: it would change no account's balance"
        )


def apply_draft(
    draft: Draft,
    accounts: dict[str, AccountState],
    holds: dict[str, HoldState],
    now: datetime,
) -> Applied:
    """Check a draft against the rules and return its effect; `accounts` is not modified."""
    touched: dict[str, AccountState] = {}

    def work(account_id: str) -> AccountState:
        if account_id not in touched:
            touched[account_id] = _account(accounts, draft.book, account_id).copy()
        return touched[account_id]

    for account_id, read_seq in draft.unmoved_since.items():
        if _account(accounts, draft.book, account_id).last_seq != read_seq:
            raise errors.AccountMoved(
                f"account {account_id} has had an entry since seq {read_seq}",
                account_id=account_id,
            )
    meta = dict(draft.meta)
    kind = draft.kind
    new_hold: HoldState | None = None
    resolved: tuple[str, str, int | None] | None = None
    reserve = False

    if draft.action in ("post", "reversal", "hold"):
        legs = [Leg(a, work(a).asset, amount) for a, amount in draft.legs]
        for leg in legs:
            _require_open(work(leg.account_id))
        if draft.action == "reversal":
            kind, meta = KIND_REVERSAL, {"reverses": draft.reverses}
        if draft.action == "hold":
            kind, reserve = KIND_HOLD, True
            if draft.expires_in_s is None:
                raise errors.ValidationFailed("a hold needs expires_in")
            expires_at = now + timedelta(seconds=draft.expires_in_s)
            meta["expires_at"] = rfc3339_micro(expires_at)
            (src, _), (dst, amount) = draft.legs
            new_hold = HoldState(
                "", draft.book, src, dst, work(src).asset, amount, expires_at, "pending"
            )
    else:
        hold = holds.get(draft.hold_id or "")
        if hold is None or hold.book != draft.book:
            raise errors.HoldNotFound(f"hold {draft.hold_id} not found")
        if hold.status != "pending":
            raise errors.HoldNotPending(f"hold {hold.id} is {hold.status}", hold_status=hold.status)
        release = _hold_legs(hold, hold.amount)
        meta = {"hold": hold.id}
        if draft.action == "hold_post":
            amount = hold.amount if draft.post_amount is None else draft.post_amount
            if amount > hold.amount:
                raise errors.HoldAmountExceeded(
                    f"hold {hold.id} reserves {hold.amount}, {amount} asked", held=hold.amount
                )
            if now >= hold.expires_at:
                raise errors.HoldExpired(f"hold {hold.id} expired")
            kind, legs = KIND_HOLD_POST, _hold_legs(hold, amount)
            for leg in legs:
                _require_open(work(leg.account_id))
            resolved = (hold.id, "posted", amount)
        else:
            kind, legs = KIND_HOLD_VOID, release
            meta["reason"] = draft.void_reason
            resolved = (hold.id, "expired" if draft.void_reason == "expired" else "voided", None)
        for leg in release:
            work(leg.account_id).balance.reserve(leg.amount, sign=-1)

    if draft.storage_caps and draft.action == "post":
        legs = _divert_overflow(draft, legs, work, meta)
    if draft.action in ("post", "reversal"):
        _require_movement(draft, legs)
    if draft.actor is not None:
        meta[ACTOR_KEY] = draft.actor
    unbalanced = unbalanced_assets(legs)
    if unbalanced:
        raise errors.UnbalancedLegs(
            f"legs do not balance: {unbalanced}", sums=dict(sorted(unbalanced.items()))
        )

    leg_balances: list[BalanceState] = []
    for leg in legs:
        state = work(leg.account_id)
        if kind == KIND_HOLD_VOID:
            pass  # the release was applied above
        elif reserve:
            state.balance.reserve(leg.amount)
        else:
            state.balance.posted += leg.amount
        b = state.balance
        leg_balances.append(BalanceState(b.posted, b.pending_debits, b.pending_credits))
    # Only an account this entry takes from can break its policy.
    for state in touched.values():
        before = accounts[state.id]
        if state.balance.available < before.balance.available:
            _check_limit(state, before)
    return Applied(kind, legs, meta, leg_balances, touched, new_hold, resolved)
