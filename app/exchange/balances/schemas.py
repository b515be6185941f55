"""Response bodies of a member's balances across assets and books."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from pydantic import BaseModel, Field


class Expiry(BaseModel):
    lapses_on: date = Field(description="the first day (service time zone) the units are gone")
    amount: int


class MemberBalance(BaseModel):
    asset: str
    account_id: UUID
    posted: int
    pending: int
    available: int
    book: str = Field(
        description="the account's book (the member's own, or another after a transfer)"
    )
    expiries: list[Expiry] = Field(
        description="upcoming lapses of the units left, soonest first (empty for an asset "
        "without a validity period)"
    )


class MemberBalances(BaseModel):
    member_id: UUID
    balances: list[MemberBalance]
