"""Request and response bodies of assets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, Field, StrictInt

from app.kit.schemas import InputModel, NoPersonalData
from app.ledger.schemas import AssetCode

ValidityYears = Annotated[
    StrictInt,
    Field(
        ge=0,
        le=50,
        description="units earned in calendar year Y lapse at the start of year Y + n + 1 "
        "(service time zone); null: they never lapse",
    ),
]


class AssetCreate(InputModel):
    code: AssetCode
    # Both are written to the journal (`notice.asset_defined`): screened for personal data.
    name: Annotated[
        str, Field(min_length=1, max_length=200, examples=["Foundation points"]), NoPersonalData
    ]
    unit: Annotated[str, Field(min_length=1, max_length=32, examples=["point"]), NoPersonalData]
    issuer_organisation_id: UUID | None = Field(
        default=None, description="the issuing organisation; its book's journal records the asset"
    )
    expires_after_years: ValidityYears | None = None


class AssetUpdate(InputModel):
    expires_after_years: ValidityYears | None = Field(
        description="the new validity period (null: units never lapse)"
    )


class AssetRead(BaseModel):
    code: str
    name: str
    unit: str
    issuer_organisation_id: UUID | None
    issuer_book: str | None = Field(description="the issuing organisation's book")
    expires_after_years: int | None
    created_at: datetime


class AssetList(BaseModel):
    items: list[AssetRead]
