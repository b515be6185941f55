"""Shared pieces of request and response models."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt

from app.kit.canonical_json import canonical_bytes

MAX_SAFE_INTEGER = 2**53 - 1
MAX_META_BYTES = 4096


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


SignedAmount = Annotated[
    StrictInt, Field(ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER), AfterValidator(_non_zero)
]
PositiveAmount = Annotated[StrictInt, Field(ge=1, le=MAX_SAFE_INTEGER)]
Meta = Annotated[
    dict[str, Any],
    AfterValidator(_meta_fits),
    Field(description="A JSON object, at most 4 KiB as RFC 8785 JSON"),
]
Memo = Annotated[str, Field(max_length=1000)]
