"""Request and response bodies of exchange rules."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, StrictInt, model_validator

from app.kit.schemas import InputModel, Instant, JournalText
from app.ledger.journal import MAX_SAFE_INTEGER
from app.ledger.schemas import AssetCode, BookCode

Amount = Annotated[StrictInt, Field(ge=1, le=MAX_SAFE_INTEGER)]
RatioTerm = Annotated[StrictInt, Field(ge=1, le=1_000_000)]
RuleCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$", examples=["sh-hour-point"])]
Age = Annotated[StrictInt, Field(ge=0, le=150)]


class Ratio(InputModel):
    num: RatioTerm = 1
    den: RatioTerm = 1


class Caps(InputModel):
    day: Amount | None = None
    month: Amount | None = None
    year: Amount | None = None


class Conditions(InputModel):
    min_age: Age | None = Field(default=None, description="e.g. 65: redeem from that age")
    min_age_hardship: Age | None = Field(
        default=None, description="e.g. 60: the lower age for a member in hardship"
    )
    min_certified_minutes: Annotated[StrictInt, Field(ge=1, le=MAX_SAFE_INTEGER)] | None = Field(
        default=None, description="certified service needed before a member's first exchange"
    )
    step: Amount | None = Field(default=None, description="amounts in whole steps, e.g. 30")

    @model_validator(mode="after")
    def _hardship_below(self) -> Conditions:
        if self.min_age_hardship is not None and (
            self.min_age is None or self.min_age_hardship > self.min_age
        ):
            raise ValueError("min_age_hardship needs a min_age at least as high")
        return self


class RulePool(InputModel):
    book: BookCode
    organisation_id: UUID = Field(description="its `pool` accounts take and pay")


class RuleCreate(InputModel):
    code: RuleCode = Field(
        description="a new code starts at version 1; publishing an existing one replaces it"
    )
    from_asset: AssetCode
    to_asset: AssetCode
    ratio: Ratio = Field(description="to = floor(from × num / den)")
    min_amount: Amount = 1
    max_amount: Amount | None = None
    caps: Caps = Field(default_factory=Caps, description="per member, in from_asset units")
    valid_from: Instant | None = Field(default=None, description="default: now")
    valid_until: Instant | None = None
    pools: Annotated[list[RulePool], Field(min_length=1, max_length=50)]
    organisations: Annotated[list[UUID], Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="only members of these organisations (default: any member)"
    )
    conditions: Conditions = Field(default_factory=Conditions)

    @model_validator(mode="after")
    def _coherent(self) -> RuleCreate:
        if self.from_asset == self.to_asset:
            raise ValueError("from_asset and to_asset must differ")
        if self.max_amount is not None and self.max_amount < self.min_amount:
            raise ValueError("max_amount is below min_amount")
        if len({p.book for p in self.pools}) != len(self.pools):
            raise ValueError("one pool per book")
        if (
            self.valid_from is not None
            and self.valid_until is not None
            and self.valid_until <= self.valid_from
        ):
            raise ValueError("valid_until must be after valid_from")
        return self


class RuleRetire(InputModel):
    reason: Annotated[JournalText, Field(min_length=1, max_length=200)]


class RuleRead(BaseModel):
    id: UUID
    code: str
    version: int
    status: Literal["published", "retired"]
    in_force: bool = Field(description="published, and now within its validity window")
    rule: dict[str, Any] = Field(description="the rule as the journal's notice carries it")
    rule_hash: str = Field(description="SHA-256 (hex) of the rule's JCS bytes")
    published_at: datetime
    retired_at: datetime | None
    retired_reason: str | None
