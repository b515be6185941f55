"""Request and response bodies of the kiosk's HTTP API (docs/kiosk.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, Field, StrictInt

from app.kit.schemas import MAX_SAFE_INTEGER, InputModel, PositiveAmount
from app.ledger.schemas import AssetCode

ItemName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"\S", examples=["大米 5kg"])]
Stock = Annotated[StrictInt, Field(ge=0, le=MAX_SAFE_INTEGER)]
Why = Annotated[
    str,
    Field(min_length=1, max_length=200, pattern=r"\S", description="why the stock changed"),
]
ItemStatus = Literal["active", "inactive"]
RedemptionStatus = Literal["pending", "confirmed", "cancelled", "expired"]


class SiteRead(BaseModel):
    site_id: UUID
    book: str
    name: str


class ItemCreate(InputModel):
    name: ItemName
    asset: AssetCode = "POINT"
    price: PositiveAmount = Field(description="in the asset's units, per piece")
    stock: Stock | None = Field(description="pieces on hand; null: unlimited")
    status: ItemStatus = "active"


class ItemUpdate(InputModel):
    name: ItemName | None = None
    price: PositiveAmount | None = None
    status: ItemStatus | None = None


class ItemRead(BaseModel):
    id: UUID
    site_id: UUID
    book: str
    name: str
    asset: str
    price: int
    stock: int | None = Field(description="on hand; null: unlimited")
    reserved: int = Field(description="held back by pending redemptions")
    available: int | None = Field(description="stock - reserved; null: unlimited")
    status: ItemStatus
    created_at: datetime
    updated_at: datetime


class ItemList(BaseModel):
    items: list[ItemRead]


class StockChange(InputModel):
    kind: Literal["restock", "correction"]
    delta: Annotated[StrictInt, Field(ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER)] = Field(
        description="pieces added (a restock: > 0) or removed (a correction may be < 0)"
    )
    reason: Why


class StockMoveRead(BaseModel):
    id: UUID
    item_id: UUID
    kind: str
    delta: int
    stock_after: int | None
    reason: str
    redemption_id: UUID | None
    created_by: UUID
    created_at: datetime


class StockChanged(BaseModel):
    item: ItemRead
    move: StockMoveRead


class RedeemCodeRead(BaseModel):
    code: str = Field(description="single use; show it as a QR code (alphanumeric mode)")
    member_id: UUID
    expires_at: datetime


class BasketLine(InputModel):
    item_id: UUID
    quantity: Annotated[StrictInt, Field(ge=1, le=1000)]


class PairingCodeRead(BaseModel):
    code: str = Field(description="8 characters; typed (or scanned) once at the kiosk")
    site_id: UUID
    expires_at: datetime


class Pairing(InputModel):
    code: Annotated[str, Field(min_length=1, max_length=40)] = Field(
        description="the pairing code an admin or the site's organisation was given"
    )
    name: Annotated[str, Field(max_length=200)] = Field(
        default="", description="what to call the kiosk's credential (e.g. 收银台 1)"
    )


class CodeCheck(InputModel):
    code: Annotated[str, Field(min_length=1, max_length=100)] = Field(
        description="the member's redeem code, as scanned (not used by the check)"
    )


class PointsAvailable(BaseModel):
    asset: str
    available: int = Field(description="what the member can spend now: posted less held")


class CodeCheckRead(BaseModel):
    member_id: UUID
    volunteer_number: str
    expires_at: datetime = Field(description="when the code stops working")
    points: list[PointsAvailable] = Field(
        description="the member's balances in the kiosk's book, in the assets it sells"
    )


class RedemptionCreate(InputModel):
    code: Annotated[str, Field(min_length=1, max_length=100)] = Field(
        description="the member's redeem code, as scanned"
    )
    member_id: UUID | None = Field(
        default=None, description="if the kiosk knows the member, the code must be theirs"
    )
    items: Annotated[list[BasketLine], Field(min_length=1, max_length=50)]


class RedemptionLine(BaseModel):
    item_id: UUID
    name: str
    quantity: int
    price: int
    amount: int


class RedemptionRead(BaseModel):
    id: UUID
    site_id: UUID
    book: str
    member_id: UUID
    asset: str
    total: int
    lines: list[RedemptionLine]
    hold_id: UUID
    status: RedemptionStatus
    expires_at: datetime
    tx_id: UUID | None = Field(description="the hold.post (confirmed) or hold.void entry")
    created_at: datetime
    resolved_at: datetime | None


class RedemptionList(BaseModel):
    items: list[RedemptionRead]


class RedemptionConfirmed(BaseModel):
    redemption: RedemptionRead
    receipt: str = Field(description="the signed receipt of the hold.post entry (JWS)")
    book: str
    seq: int
    tx_id: UUID
    entry_hash: str


class RedemptionSettled(BaseModel):
    redemption: RedemptionRead
