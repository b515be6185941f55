"""What an amount of one asset is worth in another at a ratio (exchange rules, recognition
agreements)."""

from __future__ import annotations


def convert(amount: int, num: int, den: int) -> int:
    """What `amount` converts to at num/den, rounded down: rounding never creates value."""
    return amount * num // den
