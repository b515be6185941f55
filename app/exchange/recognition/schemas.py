"""Request and response bodies of mutual recognition between books (通存通兑)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from app.kit.schemas import InputModel
from app.ledger.journal import MAX_SAFE_INTEGER
from app.ledger.schemas import AssetCode, BookCode

Amount = Annotated[StrictInt, Field(ge=1, le=MAX_SAFE_INTEGER)]
RatioTerm = Annotated[StrictInt, Field(ge=1, le=1_000_000)]


class AgreementCreate(InputModel):
    """`to_book` accepts `from_asset` of `from_book` as `to_asset`, at ratio_num/ratio_den."""

    from_book: BookCode
    from_asset: AssetCode = "HOUR"
    to_book: BookCode
    to_asset: AssetCode = "HOUR"
    ratio_num: RatioTerm = Field(default=1, description="to = floor(from × num / den)")
    ratio_den: RatioTerm = 1

    @model_validator(mode="after")
    def _two_books(self) -> AgreementCreate:
        if self.from_book == self.to_book:
            raise ValueError("from_book and to_book must differ")
        return self


class Ratio(BaseModel):
    num: int
    den: int


class AgreementRead(BaseModel):
    id: UUID
    from_book: str
    from_asset: str
    to_book: str
    to_asset: str
    ratio: Ratio
    status: Literal["active", "ended"]
    created_by: UUID
    created_at: datetime
    ended_at: datetime | None


class AgreementPage(BaseModel):
    items: list[AgreementRead]
    next_after: UUID | None = Field(description="pass as `after` for the next page")


class TransferCreate(InputModel):
    agreement_id: UUID
    member_id: UUID | None = Field(
        default=None, description="required of admins; a mini-program moves its own member's"
    )
    amount: Amount = Field(description="in the agreement's from_asset units (HOUR: minutes)")


class LinkedEntry(BaseModel):
    """Where one of the transfer's two entries sits in its book's chain."""

    # Published as "EntryRef" (app/exchange/component_names.py).
    model_config = ConfigDict(title="EntryRef")

    book: str
    seq: int
    tx_id: UUID
    entry_hash: str


class TransferRead(BaseModel):
    id: UUID
    agreement_id: UUID
    member_id: UUID
    from_book: str
    from_asset: str
    from_amount: int
    to_book: str
    to_asset: str
    to_amount: int = Field(description="floor(from_amount × num / den)")
    ratio: Ratio
    credited: int = Field(description="what reached the member's account in to_book")
    overflow: int = Field(
        description="what the to_book's storage cap sent to its public time pool instead"
    )
    from_entry: LinkedEntry = Field(description="the `recognition.out` entry in from_book")
    to_entry: LinkedEntry = Field(description="the `recognition.in` entry in to_book")
    created_by: UUID
    created_at: datetime


class TransferPage(BaseModel):
    items: list[TransferRead]
    next_after: UUID | None = Field(description="pass as `after` for the next page")


class Clearing(BaseModel):
    """One book's clearing account for the other book, in one asset."""

    book: str
    asset: str | None
    account_id: UUID | None = Field(description="null if it was never opened")
    posted: int
    implied: int = Field(description="what the recognition entries of the journal put in it")


class Totals(BaseModel):
    transfers: int
    from_amount: int
    to_amount: int


class Flow(BaseModel):
    """Transfers in one direction for one asset pair."""

    from_book: str
    from_asset: str | None
    to_book: str
    to_asset: str | None
    journal: Totals = Field(description="re-derived from recognition.out / recognition.in")
    recorded: Totals = Field(description="from the recognition_transfers table")


class AssetPairReconciliation(BaseModel):
    a_asset: str | None
    b_asset: str | None
    a_clearing: Clearing = Field(description="book A's clearing account for book B")
    b_clearing: Clearing = Field(description="book B's clearing account for book A")
    a_to_b: Flow
    b_to_a: Flow
    mirrored: bool
    recorded_matches: bool


class Unmatched(BaseModel):
    book: str
    seq: int
    tx_id: UUID
    kind: str
    reason: str


class PairReconciliation(BaseModel):
    books: list[str] = Field(description="[A, B], A < B")
    assets: list[AssetPairReconciliation]
    unmatched: list[Unmatched] = Field(
        description="recognition entries of A or B that are not one half of a linked pair"
    )
    mirrored: bool
    recorded_matches: bool


class Head(BaseModel):
    seq: int
    entry_hash: str


class Reconciliation(BaseModel):
    heads: dict[str, Head] = Field(description="each book's head in the snapshot read")
    pairs: list[PairReconciliation]
    unplaced: list[Unmatched] = Field(
        description="recognition entries whose other book cannot be told at all"
    )
    mirrored: bool
    recorded_matches: bool
