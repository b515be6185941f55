"""Refusals of the identity domain: members, organisations, credentials."""

from __future__ import annotations

from app.kit.problems import TimebankError


class OrganisationNotFound(TimebankError):
    status, slug, title = 404, "organisation-not-found", "Organisation not found"


class MemberNotFound(TimebankError):
    status, slug, title = 404, "member-not-found", "Member not found"


class CredentialNotFound(TimebankError):
    status, slug, title = 404, "credential-not-found", "Credential not found"


class InvalidParent(TimebankError):
    status, slug, title = 422, "invalid-parent", "The parent organisation is not valid here"


class InvalidPersonalData(TimebankError):
    status, slug, title = 422, "invalid-personal-data", "A personal field is not valid"


class EnrolmentCodeInvalid(TimebankError):
    status, slug, title = 422, "enrolment-code-invalid", "The enrolment code is not valid"


class DuplicateResident(TimebankError):
    status, slug, title = 409, "duplicate-resident", "Another member has this resident ID"


class ExternalIdentityConflict(TimebankError):
    status, slug, title = (
        409,
        "external-identity-conflict",
        "The external identity is registered with other personal data",
    )


class MemberErased(TimebankError):
    status, slug, title = 409, "member-erased", "The member's personal data was erased"


class CredentialNotAllowed(TimebankError):
    status, slug, title = 422, "credential-not-allowed", "This credential cannot be issued"


class MemberSearchNotAllowed(TimebankError):
    # 403, not 422: the query is valid (an admin's same `q` is answered); what is refused is
    # this role's right to look members up by personal data it may not see.
    status, slug, title = (
        403,
        "member-search-not-allowed",
        "This caller may find members by volunteer number only",
    )
