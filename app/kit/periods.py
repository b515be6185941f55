"""A half-open period [start, end) of a timestamp column as a SQL condition, either bound
optional; the bounds travel as parameters, never in the SQL text."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def period_condition(
    column: str, start: datetime | None, end: datetime | None, params: dict[str, Any]
) -> str:
    """` AND column >= :start AND column < :end` for the bounds given (each put in `params`);
    `column` is the query's own fixed expression, never input."""
    condition = ""
    if start is not None:
        condition += f" AND {column} >= :start"
        params["start"] = start
    if end is not None:
        condition += f" AND {column} < :end"
        params["end"] = end
    return condition
