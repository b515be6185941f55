"""Shared pieces of request and response models."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StrictInt
from pydantic_core import PydanticCustomError

from app.kit.canonical_json import canonical_bytes
from app.kit.personal_text import (
    PERSONAL_DATA_CODE,
    PERSONAL_DATA_MESSAGE,
    holds_personal_data,
    personal_paths,
)

MAX_SAFE_INTEGER = 2**53 - 1
MAX_META_BYTES = 4096
# The dates and instants the service takes (README "Input policy"): PostgreSQL holds far more,
# Python's datetime only years 1-9999, and the service converts instants to local days
# (Asia/Shanghai, +08:00) and back, which overflows at either end of Python's range. Before
# 1900 time zones are local mean time (+08:05:43 in Shanghai); no member was born, and no
# service, rule or report falls, outside these years.
EARLIEST_DAY = date(1900, 1, 1)
LATEST_DAY = date(2999, 12, 31)
_EARLIEST_INSTANT = datetime(1900, 1, 1, tzinfo=UTC)
_END_INSTANT = datetime(3000, 1, 1, tzinfo=UTC)


class InputModel(BaseModel):
    """Base of every request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


def _non_zero(value: int) -> int:
    if value == 0:
        raise ValueError("amount must not be zero")
    return value


def _meta_fits(value: dict[str, Any]) -> dict[str, Any]:
    try:
        size = len(canonical_bytes(value))
    except Exception as exc:  # rfc8785 refuses NaN, infinities and unsafe integers
        raise ValueError(f"meta is not serialisable as RFC 8785 JSON: {exc}") from None
    if size > MAX_META_BYTES:
        raise ValueError(f"meta is {size} bytes as canonical JSON; at most {MAX_META_BYTES}")
    return value


def _day_in_range(value: date) -> date:
    if not EARLIEST_DAY <= value <= LATEST_DAY:
        raise PydanticCustomError(
            "date_out_of_range",
            "date must be between {earliest} and {latest}",
            {"earliest": EARLIEST_DAY.isoformat(), "latest": LATEST_DAY.isoformat()},
        )
    return value


def instant_in_range(value: datetime) -> bool:
    """Whether an aware instant lies in 1900-01-01..2999-12-31 UTC (its own year is checked
    first: an instant near year 1 or 9999 cannot even be moved to UTC)."""
    if not EARLIEST_DAY.year - 1 <= value.year <= LATEST_DAY.year + 1:
        return False
    return _EARLIEST_INSTANT <= value < _END_INSTANT


def _instant_in_range(value: datetime) -> datetime:
    # Compared as instants: 9999-12-31T23:59-08:00 is in year 10000 UTC.
    if not instant_in_range(value):
        raise PydanticCustomError(
            "datetime_out_of_range",
            "the instant must be between {earliest} and {latest} (UTC)",
            {"earliest": "1900-01-01T00:00:00Z", "latest": "2999-12-31T23:59:59.999999Z"},
        )
    return value


def _no_personal_data(value: str) -> str:
    if holds_personal_data(value):
        raise PydanticCustomError(PERSONAL_DATA_CODE, PERSONAL_DATA_MESSAGE, {"paths": [""]})
    return value


def _meta_without_personal_data(value: dict[str, Any]) -> dict[str, Any]:
    paths = personal_paths(value)
    if paths:
        raise PydanticCustomError(PERSONAL_DATA_CODE, PERSONAL_DATA_MESSAGE, {"paths": paths})
    return value


SignedAmount = Annotated[
    StrictInt, Field(ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER), AfterValidator(_non_zero)
]
PositiveAmount = Annotated[StrictInt, Field(ge=1, le=MAX_SAFE_INTEGER)]
Meta = Annotated[
    dict[str, Any],
    AfterValidator(_meta_fits),
    Field(description="A JSON object, at most 4 KiB as RFC 8785 JSON"),
]

Day = Annotated[
    date,
    AfterValidator(_day_in_range),
    Field(description="a calendar day from 1900-01-01 to 2999-12-31"),
]
"""A date in a body or a query: within 1900-01-01..2999-12-31."""
Instant = Annotated[
    AwareDatetime,
    AfterValidator(_instant_in_range),
    Field(description="RFC 3339 with an offset, from 1900-01-01 to 2999-12-31 (UTC)"),
]
"""A time in a body or a query: with an offset, its UTC instant within 1900..2999."""
NoPersonalData = AfterValidator(_no_personal_data)
"""The personal-data check of `JournalText`, to put after a `Field` whose `pattern` must stay
in the JSON schema (a pattern after a validator is checked but not documented)."""
JournalText = Annotated[str, NoPersonalData]
"""Free text bound for the journal (or a shared register): refused if it holds a phone or
resident ID number (`personal-data-in-text`). Add the length limits beside it."""
JournalMeta = Annotated[Meta, AfterValidator(_meta_without_personal_data)]
"""A posting's `meta`: no string in it (value or key, at any depth) holds personal data."""
Memo = Annotated[JournalText, Field(max_length=1000)]
