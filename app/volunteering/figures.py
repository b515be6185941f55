"""How proofs and statistics state hours and periods (pure)."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from app.kit.problems import ValidationFailed

_CENT = Decimal("0.01")


def hours(minutes: int) -> str:
    """Minutes as hours with two decimals, rounded half up: 750 -> "12.50", 10 -> "0.17"."""
    return str((Decimal(minutes) / 60).quantize(_CENT, rounding=ROUND_HALF_UP))


def check_period(day_from: date | None, day_to: date | None) -> None:
    """Refuse (422) a period of service days that ends before it starts."""
    if day_from is not None and day_to is not None and day_from > day_to:
        raise ValidationFailed(
            f"the period is empty: from {day_from} is after to {day_to}",
            errors=[
                {
                    "field": "query/from",
                    "message": "must not be after `to`",
                    "code": "period_reversed",
                },
                {
                    "field": "query/to",
                    "message": "must not be before `from`",
                    "code": "period_reversed",
                },
            ],
        )
