"""The journal's rules checked on entry objects alone (pure), for the offline export verifier.

docs/ledger-format.md §2 (shape) and §5–§6 (kinds, holds, reversals, balances), as
`scripts/verify-export` checks them. That script stays independent of this package on purpose
(it is the format's reference verifier, written from the document); this module follows it
rule for rule so that `timebank audit verify` refuses what it refuses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

MAX_SAFE_INTEGER = 2**53 - 1
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HASH_RE = re.compile(r"[0-9a-f]{64}")
# ASCII digits only (RFC 3339): `\d` alone matches any script's digits, whose strings do not
# sort as their times (the rules compare timestamps as strings) and no browser reads them.
TIMESTAMP_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{6})Z", re.ASCII)
BOOK_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
ASSET_RE = re.compile(r"[A-Z][A-Z0-9_]{0,15}")
KIND_RE = re.compile(r"[a-z][a-z0-9_]{0,31}(\.[a-z0-9_]{1,31}){0,3}")
ENTRY_MEMBERS = frozenset(
    ("book", "seq", "tx_id", "kind", "posted_at", "legs", "memo", "meta", "prev_hash")
)
LEG_MEMBERS = frozenset(("account_id", "asset", "amount"))
HOLD, HOLD_POST, HOLD_VOID, REVERSAL = "hold", "hold.post", "hold.void", "reversal"
SYSTEM_KINDS = frozenset((HOLD, HOLD_POST, HOLD_VOID, REVERSAL))
RESERVED_ROOTS = frozenset(("hold", "reversal", "notice"))
# One half of a linked pair of entries in two books (§6.10): not reversible alone (§6.5).
LINKED_KINDS = frozenset(("recognition.out", "recognition.in"))
ACTOR = "actor"
VOID_REASONS = frozenset(("voided", "expired"))

Leg = tuple[str, str, int]


class RuleError(Exception):
    """An entry breaks a rule; `seq` is the entry to blame."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(reason)
        self.seq, self.reason = seq, reason


def parse_timestamp(value: Any) -> datetime | None:
    """The moment of a `YYYY-MM-DDTHH:MM:SS.ffffffZ` string, or None if it is not one."""
    if type(value) is not str:
        return None
    if TIMESTAMP_RE.fullmatch(value) is None:
        return None
    try:
        # The C parser reads every string of the pattern as its fields say.
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _unsafe_integer(value: Any) -> bool:
    """Whether an integer anywhere in `value` is outside ±(2^53-1) (explicit stack: a meta
    may nest to any depth)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is int:
            if abs(item) > MAX_SAFE_INTEGER:
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _text(value: Any, pattern: re.Pattern[str]) -> bool:
    return type(value) is str and pattern.fullmatch(value) is not None


def check_shape(entry: Any, seq: int) -> None:
    """Raise RuleError unless `entry` has exactly the members, types and formats of §2."""
    if not _plain_shape(entry):
        _shape_error(entry, seq)
    if _unsafe_integer(entry["meta"]):
        raise RuleError(seq, "meta holds an integer outside ±(2^53-1)")
    actor = entry["meta"].get(ACTOR)
    if actor is not None and not (
        isinstance(actor, dict)
        and "credential" in actor
        and set(actor) <= {"credential", "member"}
        and all(_text(v, UUID_RE) for v in actor.values())
    ):
        raise RuleError(seq, "meta.actor must be {credential[, member]} with lowercase UUIDs")


# Strings that matched the pattern of their member: an export repeats its book, kinds, assets
# and accounts on most lines, and looking one up costs a tenth of a match. Bounded, since a
# book's accounts are many.
_BOOKS: set[str] = set()
_KINDS: set[str] = set()
_ASSETS: set[str] = set()
_ACCOUNTS: set[str] = set()
_SEEN_MAX = 100_000


def _remember(seen: set[str], pattern: re.Pattern[str], text: str) -> bool:
    """Whether `text` matches `pattern`, kept in `seen` if it does."""
    if pattern.fullmatch(text) is None:
        return False
    if len(seen) >= _SEEN_MAX:
        seen.clear()
    seen.add(text)
    return True


def _plain_shape(entry: Any) -> bool:
    """Whether the members and legs are all right: the checks of `_shape_error` in one
    expression, which an export's verification runs once an entry (`_shape_error` says what
    is wrong only when something is)."""
    if not (
        isinstance(entry, dict)
        and entry.keys() == ENTRY_MEMBERS
        and type(book := entry["book"]) is str
        and (book in _BOOKS or _remember(_BOOKS, BOOK_RE, book))
        and type(seq := entry["seq"]) is int
        and seq >= 1
        and type(tx_id := entry["tx_id"]) is str
        and UUID_RE.fullmatch(tx_id) is not None
        and type(kind := entry["kind"]) is str
        and (kind in _KINDS or _remember(_KINDS, KIND_RE, kind))
        and type(entry["memo"]) is str
        and isinstance(entry["meta"], dict)
        and type(prev_hash := entry["prev_hash"]) is str
        and HASH_RE.fullmatch(prev_hash) is not None
        and isinstance(legs := entry["legs"], list)
        and parse_timestamp(entry["posted_at"]) is not None
    ):
        return False
    for leg in legs:
        if not (
            isinstance(leg, dict)
            and leg.keys() == LEG_MEMBERS
            and type(account_id := leg["account_id"]) is str
            and (account_id in _ACCOUNTS or _remember(_ACCOUNTS, UUID_RE, account_id))
            and type(asset := leg["asset"]) is str
            and (asset in _ASSETS or _remember(_ASSETS, ASSET_RE, asset))
            and type(amount := leg["amount"]) is int
            and 0 < abs(amount) <= MAX_SAFE_INTEGER
        ):
            return False
    return True


def _shape_error(entry: Any, seq: int) -> None:
    """Raise the RuleError of the first thing wrong with the members and legs."""
    if not isinstance(entry, dict) or set(entry) != ENTRY_MEMBERS:
        raise RuleError(seq, "the entry does not have exactly the nine members of the format")
    checks = (
        (_text(entry["book"], BOOK_RE), "book is not a book code"),
        (type(entry["seq"]) is int and entry["seq"] >= 1, "seq is not an integer >= 1"),
        (_text(entry["tx_id"], UUID_RE), "tx_id is not a lowercase UUID"),
        (_text(entry["kind"], KIND_RE), "kind does not match the kind pattern"),
        (parse_timestamp(entry["posted_at"]) is not None, "posted_at is not a UTC timestamp"),
        (type(entry["memo"]) is str, "memo is not a string"),
        (isinstance(entry["meta"], dict), "meta is not an object"),
        (_text(entry["prev_hash"], HASH_RE), "prev_hash is not 64 lowercase hex digits"),
        (isinstance(entry["legs"], list), "legs is not an array"),
    )
    for ok, reason in checks:
        if not ok:
            raise RuleError(seq, reason)
    for index, leg in enumerate(entry["legs"]):
        if not isinstance(leg, dict) or set(leg) != LEG_MEMBERS:
            raise RuleError(seq, f"leg {index} is not an object with account_id, asset, amount")
        amount = leg["amount"]
        if not (
            _text(leg["account_id"], UUID_RE)
            and _text(leg["asset"], ASSET_RE)
            and type(amount) is int
            and 0 < abs(amount) <= MAX_SAFE_INTEGER
        ):
            raise RuleError(seq, f"leg {index} has a bad account_id, asset or amount")
    raise AssertionError("_plain_shape refused a well-formed entry")  # pragma: no cover


def _moment(entry: dict[str, Any]) -> datetime:
    """The entry's posted_at as a moment (only holds compare it with another)."""
    posted_at = parse_timestamp(entry["posted_at"])
    if posted_at is None:
        raise RuleError(entry["seq"], "posted_at is not a UTC timestamp")
    return posted_at


@dataclass(slots=True)
class Balance:
    posted: int = 0
    pending_debits: int = 0
    pending_credits: int = 0

    def reserve(self, amount: int, sign: int) -> None:
        """Reserve (sign 1) or release (sign -1) one leg's amount."""
        if amount < 0:
            self.pending_debits += sign * -amount
        else:
            self.pending_credits += sign * amount


@dataclass(slots=True)
class _Hold:
    legs: list[Leg]
    expires_at: datetime
    resolved_at: int | None = None


@dataclass(slots=True)
class _Posted:
    legs: list[Leg]
    reversed_at: int | None = None


@dataclass
class LedgerRules:
    """Feed a book's entries from seq 1, in order, after their shape was checked."""

    tx_ids: set[str] = field(default_factory=set)
    last_posted_at: str = ""
    entries: dict[str, _Posted] = field(default_factory=dict)
    holds: dict[str, _Hold] = field(default_factory=dict)
    assets: dict[str, str] = field(default_factory=dict)
    balances: dict[str, Balance] = field(default_factory=dict)

    def apply(self, entry: dict[str, Any]) -> None:
        """Check one entry's kind rules and apply its effect on balances (§5, §6)."""
        seq, kind = entry["seq"], entry["kind"]
        if entry["tx_id"] in self.tx_ids:
            raise RuleError(seq, f"tx_id {entry['tx_id']} appeared before")
        if entry["posted_at"] < self.last_posted_at:  # fixed width: string order is time order
            raise RuleError(seq, "posted_at is earlier than the previous entry's")
        legs: list[Leg] = [(g["account_id"], g["asset"], g["amount"]) for g in entry["legs"]]
        root = kind.split(".", 1)[0]
        notice = root == "notice" and "." in kind
        if root in RESERVED_ROOTS and kind not in SYSTEM_KINDS and not notice:
            raise RuleError(seq, f"kind {kind!r} uses a reserved root but is not a defined kind")
        if notice == bool(legs):
            raise RuleError(seq, "a notice has no legs, every other entry has some")
        sums: dict[str, int] = {}
        for account_id, asset, amount in legs:
            if self.assets.setdefault(account_id, asset) != asset:
                raise RuleError(seq, f"account {account_id} holds another asset than {asset}")
            sums[asset] = sums.get(asset, 0) + amount
        if any(sums.values()):
            raise RuleError(seq, f"legs do not balance per asset: {sums}")
        if kind == HOLD:
            self._hold(entry, legs, _moment(entry))
            for account_id, _, amount in legs:
                self._balance(account_id).reserve(amount, 1)
        elif kind in (HOLD_POST, HOLD_VOID):
            hold = self._resolve(entry, legs, _moment(entry))
            for account_id, _, amount in hold.legs:
                self._balance(account_id).reserve(amount, -1)
            hold.resolved_at = seq
            if kind == HOLD_POST:
                self._post(legs)
        elif kind == REVERSAL:
            self._reversal(entry, legs)
            self._post(legs)
        elif not notice:
            self._post(legs)
            if kind not in LINKED_KINDS:
                self.entries[entry["tx_id"]] = _Posted(legs)
        if kind == HOLD_POST:
            self.entries[entry["tx_id"]] = _Posted(legs)
        self.tx_ids.add(entry["tx_id"])
        self.last_posted_at = entry["posted_at"]

    def _post(self, legs: list[Leg]) -> None:
        balances = self.balances
        for account_id, _, amount in legs:
            balance = balances.get(account_id)
            if balance is None:
                balance = balances[account_id] = Balance()
            balance.posted += amount

    def _balance(self, account_id: str) -> Balance:
        balance = self.balances.get(account_id)
        if balance is None:
            balance = self.balances[account_id] = Balance()
        return balance

    def _hold(self, entry: dict[str, Any], legs: list[Leg], posted_at: datetime) -> None:
        seq = entry["seq"]
        if len(legs) != 2 or not legs[0][2] < 0 < legs[1][2] or legs[0][0] == legs[1][0]:
            raise RuleError(seq, "a hold's legs must be [from, -amount], [to, +amount]")
        expires_at = parse_timestamp(entry["meta"].get("expires_at"))
        if expires_at is None or expires_at <= posted_at:
            raise RuleError(seq, "a hold's meta.expires_at is missing or not after posted_at")
        self.holds[entry["tx_id"]] = _Hold(legs, expires_at)

    def _resolve(self, entry: dict[str, Any], legs: list[Leg], posted_at: datetime) -> _Hold:
        seq, kind, meta = entry["seq"], entry["kind"], entry["meta"]
        wanted = {"hold"} if kind == HOLD_POST else {"hold", "reason"}
        if set(meta) - {ACTOR} != wanted:
            raise RuleError(seq, f"a {kind} entry's meta must have exactly {sorted(wanted)}")
        hold = self.holds.get(meta["hold"]) if type(meta["hold"]) is str else None
        if hold is None:
            raise RuleError(seq, f"meta.hold {meta['hold']} is not an earlier hold of this book")
        if hold.resolved_at is not None:
            at = hold.resolved_at
            raise RuleError(seq, f"hold {meta['hold']} was already resolved at seq {at}")
        if kind == HOLD_VOID:
            if meta["reason"] not in VOID_REASONS or legs != hold.legs:
                raise RuleError(seq, "a void's reason is unknown or its legs differ from the hold")
            return hold
        (source, asset, held), (target, _, _) = hold.legs
        if (
            len(legs) != 2
            or (legs[0][0], legs[1][0], legs[0][1]) != (source, target, asset)
            or not (legs[0][2] == -legs[1][2] and 0 < legs[1][2] <= -held)
        ):
            raise RuleError(seq, f"a hold.post does not move between 1 and the {-held} held")
        if posted_at >= hold.expires_at:
            raise RuleError(seq, f"hold {meta['hold']} was posted at or after its expires_at")
        return hold

    def _reversal(self, entry: dict[str, Any], legs: list[Leg]) -> None:
        seq, meta = entry["seq"], entry["meta"]
        if set(meta) - {ACTOR} != {"reverses"}:
            raise RuleError(seq, "a reversal's meta must have exactly the member 'reverses'")
        target = meta["reverses"]
        original = self.entries.get(target) if type(target) is str else None
        if original is None:
            raise RuleError(seq, f"meta.reverses {target} is not an earlier reversible entry")
        if original.reversed_at is not None:
            raise RuleError(seq, f"{target} was already reversed at seq {original.reversed_at}")
        if legs != [(a, asset, -amount) for a, asset, amount in original.legs]:
            raise RuleError(seq, f"a reversal's legs are not the negation of those of {target}")
        original.reversed_at = seq

    def finish(self, last_seq: int) -> dict[str, tuple[int, int]]:
        """Per asset, (posted total, pending total); both must be 0 (§5)."""
        totals: dict[str, list[int]] = {}
        for account_id, balance in self.balances.items():
            total = totals.setdefault(self.assets[account_id], [0, 0])
            total[0] += balance.posted
            total[1] += balance.pending_credits - balance.pending_debits
        for asset, (posted, pending) in sorted(totals.items()):
            if posted or pending:
                totals_text = f"posted {posted}, pending {pending}"
                raise RuleError(last_seq, f"asset {asset} totals {totals_text}")
        return {asset: (p, q) for asset, (p, q) in totals.items()}

    def open_holds(self) -> int:
        """How many holds are still pending."""
        return sum(1 for hold in self.holds.values() if hold.resolved_at is None)
