"""Request and response bodies of members, organisations and credentials."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, Field, StrictInt, field_validator, model_validator

from app.kit.schemas import MAX_SAFE_INTEGER, Day, InputModel, NoPersonalData
from app.ledger.schemas import AssetCode, BookCode

OrganisationKind = Literal[
    "community", "social_org", "social_work_station", "volunteer_team", "charity", "kiosk_site"
]
Role = Literal["admin", "org", "miniprogram", "kiosk", "auditor"]
Name = Annotated[str, Field(min_length=1, max_length=200)]
# An organisation's name is written to the journal (`notice.organisation_*`): screened for
# personal data like any journal text.
OrganisationName = Annotated[Name, NoPersonalData]
PersonInCharge = Annotated[str, Field(min_length=1, max_length=100)]


class OrganisationAccountSpec(InputModel):
    asset: AssetCode
    purpose: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", examples=["issuance"])]
    overdraft_limit: Annotated[StrictInt, Field(ge=0, le=MAX_SAFE_INTEGER)] = 0


class OrganisationCreate(InputModel):
    book: BookCode
    kind: OrganisationKind
    name: OrganisationName
    parent_id: UUID | None = None
    accounts: Annotated[list[OrganisationAccountSpec], Field(max_length=8)] = Field(
        default_factory=list,
        description="accounts to open; every kind but kiosk_site also gets an HOUR account of "
        "purpose issuance (overdraft limit 1,000,000,000 minutes) unless one is named here",
    )
    person_in_charge: PersonInCharge | None = None
    maker_checker: bool = Field(
        default=False,
        description="a manual service record must be approved by another credential than "
        "the one that entered it",
    )


class OrganisationUpdate(InputModel):
    name: OrganisationName | None = None
    parent_id: UUID | None = None
    person_in_charge: PersonInCharge | None = None
    maker_checker: bool | None = None

    @field_validator("name")
    @classmethod
    def _named(cls, value: str | None) -> str | None:
        # Absent keeps the name; an explicit null would clear a name every organisation has.
        if value is None:
            raise ValueError("name cannot be null; leave it out to keep the name")
        return value

    @model_validator(mode="after")
    def _something(self) -> OrganisationUpdate:
        if not self.model_fields_set:
            raise ValueError("at least one field is required")
        if "maker_checker" in self.model_fields_set and self.maker_checker is None:
            raise ValueError("maker_checker is true or false")
        return self


class OrganisationAccount(BaseModel):
    id: UUID
    asset: str
    purpose: str | None
    overdraft_limit: int


class OrganisationRead(BaseModel):
    id: UUID
    book: str
    kind: str
    name: str
    parent_id: UUID | None
    person_in_charge: str | None = Field(description="负责人, named on service proofs")
    maker_checker: bool
    accounts: list[OrganisationAccount]
    created_at: datetime
    updated_at: datetime


class OrganisationPage(BaseModel):
    items: list[OrganisationRead]
    next_after: UUID | None


class MembershipCreate(InputModel):
    enrolment_code: Annotated[
        str,
        Field(
            min_length=8,
            max_length=32,
            description="the code the member gave (POST /v1/members/{id}/enrolment-codes)",
        ),
    ]
    volunteer_number: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=64,
            description="optional: the code is refused unless it is this member's",
        ),
    ] = None


class EnrolmentCodeRead(BaseModel):
    code: str = Field(description="10 characters; give it to the organisation that enrols you")
    member_id: UUID
    expires_at: datetime


class MembershipRead(BaseModel):
    organisation_id: UUID
    member_id: UUID
    volunteer_number: str
    joined_at: datetime


class ExternalIdentity(InputModel):
    provider: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", examples=["wechat"])]
    subject: Annotated[str, Field(min_length=1, max_length=128, description="e.g. the openid")]
    union_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None


class MemberCreate(InputModel):
    book: BookCode
    display_name: Name
    phone: Annotated[str, Field(min_length=1, max_length=20)]
    resident_id: Annotated[str, Field(min_length=1, max_length=18)] | None = None
    birth_date: Day | None = Field(default=None, description="required unless resident_id gives it")
    identity: ExternalIdentity
    organisation_id: UUID | None = Field(
        default=None, description="an organisation the member joins on registration"
    )


class MemberUpdate(InputModel):
    display_name: Name | None = None
    phone: Annotated[str, Field(min_length=1, max_length=20)] | None = None
    resident_id: Annotated[str, Field(min_length=1, max_length=18)] | None = None
    birth_date: Day | None = None

    @model_validator(mode="after")
    def _something(self) -> MemberUpdate:
        if not self.model_fields_set:
            raise ValueError("at least one field is required")
        return self


class MemberAccount(BaseModel):
    asset: str
    account_id: UUID


class MemberRead(BaseModel):
    id: UUID
    book: str
    volunteer_number: str
    status: Literal["active", "erased"]
    display_name: str | None
    phone: str | None
    resident_id: str | None
    birth_date: date | None
    masked: bool = Field(description="personal fields are masked for this caller's role")
    accounts: list[MemberAccount]
    organisations: list[UUID]
    created_at: datetime
    updated_at: datetime
    erased_at: datetime | None


MatchedBy = Literal["volunteer_number", "phone", "display_name"]


class MemberPage(BaseModel):
    items: list[MemberRead] = Field(
        description="the members found, newest first, each as GET /v1/members/{id} shows it to "
        "this caller (masked unless its role sees personal data)"
    )
    next_after: UUID | None = Field(
        description="pass as `after` for the next page (null: nothing further); after a "
        "truncated scan it names the last member scanned, so the next page scans on from there"
    )
    matched_by: MatchedBy | None = Field(
        description="how `q` was read: a volunteer number (exact, any case), an 11-digit phone "
        "number (exact) or part of a display name; null without `q`"
    )
    scanned: int = Field(
        description="members whose names this page decrypted and compared (a name search "
        "only; 0 otherwise)"
    )
    scan_truncated: bool = Field(
        description="the name search reached its bound (5,000 members a page, newest first) "
        "with older members not looked at: `next_after` names the last member scanned, and "
        "the next page scans on from there"
    )


class CredentialCreate(InputModel):
    role: Role
    book: BookCode | None = Field(default=None, description="absent: every book (platform)")
    organisation_id: UUID | None = Field(
        default=None, description="org and kiosk credentials: the organisation or kiosk site"
    )
    name: Annotated[str, Field(max_length=200)] = ""
    rate_limit_per_s: Annotated[float, Field(ge=0, le=1_000_000)] | None = Field(
        default=None, description="overrides the default rate limit; 0 means unlimited"
    )


class CredentialRead(BaseModel):
    id: UUID
    name: str
    role: str
    book: str | None
    organisation_id: UUID | None
    rate_limit_per_s: float | None
    token_prefix: str
    status: Literal["active", "revoked"]
    created_at: datetime
    created_by: UUID | None
    revoked_at: datetime | None
    rotated_at: datetime | None
    last_used_at: datetime | None
    token: str | None = Field(
        default=None, description="present once, in the answer that created or rotated it"
    )


class CredentialPage(BaseModel):
    items: list[CredentialRead]
    next_after: UUID | None
