"""Response bodies of the service statistics."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

GroupBy = Literal["category", "organisation", "community", "month"]


Hours = Annotated[
    str,
    Field(
        pattern=r"^\d+\.\d{2}$", examples=["12.50"], description="minutes / 60, 2 places (half up)"
    ),
]


class StatsGroup(BaseModel):
    key: str | None = Field(
        description="category code, organisation id, community id (null: none) or YYYY-MM"
    )
    label: str = Field(description="category name (zh), organisation or community name, or YYYY-MM")
    records: int = Field(description="approved service records")
    minutes: int = Field(description="credited minutes")
    hours: Hours
    volunteers: int = Field(description="distinct members")
    checkin_minutes: int = Field(description="minutes with check-in evidence (信用时)")
    manual_minutes: int = Field(description="minutes entered by hand (荣誉时)")


class StatsTotals(BaseModel):
    records: int = Field(description="approved service records")
    minutes: int = Field(description="credited minutes")
    hours: Hours
    volunteers: int = Field(description="distinct members over all groups (not a sum)")
    checkin_minutes: int = Field(description="minutes with check-in evidence (信用时)")
    manual_minutes: int = Field(description="minutes entered by hand (荣誉时)")
    projects: int = Field(description="distinct projects with approved records")


class LedgerFigures(BaseModel):
    service_credit_minutes: int = Field(
        description="HOUR minutes service_credit entries in scope credited to member accounts"
    )
    reversed_minutes: int = Field(description="what reversals of those entries took back")
    net_minutes: int = Field(description="service_credit_minutes - reversed_minutes")
    reconciled: bool = Field(description="whether net_minutes equals totals.minutes")


class ServiceStats(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    book: str
    group_by: GroupBy
    period_from: date | None = Field(alias="from", description="first service day, inclusive")
    period_to: date | None = Field(alias="to", description="last service day, inclusive")
    timezone: str = Field(description="the time zone service days are counted in")
    groups: list[StatsGroup]
    totals: StatsTotals
    ledger: LedgerFigures
