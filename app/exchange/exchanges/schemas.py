"""Request and response bodies of quotes and exchanges."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, StrictBool, model_validator

from app.exchange.rules.schemas import Amount
from app.kit.schemas import InputModel
from app.ledger.schemas import AssetCode


class QuoteCreate(InputModel):
    member_id: UUID | None = Field(default=None, description="mini-programs: their member")
    amount: Amount = Field(description="in from_asset units")
    rule_id: UUID | None = None
    from_asset: AssetCode | None = None
    to_asset: AssetCode | None = None
    hardship: StrictBool = Field(
        default=False,
        description="the organisation or admin asking attests the member's hardship "
        "(min_age_hardship applies)",
    )

    @model_validator(mode="after")
    def _rule_or_pair(self) -> QuoteCreate:
        if self.rule_id is None and (self.from_asset is None or self.to_asset is None):
            raise ValueError("give rule_id, or from_asset and to_asset")
        return self


class RuleRef(BaseModel):
    id: UUID
    code: str
    version: int
    hash: str


class AssetAmount(BaseModel):
    asset: str
    amount: int


class QuoteRead(BaseModel):
    id: UUID
    member_id: UUID
    book: str
    rule: RuleRef
    give: AssetAmount = Field(description="what the member gives")
    receive: AssetAmount = Field(description="what the member receives")
    conditions: list[dict[str, Any]] = Field(description="the rule's conditions that passed")
    expires_at: datetime
    status: Literal["open", "expired", "void", "executed"] = Field(
        description="void: its rule was retired before it executed"
    )
    tx_id: UUID | None
    executed_at: datetime | None


class ExchangeCreate(InputModel):
    quote_id: UUID


class ExchangeRead(BaseModel):
    quote: QuoteRead
    entry: dict[str, Any] = Field(description="the journal entry, as a posting answers it")
