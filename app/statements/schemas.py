"""The member history's answer: ledger lines with what each is about."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from app.ledger.schemas import AccountEntryRead

Topic = Literal[
    "service",
    "exchange",
    "redemption",
    "gift",
    "recognition",
    "public_pool",
    "expiry",
    "reversal",
    "hold",
    "other",
]


class Named(BaseModel):
    id: UUID
    name: str


class ProjectRef(BaseModel):
    id: UUID
    title: str | None = Field(description="null if the project is unknown to this service")
    organisation: Named | None


class RuleRef(BaseModel):
    id: UUID
    code: str
    version: int


class ItemLine(BaseModel):
    name: str
    quantity: int


class RedemptionRef(BaseModel):
    id: UUID
    status: Literal["pending", "confirmed", "cancelled", "expired"]
    site: Named | None
    items: list[ItemLine]


class EntryAbout(BaseModel):
    """What a line of history is about: a label in Chinese for a person, and the references
    it was made from for a program (absent ones are null)."""

    topic: Topic
    label: str = Field(
        description="one line in Simplified Chinese, e.g. 志愿服务：社区助老（阳光社工站）"
    )
    project: ProjectRef | None = None
    record_id: UUID | None = None
    rule: RuleRef | None = None
    redemption: RedemptionRef | None = None
    counterpart_book: str | None = Field(
        default=None, description="the other book of a transfer between books (通存通兑)"
    )
    gift_id: UUID | None = None
    relationship: str | None = None
    reason: str | None = Field(
        default=None, description="a public-pool grant's reason, or why a hold was voided"
    )
    reverses: UUID | None = Field(default=None, description="the tx_id a reversal undoes")
    memo: str | None = Field(default=None, description="the entry's memo, if it has one")


class MemberEntryRead(AccountEntryRead):
    about: EntryAbout


class MemberEntriesPage(BaseModel):
    items: list[MemberEntryRead]
    next_before_seq: int | None = Field(
        description="pass as before_seq to read the next (older) page; null at the end"
    )
