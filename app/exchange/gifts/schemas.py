"""Request and response bodies of gifts."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from app.exchange.policies.schemas import Label
from app.exchange.schemas import EntryRef
from app.kit.schemas import InputModel, PositiveAmount
from app.ledger.schemas import AssetCode, BookCode


class GiftCreate(InputModel):
    from_member_id: UUID | None = Field(
        default=None, description="the giver (a mini-program: its member, may be left out)"
    )
    to_member_id: UUID
    book: BookCode | None = Field(
        default=None,
        description="the book the gift is made in (default: the giver's own); a member who "
        "moved hours to another book gives there from their account in it",
    )
    asset: AssetCode = "HOUR"
    amount: PositiveAmount
    relationship: Label | None = Field(
        default=None, description="the receiver is the giver's …; required by some books"
    )


class GiftRead(BaseModel):
    id: UUID
    book: str
    from_member_id: UUID
    to_member_id: UUID
    asset: str
    amount: int = Field(description="what the giver gave")
    received: int = Field(description="what the receiver's account was credited")
    overflow: int = Field(description="what the receiver's storage cap sent to the public pool")
    relationship: str | None


class GiftPosted(BaseModel):
    gift: GiftRead
    entry: EntryRef


class GiftListItem(GiftRead):
    direction: Literal["given", "received"]
    tx_id: UUID
    seq: int
    posted_at: str


class GiftPage(BaseModel):
    items: list[GiftListItem]
    next_before_seq: int | None
