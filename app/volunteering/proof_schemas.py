"""Response bodies of the service proof routes (docs/service-proof.md).

The routes answer with the signed document as it was signed (no re-validation); these models
document it in OpenAPI.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Hours = str  # a decimal string with two places: "12.50"


class ProofVolunteer(BaseModel):
    member_id: str
    volunteer_number: str
    name: str | None = Field(
        description="in full for admin and mini-program callers, masked (王**) for org and "
        "auditor callers; null when the member's personal data was erased"
    )
    name_masked: bool


class ProofIssuer(BaseModel):
    kind: Literal["organisation", "book"]
    id: str = Field(description="the organisation's id (kind organisation) or the book's code")
    name: str


class ProofPeriod(BaseModel):
    from_: str | None = Field(alias="from", description="YYYY-MM-DD, inclusive; null: no bound")
    to: str | None = Field(description="YYYY-MM-DD, inclusive; null: no bound")


class ProofRecord(BaseModel):
    record_id: str
    project_id: str
    project_title: str
    category: str = Field(description="service category code")
    category_name: str = Field(description="the category's Chinese name")
    organisation_id: str = Field(description="the organisation that certified the record")
    organisation_name: str
    service_day: str = Field(description="YYYY-MM-DD in the service time zone")
    started_at: str
    ended_at: str
    minutes: int = Field(description="credited minutes")
    evidence: Literal["checkin", "manual"] = Field(
        description="checkin: 信用时 (checked in and out on site); manual: 荣誉时 (entered by "
        "the organisation, attested by a person)"
    )
    attested_by: str | None = Field(description="证明人 of a manual record")
    tx_id: str = Field(description="the ledger transaction (service_credit) that credited it")


class ProofTotals(BaseModel):
    records: int
    minutes: int
    hours: Hours = Field(description="minutes / 60, rounded half up to two places")
    checkin_minutes: int = Field(description="信用时")
    manual_minutes: int = Field(description="荣誉时")


class ProofRecordChange(BaseModel):
    record_id: str
    status: str = Field(description="the record's status now (reversed), or unknown")
    change: Literal["reversed", "corrected"] | None = Field(
        description="reversed: its credit was reversed; corrected: it was corrected after its "
        "minutes were spent or lapsed (docs/volunteering.md §6.1)"
    )
    at: str | None = Field(description="when (RFC 3339 UTC)")
    tx_id: str | None = Field(description="the reversal's or correction's ledger transaction")
    minutes: int | None = Field(description="the minutes the proof listed for it")


class ServiceProofDocument(BaseModel):
    """The signed payload (the JWS payload, RFC 8785 JSON)."""

    typ: Literal["timebank.service-proof"]
    version: int
    proof_id: str
    number: str = Field(description="<BOOK>-<YYYYMMDD>-<8 digits>")
    issued_at: str = Field(description="RFC 3339 UTC, whole seconds")
    iat: int = Field(description="issued_at in Unix seconds: the key valid then signed it")
    book: str
    volunteer: ProofVolunteer
    issuer: ProofIssuer
    person_in_charge: str | None = Field(description="负责人 of the issuing organisation")
    handler: str = Field(description="经办人: the issuing credential's name, else its id")
    period: ProofPeriod
    records: list[ProofRecord]
    totals: ProofTotals
    verify_url: str


class ServiceProofIssued(BaseModel):
    proof_id: str
    number: str
    token: str = Field(description="JWS compact serialisation (docs/service-proof.md)")
    document: ServiceProofDocument
    verify_url: str
    jwks_uri: str


class ServiceProofRead(BaseModel):
    proof_id: str
    number: str
    issued_at: str
    token: str
    document: ServiceProofDocument = Field(description="the token's payload, decoded")
    signature_valid: bool = Field(
        description="the token verifies now with the service's JWKS and names this proof: it "
        "proves what was issued, not that it still holds"
    )
    jwks_uri: str
    checked_at: str = Field(description="when this answer was made (RFC 3339 UTC)")
    records_stand: bool = Field(description="every record the proof lists is still approved now")
    changed_records: list[ProofRecordChange] = Field(
        description="the listed records that no longer stand, in the document's order"
    )
    standing_totals: ProofTotals = Field(
        description="the document's totals over the listed records that still stand"
    )
    verdict: Literal["valid", "changed", "invalid"] = Field(
        description="valid: the signature verifies and every record stands; changed: the "
        "signature verifies but records were reversed or corrected since the proof was "
        "issued; invalid: the signature does not verify"
    )
