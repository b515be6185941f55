"""Request and response bodies of asset policies, gifts and the public time pool."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, StrictInt

from app.kit.schemas import MAX_SAFE_INTEGER, InputModel, NoPersonalData, PositiveAmount
from app.ledger.schemas import AssetCode, BookCode, LegRead

Label = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z_]{0,31}$",
        examples=["parent"],
        description="a relationship label, e.g. parent, child, spouse, grandparent, sibling",
    ),
]
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


def _distinct_sorted(labels: list[str]) -> list[str]:
    return sorted(set(labels))


class PolicyWrite(InputModel):
    """The whole policy of a book for an asset (a field left out is null: no limit)."""

    storage_cap: Annotated[StrictInt, Field(ge=1, le=MAX_SAFE_INTEGER)] | None = Field(
        default=None, description="most a member's account may hold; null: no cap"
    )
    gift_yearly_cap: Annotated[StrictInt, Field(ge=0, le=MAX_SAFE_INTEGER)] | None = Field(
        default=None, description="most a member may give per calendar year; null: no cap"
    )
    gift_relations: (
        Annotated[list[Label], Field(min_length=1, max_length=32), AfterValidator(_distinct_sorted)]
        | None
    ) = Field(
        default=None,
        description="the relationships a gift must name one of (stored sorted, without "
        "repeats); null: any relationship or none",
    )


class PolicyRead(BaseModel):
    book: str
    asset: str
    storage_cap: int | None
    gift_yearly_cap: int | None
    gift_relations: list[str] | None
    updated_at: datetime


class PolicyList(BaseModel):
    book: str
    items: list[PolicyRead]


class Overflow(BaseModel):
    account: UUID = Field(description="the capped account")
    amount: int = Field(description="what went to the public time pool instead")
    cap: int


class EntryRef(BaseModel):
    """The journal entry a posting appended."""

    tx_id: UUID
    seq: int
    kind: str
    posted_at: str
    entry_hash: str
    legs: list[LegRead]
    overflow: list[Overflow] | None = Field(description="meta.overflow: what storage caps diverted")


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


class DonationCreate(InputModel):
    member_id: UUID | None = Field(
        default=None, description="the donor (a mini-program: its member, may be left out)"
    )
    asset: AssetCode = "HOUR"
    amount: PositiveAmount


class DonationRead(BaseModel):
    id: UUID
    book: str
    member_id: UUID
    asset: str
    amount: int


class DonationPosted(BaseModel):
    donation: DonationRead
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
