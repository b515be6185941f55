"""Refusals of the volunteering domain: needs, projects, sign-ups and service records.

Each rule a service record can break has its own problem type, so that a client (and a
person reading the answer) knows which rule refused it.
"""

from __future__ import annotations

from app.kit.problems import TimebankError


class NeedNotFound(TimebankError):
    status, slug, title = 404, "need-not-found", "Need not found"


class ProjectNotFound(TimebankError):
    status, slug, title = 404, "project-not-found", "Service project not found"


class ServiceRecordNotFound(TimebankError):
    status, slug, title = 404, "service-record-not-found", "Service record not found"


class DisputeNotFound(TimebankError):
    status, slug, title = 404, "dispute-not-found", "Dispute not found"


class UnknownCategory(TimebankError):
    status, slug, title = 422, "unknown-category", "The category or target group is not listed"


class InvalidCommunity(TimebankError):
    status, slug, title = 422, "invalid-community", "Not a community organisation of this book"


class ProjectFull(TimebankError):
    status, slug, title = 409, "project-full", "The project has no free place"


class ProjectNotOpen(TimebankError):
    status, slug, title = 422, "project-not-open", "The project does not take this now"


class NotSignedUp(TimebankError):
    status, slug, title = 422, "not-signed-up", "The member has not signed up for the project"


class InvalidCheckinCode(TimebankError):
    status, slug, title = 422, "invalid-checkin-code", "The check-in code is not valid"


class CheckinCodeExpired(TimebankError):
    status, slug, title = 422, "checkin-code-expired", "The check-in code has expired"


class CheckinCodeOtherProject(TimebankError):
    status, slug, title = 422, "checkin-code-other-project", "The code is another project's"


class AlreadyCheckedIn(TimebankError):
    status, slug, title = 409, "already-checked-in", "The member is checked in elsewhere"


class OutsideWindow(TimebankError):
    status, slug, title = 422, "outside-window", "No time inside the activity's window"


class ServiceTooShort(TimebankError):
    status, slug, title = 422, "service-too-short", "The service lasted less than a minute"


class OverlappingService(TimebankError):
    status, slug, title = 422, "overlapping-service", "The member is already credited for this time"


class DailyCapExceeded(TimebankError):
    status, slug, title = 422, "daily-cap-exceeded", "More than the daily cap of service hours"


class ProjectDailyCapExceeded(TimebankError):
    status, slug, title = (
        422,
        "project-daily-cap-exceeded",
        "More than the project's cap per person per day",
    )


class RecordNotPending(TimebankError):
    status, slug, title = 409, "record-not-pending", "The record is not in a state for this"


class MakerChecker(TimebankError):
    status, slug, title = (
        403,
        "maker-checker",
        "A manual record must be approved by another credential than the one that entered it",
    )


class NoIssuanceAccount(TimebankError):
    status, slug, title = (
        422,
        "no-issuance-account",
        "The organisation has no HOUR issuance account",
    )


class ServiceCreditRefused(TimebankError):
    status, slug, title = 422, "service-credit-refused", "The ledger refused the service credit"


class CorrectionNeedsRemainder(TimebankError):
    status, slug, title = (
        409,
        "correction-needs-remainder",
        "Part of the record's minutes were spent or lapsed",
    )


class NothingOwed(TimebankError):
    status, slug, title = 409, "nothing-owed", "The member owes the organisation nothing"


class DisputeOpen(TimebankError):
    status, slug, title = 409, "dispute-open", "The record already has an open dispute"


class ServiceProofNotFound(TimebankError):
    status, slug, title = 404, "service-proof-not-found", "Service proof not found"
