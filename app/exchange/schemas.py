"""What the routes of several exchange resources share: the book and asset in a path, and the
entry a posting appended as gifts and the public time pool answer it."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Path
from pydantic import BaseModel, Field

from app.ledger.schemas import AssetCode, BookCode, LegRead

BookPath = Annotated[BookCode, Path(description="the book's code")]
AssetPath = Annotated[AssetCode, Path(description="the asset's code")]


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
