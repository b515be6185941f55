"""Request and response bodies of pools and donations."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from app.kit.schemas import InputModel, PositiveAmount
from app.ledger.schemas import AssetCode


class PoolOpen(InputModel):
    asset: AssetCode


class PoolRead(BaseModel):
    organisation_id: UUID
    book: str
    asset: str
    account_id: UUID
    posted: int
    available: int


class Donor(InputModel):
    """Who gave: kept encrypted outside the journal, shown to admins and the organisation."""

    kind: Literal["person", "organisation"] = "person"
    name: Annotated[str, Field(min_length=1, max_length=200)]
    contact: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class DonationCreate(InputModel):
    asset: AssetCode = "POINT"
    amount: PositiveAmount
    donor: Donor


class DonationRead(BaseModel):
    id: UUID
    book: str
    organisation_id: UUID
    pool_account_id: UUID
    asset: str
    amount: int
    donor: dict[str, Any] | None = Field(description="null when the caller may not see it")
    tx_id: UUID | None
    created_at: datetime
