"""Request and response bodies of a book's asset policies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, StrictInt

from app.kit.schemas import MAX_SAFE_INTEGER, InputModel

Label = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z_]{0,31}$",
        examples=["parent"],
        description="a relationship label, e.g. parent, child, spouse, grandparent, sibling",
    ),
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
