"""Keyset pages: a list read with one row more than the page, and the cursor to go on."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Protocol, TypeVar


class Keyed(Protocol):
    """A row of a keyset page, ordered by its id."""

    @property
    def id(self) -> uuid.UUID: ...


K = TypeVar("K", bound=Keyed)


def keyset_split(rows: Sequence[K], limit: int) -> tuple[list[K], uuid.UUID | None]:
    """The page's items and the cursor to go on (None: the last page), from up to
    `limit + 1` rows ordered by id."""
    items = list(rows[:limit])
    return items, items[-1].id if len(rows) > limit and items else None
