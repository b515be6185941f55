"""Keyset pages: a list read with one row more than the page, and the cursor to go on."""

from __future__ import annotations

from typing import Any


def keyset_page(rows: list[dict[str, Any]], limit: int, key: str = "id") -> dict[str, Any]:
    """`{"items", "next_after"}` from up to `limit + 1` rows ordered by `key`."""
    items = rows[:limit]
    more = len(rows) > limit
    return {"items": items, "next_after": items[-1][key] if more and items else None}
