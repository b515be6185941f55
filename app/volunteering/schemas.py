"""Request and response bodies of needs, projects, sign-ups and service records."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, Field, StrictInt, model_validator

from app.kit.schemas import InputModel, Instant, JournalText
from app.ledger.schemas import BookCode

Code = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Urgency = Literal["low", "normal", "high", "urgent"]
NeedStatus = Literal["open", "matched", "met", "closed"]
Evidence = Literal["checkin", "manual"]
RecordStatus = Literal["open", "pending", "approved", "rejected", "reversed"]
Reason = Annotated[str, Field(min_length=1, max_length=2000)]
# A reason kept with a record and written into its reversal's history: no personal data.
RecordReason = Annotated[JournalText, Field(min_length=1, max_length=2000)]
PersonName = Annotated[str, Field(min_length=1, max_length=100)]
Minutes = Annotated[StrictInt, Field(ge=1, le=24 * 60)]


class CatalogEntry(BaseModel):
    code: str
    name_zh: str
    name_en: str


class Catalog(BaseModel):
    categories: list[CatalogEntry]
    target_groups: list[CatalogEntry]


class NeedCreate(InputModel):
    book: BookCode
    organisation_id: UUID | None = Field(
        default=None, description="the registering community or station (org credentials: own)"
    )
    community_id: UUID | None = Field(default=None, description="a `community` organisation")
    category: Code
    target_group: Code
    description: Annotated[JournalText, Field(min_length=1, max_length=2000)] = Field(
        description="what is needed; no names, phone numbers or ID numbers"
    )
    urgency: Urgency = "normal"


class NeedUpdate(InputModel):
    status: NeedStatus


class NeedRead(BaseModel):
    id: UUID
    book: str
    organisation_id: UUID
    community_id: UUID | None
    category: str
    target_group: str
    description: str
    urgency: Urgency
    status: NeedStatus
    project_ids: list[UUID]
    created_at: datetime
    updated_at: datetime


class NeedPage(BaseModel):
    items: list[NeedRead]
    next_after: UUID | None


class ProjectCreate(InputModel):
    book: BookCode
    organisation_id: UUID | None = Field(
        default=None, description="the organising organisation (org credentials: own)"
    )
    community_id: UUID | None = None
    title: Annotated[str, Field(min_length=1, max_length=200)]
    category: Code
    place: Annotated[str, Field(min_length=1, max_length=200)]
    starts_at: Instant
    ends_at: Instant
    capacity: Annotated[StrictInt, Field(ge=1, le=100_000)]
    need_ids: Annotated[list[UUID], Field(max_length=50)] = Field(default_factory=list)
    credit_policy: Literal["actual", "fixed"] = "actual"
    fixed_minutes: Minutes | None = Field(default=None, description="required for `fixed`")
    cap_minutes_per_day: Minutes | None = Field(
        default=None, description="credited minutes per person per day, at most"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ProjectCreate:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if (self.credit_policy == "fixed") != (self.fixed_minutes is not None):
            raise ValueError("fixed_minutes is given exactly when credit_policy is `fixed`")
        return self


class ProjectUpdate(InputModel):
    status: Literal["published", "closed"]


class ProjectRead(BaseModel):
    id: UUID
    book: str
    organisation_id: UUID
    community_id: UUID | None
    title: str
    category: str
    place: str
    starts_at: datetime
    ends_at: datetime
    capacity: int
    signed_up: int
    credit_policy: Literal["actual", "fixed"]
    fixed_minutes: int | None
    cap_minutes_per_day: int | None
    status: Literal["published", "closed"]
    need_ids: list[UUID]
    created_at: datetime
    updated_at: datetime


class ProjectPage(BaseModel):
    items: list[ProjectRead]
    next_after: UUID | None


class VolunteerCandidate(BaseModel):
    member_id: UUID
    volunteer_number: str
    records: int = Field(description="approved records in the project's category")
    minutes: int
    last_served: date


class SignupCreate(InputModel):
    member_id: UUID | None = Field(
        default=None, description="org and admin credentials: whom to sign up"
    )


class SignupRead(BaseModel):
    project_id: UUID
    member_id: UUID
    status: Literal["active", "cancelled"]
    created_at: datetime
    updated_at: datetime


class SignupPage(BaseModel):
    items: list[SignupRead]


class CheckinCode(BaseModel):
    project_id: UUID
    code: str = Field(description="show it at the site (as text or QR); members scan it")
    expires_at: datetime


class CodeIn(InputModel):
    code: Annotated[str, Field(min_length=1, max_length=200)]


class ServiceRecordCreate(InputModel):
    """A record entered by hand by the organisation (evidence `manual`)."""

    project_id: UUID
    member_id: UUID
    started_at: Instant
    ended_at: Instant
    attested_by: PersonName = Field(description="who attests the service (证明人)")
    external_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    corrects_record_id: UUID | None = Field(
        default=None, description="the reversed record this one replaces"
    )

    @model_validator(mode="after")
    def _ordered(self) -> ServiceRecordCreate:
        if self.ended_at <= self.started_at:
            raise ValueError("ended_at must be after started_at")
        return self


class ServiceRecordRead(BaseModel):
    id: UUID
    book: str
    project_id: UUID
    organisation_id: UUID
    member_id: UUID
    evidence: Evidence
    attested_by: str | None
    source: Literal["api", "import"]
    external_id: str | None
    started_at: datetime
    ended_at: datetime | None
    credited_minutes: int | None
    service_day: date | None
    status: RecordStatus
    entered_by: UUID
    approved_by: UUID | None
    approved_at: datetime | None
    tx_id: UUID | None
    rejected_by: UUID | None
    rejected_at: datetime | None
    reject_reason: str | None
    reversed_by: UUID | None
    reversed_at: datetime | None
    reversal_tx_id: UUID | None
    reversal_reason: str | None
    corrects_record_id: UUID | None
    created_at: datetime
    updated_at: datetime


class RecordEvent(BaseModel):
    event: str
    actor: dict[str, str]
    detail: dict[str, object]
    at: datetime


class DisputeRead(BaseModel):
    id: UUID
    record_id: UUID
    member_id: UUID
    organisation_id: UUID
    reason: str
    status: Literal["open", "upheld", "dismissed"]
    answer: str | None
    answered_by: UUID | None
    answered_at: datetime | None
    corrected_record_id: UUID | None
    opened_by: UUID
    opened_at: datetime


class ServiceRecordDetail(ServiceRecordRead):
    events: list[RecordEvent]
    disputes: list[DisputeRead]


class ServiceRecordPage(BaseModel):
    items: list[ServiceRecordRead]
    next_after: UUID | None


class RejectIn(InputModel):
    reason: RecordReason


class ReverseIn(InputModel):
    reason: RecordReason
    remainder: Literal["owed", "written_off"] | None = Field(
        default=None,
        description="what becomes of the minutes the member (or the public pool) no longer "
        "holds, when some were spent or lapsed: owed by the member (their later service "
        "credits settle it first) or written off by the organisation. Not needed while all "
        "are held (the credit is then simply reversed); without it a record whose minutes "
        "were spent is refused (correction-needs-remainder)",
    )


class OwedWriteOffIn(InputModel):
    reason: RecordReason


class OwedWrittenOff(BaseModel):
    organisation_id: UUID
    member_id: UUID
    written_off_minutes: int = Field(description="all the member owed the organisation")
    tx_id: UUID = Field(description="the service_correction.write_off entry")


class BulkApproveIn(InputModel):
    record_ids: Annotated[list[UUID], Field(min_length=1, max_length=500)]


class BulkApproveItem(BaseModel):
    record_id: UUID
    status: int = Field(description="the HTTP status approving this record alone would answer")
    record: ServiceRecordRead | None = None
    problem: dict[str, object] | None = None


class BulkApproveOut(BaseModel):
    approved: int
    refused: int
    results: list[BulkApproveItem]


class DisputeCreate(InputModel):
    reason: Reason


class DisputeAnswer(InputModel):
    outcome: Literal["upheld", "dismissed"]
    answer: Reason
    corrected_record_id: UUID | None = Field(
        default=None, description="the new record that corrects the disputed one, if any"
    )


class DisputePage(BaseModel):
    items: list[DisputeRead]
    next_after: UUID | None


LINE = "the line a spreadsheet shows the row on (the header is line 1, the first row 2)"


class ImportRowProblem(BaseModel):
    row: int = Field(description=LINE)
    external_id: str | None
    problems: list[dict[str, object]] = Field(
        description="each with `field` (the column as the file's header names it, or `row`), "
        "`message` and `code` (a rule's refusal: its problem type URI)"
    )


class ImportRowRecorded(BaseModel):
    row: int = Field(description=LINE)
    external_id: str | None
    status: Literal["accepted", "already_imported"]
    record_id: UUID | None = Field(
        description="the record (null for a row a dry run would record: it does not exist)"
    )


class ImportWarning(BaseModel):
    code: str = Field(examples=["encoding_gb18030"])
    message: str


class ImportReport(BaseModel):
    dry_run: bool
    rows: int = Field(description="data rows in the file (empty lines are not rows)")
    accepted: int = Field(description="rows that were (or, in a dry run, would be) recorded")
    already_imported: int
    refused: int
    warnings: list[ImportWarning] = Field(
        description="about the whole file (a file read as GB18030 rather than UTF-8)"
    )
    problems: list[ImportRowProblem]
    recorded: list[ImportRowRecorded] = Field(
        description="the rows that were (or would be) recorded or were already, in file order"
    )
    record_ids: list[UUID] = Field(
        description="the records of `recorded` that exist: in a dry run only those already imported"
    )
