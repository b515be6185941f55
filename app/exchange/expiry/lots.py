"""The lots of an account with a validity period (pure): derived from its posted movements in
journal order (`replay`):

- a credit is a lot earned at its entry's `posted_at`, or, for a service credit whose `meta`
  names its `service_day`, at the start of that day in the service time zone (if earlier);
- a debit takes from the oldest lots first (spending consumes the oldest first);
- a reversal undoes its transaction, lots included: reversing a credit takes from the lot that
  credit made first, and reversing a debit puts back the very lots it took, with their
  earning times;
- holds (`hold`, `hold.void`) move no lots; a `hold.post` is a debit like any other.

Units earned in calendar year Y (service time zone) lapse at the start of year Y + n + 1.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class Movement:
    """One posted entry's net amount on one account, in journal order."""

    tx_id: str
    posted_at: datetime
    amount: int
    reverses: str | None = None
    # When a credit's units were earned, if not when they were posted (a day of service).
    earned_at: datetime | None = None

    @property
    def earned(self) -> datetime:
        """When a credit's units count from: its earning time, never later than its posting."""
        if self.earned_at is None:
            return self.posted_at
        return min(self.earned_at, self.posted_at)


@dataclass(slots=True)
class Lot:
    """Units earned together: when, how many are left, and the entry that credited them."""

    earned_at: datetime
    amount: int
    origin: str
    order: int  # the crediting entry's place in the replay (ties of `earned_at`)

    @property
    def key(self) -> tuple[datetime, int]:
        return self.earned_at, self.order


@dataclass(slots=True)
class Lots:
    """An account's lots, oldest first, after replaying its movements."""

    held: list[Lot] = field(default_factory=list)
    # What a debit could not take from any lot (an account below zero); credits repay it first.
    debt: int = 0
    # The parts of lots each debit took, by its tx id (a reversal of the debit puts them back).
    taken: dict[str, list[Lot]] = field(default_factory=dict)
    _count: int = 0

    @property
    def balance(self) -> int:
        """What the replayed movements sum to."""
        return sum(lot.amount for lot in self.held) - self.debt

    def apply(self, movement: Movement) -> None:
        """Replay one movement."""
        self._count += 1
        if movement.amount > 0:
            self._credit(movement)
        elif movement.amount < 0:
            self._debit(movement)

    def _insert(self, lot: Lot) -> None:
        bisect.insort(self.held, lot, key=lambda held: held.key)

    def _credit(self, movement: Movement) -> None:
        left = movement.amount
        if movement.reverses is not None:
            for part in self.taken.pop(movement.reverses, []):
                restored = min(part.amount, left)
                if restored:
                    self._insert(Lot(part.earned_at, restored, part.origin, part.order))
                    left -= restored
        repaid = min(self.debt, left)
        self.debt -= repaid
        left -= repaid
        if left:
            self._insert(Lot(movement.earned, left, movement.tx_id, self._count))

    def _take(self, lot: Lot, wanted: int, parts: list[Lot]) -> int:
        taken = min(lot.amount, wanted)
        lot.amount -= taken
        parts.append(Lot(lot.earned_at, taken, lot.origin, lot.order))
        return taken

    def _debit(self, movement: Movement) -> None:
        wanted = -movement.amount
        parts: list[Lot] = []
        if movement.reverses is not None:
            for lot in self.held:
                if lot.origin == movement.reverses and wanted:
                    wanted -= self._take(lot, wanted, parts)
        for lot in self.held:
            if not wanted:
                break
            if lot.amount:
                wanted -= self._take(lot, wanted, parts)
        self.held = [lot for lot in self.held if lot.amount]
        self.debt += wanted
        self.taken.setdefault(movement.tx_id, []).extend(p for p in parts if p.amount)

    def remaining(self) -> list[Lot]:
        """The lots left once any debt is paid from the oldest (copies, oldest first)."""
        debt = self.debt
        left: list[Lot] = []
        for lot in self.held:
            paid = min(debt, lot.amount)
            debt -= paid
            if lot.amount > paid:
                left.append(Lot(lot.earned_at, lot.amount - paid, lot.origin, lot.order))
        return left


def replay(movements: Iterable[Movement]) -> Lots:
    """The lots an account's movements leave."""
    lots = Lots()
    for movement in movements:
        lots.apply(movement)
    return lots


def earned_year(earned_at: datetime, zone: ZoneInfo) -> int:
    """The calendar year (in `zone`) in which units were earned."""
    return earned_at.astimezone(zone).year


def lapses_on(earned_at: datetime, years: int, zone: ZoneInfo) -> date:
    """The first day on which units earned at `earned_at` are no longer valid."""
    return date(earned_year(earned_at, zone) + years + 1, 1, 1)


def _by_year(lots: Iterable[Lot], zone: ZoneInfo) -> list[tuple[int, int]]:
    grouped: dict[int, int] = {}
    for lot in lots:
        year = earned_year(lot.earned_at, zone)
        grouped[year] = grouped.get(year, 0) + lot.amount
    return sorted(grouped.items())


def lapsed(lots: Lots, years: int, zone: ZoneInfo, as_of: date) -> list[tuple[int, int]]:
    """(earned year, amount) of the units left that lapsed on or before `as_of`, oldest first."""
    return _by_year(
        (lot for lot in lots.remaining() if lapses_on(lot.earned_at, years, zone) <= as_of), zone
    )


def expiry_plan(
    lots: Lots, years: int, zone: ZoneInfo, as_of: date, available: int
) -> list[tuple[int, int]]:
    """What an expiry as of `as_of` takes, by earned year: the lapsed units left, oldest first,
    never more than `available` (a pending hold may reserve some)."""
    room = max(0, available)
    plan: list[tuple[int, int]] = []
    for year, amount in lapsed(lots, years, zone, as_of):
        taken = min(amount, room)
        if taken:
            plan.append((year, taken))
            room -= taken
    return plan


def upcoming(lots: Lots, years: int, zone: ZoneInfo, after: date) -> list[tuple[date, int]]:
    """(lapse date, amount) of the units left that lapse after `after`, soonest first."""
    grouped: dict[date, int] = {}
    for lot in lots.remaining():
        day = lapses_on(lot.earned_at, years, zone)
        if day > after:
            grouped[day] = grouped.get(day, 0) + lot.amount
    return sorted(grouped.items())
