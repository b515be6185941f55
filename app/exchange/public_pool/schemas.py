"""Request and response bodies of the public time pool: donations, grants, the pool's state."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from app.exchange.schemas import EntryRef
from app.kit.schemas import InputModel, NoPersonalData, PositiveAmount
from app.ledger.schemas import AssetCode

Reason = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        pattern=r"\S",
        description="why the member is granted hours; no names, phone or ID numbers",
    ),
    NoPersonalData,
]


class PublicPoolDonationCreate(InputModel):
    # Published as "DonationCreate" (app/exchange/component_names.py).
    model_config = ConfigDict(title="DonationCreate")

    member_id: UUID | None = Field(
        default=None, description="the donor (a mini-program: its member, may be left out)"
    )
    asset: AssetCode = "HOUR"
    amount: PositiveAmount


class PublicPoolDonationRead(BaseModel):
    # Published as "DonationRead" (app/exchange/component_names.py).
    model_config = ConfigDict(title="DonationRead")

    id: UUID
    book: str
    member_id: UUID
    asset: str
    amount: int


class DonationPosted(BaseModel):
    donation: PublicPoolDonationRead
    entry: EntryRef


class GrantCreate(InputModel):
    member_id: UUID
    asset: AssetCode = "HOUR"
    amount: PositiveAmount
    reason: Reason


class GrantRead(BaseModel):
    id: UUID
    book: str
    member_id: UUID
    asset: str
    amount: int = Field(description="what the pool granted")
    received: int = Field(description="what the member's account was credited")
    overflow: int = Field(description="what the member's storage cap returned to the pool")
    reason: str


class GrantPosted(BaseModel):
    grant: GrantRead
    entry: EntryRef


class PoolEntry(BaseModel):
    tx_id: UUID
    seq: int
    kind: str
    posted_at: datetime
    amount: int = Field(description="the entry's net effect on the pool")
    posted_after: int = Field(description="the pool's posted balance after the entry")


class PublicPool(BaseModel):
    asset: str
    account_id: UUID
    posted: int
    available: int
    recent: list[PoolEntry] = Field(description="the pool's latest entries, newest first")


class PublicPools(BaseModel):
    book: str
    pools: list[PublicPool]
