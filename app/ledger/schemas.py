"""Request and response bodies of the ledger's HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, StrictInt, model_validator

from app.kit.canonical_json import canonical_bytes
from app.kit.schemas import (
    MAX_META_BYTES,
    MAX_SAFE_INTEGER,
    InputModel,
    JournalMeta,
    Memo,
    Meta,
    PositiveAmount,
    SignedAmount,
)
from app.ledger.journal import DOMAIN_KIND_ROUTES, LEDGER_META_KEYS

RESERVED_KINDS = ("hold", "reversal", "notice")


def _user_kind(value: str) -> str:
    root = value.split(".", 1)[0]
    if root in RESERVED_KINDS:
        raise ValueError(f"kind {value!r} is reserved; use the dedicated route")
    if root in DOMAIN_KIND_ROUTES:
        raise ValueError(f"kind {value!r} is posted only by {DOMAIN_KIND_ROUTES[root]}")
    return value


def _no_ledger_keys(value: dict[str, Any]) -> dict[str, Any]:
    for key in LEDGER_META_KEYS:
        if key in value:
            raise ValueError(f"meta key {key!r} is set by the ledger")
    return value


# An entry's meta: the caller's facts; the ledger adds who asked (`actor`) on top.
PostingMeta = Annotated[JournalMeta, AfterValidator(_no_ledger_keys)]

BookCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$", examples=["xh"])]
AssetCode = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,15}$", examples=["HOUR"])]
Kind = Annotated[
    str,
    Field(pattern=r"^[a-z][a-z0-9_]{0,31}(\.[a-z0-9_]{1,31}){0,3}$", examples=["transfer"]),
    AfterValidator(_user_kind),
]


class BookCreate(InputModel):
    code: BookCode
    name: Annotated[str, Field(min_length=1, max_length=200)]


class BookHead(BaseModel):
    seq: int
    entry_hash: str


class BookRead(BaseModel):
    code: str
    name: str
    created_at: datetime
    head: BookHead


class AccountCreate(InputModel):
    asset: AssetCode
    owner: Annotated[str, Field(min_length=1, max_length=200, examples=["system:issuance"])]
    overdraft_limit: Annotated[StrictInt, Field(ge=0, le=MAX_SAFE_INTEGER)] = 0
    meta: Meta = Field(default_factory=dict)


class AccountStatusUpdate(InputModel):
    status: Literal["open", "frozen", "closed"]


class AccountRead(BaseModel):
    id: UUID
    book: str
    asset: str
    owner: str
    status: str
    policy: Literal["no_overdraft", "overdraft_limit"]
    overdraft_limit: int
    posted: int
    pending: int = Field(description="pending credits less pending debits")
    pending_debits: int
    pending_credits: int
    available: int = Field(description="posted less pending debits")
    last_seq: int = Field(description="seq of the last entry that touched the account")
    as_of_seq: int | None = None
    meta: dict[str, Any]
    created_at: datetime


class LegIn(InputModel):
    account_id: UUID
    amount: SignedAmount


class TransactionCreate(InputModel):
    kind: Kind = "transfer"
    legs: Annotated[list[LegIn], Field(min_length=2, max_length=64)]
    memo: Memo = ""
    meta: PostingMeta = Field(default_factory=dict)


class HoldCreate(InputModel):
    from_account_id: UUID
    to_account_id: UUID
    amount: PositiveAmount
    expires_in: Annotated[StrictInt, Field(ge=1, le=30 * 24 * 3600)] = 120
    memo: Memo = ""
    meta: PostingMeta = Field(default_factory=dict)

    @model_validator(mode="after")
    def _distinct(self) -> HoldCreate:
        if self.from_account_id == self.to_account_id:
            raise ValueError("from_account_id and to_account_id must differ")
        if "expires_at" in self.meta:
            raise ValueError("meta key 'expires_at' is set by the ledger")
        # The ledger adds expires_at to meta: the entry's meta must still fit 4 KiB.
        stamped = {**self.meta, "expires_at": "2000-01-01T00:00:00.000000Z"}
        if len(canonical_bytes(stamped)) > MAX_META_BYTES:
            raise ValueError(f"meta with expires_at added exceeds {MAX_META_BYTES} bytes")
        return self


class HoldPost(InputModel):
    amount: PositiveAmount | None = None


class BalanceRead(BaseModel):
    account_id: UUID
    asset: str
    posted: int
    pending: int
    pending_debits: int
    pending_credits: int
    available: int


class LegRead(BaseModel):
    account_id: UUID
    asset: str
    amount: int


class EntryRead(BaseModel):
    """A journal entry exactly as hashed (see docs/ledger-format.md)."""

    book: str
    seq: int
    tx_id: UUID
    kind: str
    posted_at: str
    legs: list[LegRead]
    memo: str
    meta: dict[str, Any]
    prev_hash: str


class PostingRead(BaseModel):
    id: UUID
    book: str
    seq: int
    kind: str
    status: Literal["posted", "pending", "voided"]
    entry: EntryRead
    entry_hash: str
    balances: list[BalanceRead]
    receipt: str | None = Field(
        default=None,
        description="the entry's signed receipt, a JWS (docs/audit-format.md §6); absent when "
        "receipts are turned off",
    )


class HoldRead(BaseModel):
    id: UUID
    book: str
    seq: int
    status: Literal["pending", "posted", "voided", "expired"]
    from_account_id: UUID
    to_account_id: UUID
    asset: str
    amount: int
    expires_at: datetime
    resolved_by: UUID | None
    posted_amount: int | None


class AccountEntryRead(BaseModel):
    seq: int
    leg_index: int
    tx_id: UUID
    kind: str
    posted_at: datetime
    account_id: UUID
    asset: str
    amount: int
    posted_after: int
    pending_debits_after: int
    pending_credits_after: int
    available_after: int


class AccountEntriesPage(BaseModel):
    items: list[AccountEntryRead]
    next_before_seq: int | None = Field(
        description="pass as before_seq to read the next (older) page; null at the end"
    )
