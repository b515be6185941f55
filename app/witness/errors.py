"""The witness's refusals as problem documents (docs/errors.md, "Witness"). A 409 is not among
them: tlog-witness fixes its body (the stored size, `text/x.tlog.size`)."""

from __future__ import annotations

from app.kit.problems import TimebankError


class WitnessMalformedRequest(TimebankError):
    status, slug, title = 400, "witness-malformed-request", "Not an add-checkpoint request"


class WitnessOldSizeTooLarge(TimebankError):
    status, slug, title = 400, "witness-old-size-too-large", "The old size exceeds the checkpoint's"


class WitnessSignatureRefused(TimebankError):
    status, slug, title = 403, "witness-signature-refused", "Not signed by a key of the log"


class WitnessUnknownLog(TimebankError):
    status, slug, title = 404, "witness-unknown-log", "This witness does not witness that log"


class WitnessNoCheckpoint(TimebankError):
    status, slug, title = 404, "witness-no-checkpoint", "No checkpoint of that log was cosigned"


class WitnessNotFound(TimebankError):
    status, slug, title = 404, "witness-not-found", "Not found"


class WitnessMethodNotAllowed(TimebankError):
    status, slug, title = 405, "witness-method-not-allowed", "Method not allowed"


class WitnessBodyTooLarge(TimebankError):
    status, slug, title = 413, "witness-body-too-large", "Request body too large"


class WitnessInconsistent(TimebankError):
    """A checkpoint validly signed by the log that does not extend what the witness cosigned:
    an alarm, and the request is kept as evidence."""

    status, slug, title = 422, "witness-inconsistent", "The checkpoint is not consistent"


class WitnessUnexpectedProof(TimebankError):
    status, slug, title = 422, "witness-unexpected-proof", "A consistency proof where none fits"


class WitnessUnavailable(TimebankError):
    status, slug, title = 503, "witness-unavailable", "The witness's store is busy"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, {"Retry-After": "1"})


class WitnessInternal(TimebankError):
    status, slug, title = 500, "witness-internal", "Internal error"
