"""Responses built from plain JSON documents, without FastAPI's re-validation, and the
OpenAPI description of problem responses."""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from app.kit.canonical_json import compact_json
from app.kit.problems import PROBLEM_MEDIA_TYPE


def payload_response(
    status_code: int, payload: bytes, headers: dict[str, str] | None = None
) -> Response:
    """A response of serialised JSON: problem+json for errors, JSON otherwise."""
    media = PROBLEM_MEDIA_TYPE if status_code >= 400 else "application/json"
    return Response(payload, status_code=status_code, media_type=media, headers=headers)


def json_response(status_code: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON (or, for errors, problem+json) response of a document that is already JSON."""
    return payload_response(status_code, compact_json(body), headers)


def replayable_response(status_code: int, body: Any, replayed: bool) -> Response:
    """An answer to an idempotent request; a replay says so in `Idempotent-Replayed`."""
    return json_response(status_code, body, {"Idempotent-Replayed": "true"} if replayed else None)


PROBLEM_REF: Final = "#/components/schemas/Problem"
REASONS: Final = {
    400: "malformed JSON, or the Idempotency-Key header is missing",
    401: "no valid bearer token",
    403: "the role may never do this, or not to this object (docs/authorization.md)",
    404: "the object is missing or out of the caller's reach",
    409: "refused by a rule of the domain, or the first request with this key is running",
    413: "the body is too large",
    415: "the body is not of the media type the route takes",
    422: "a parameter, header or body field is not valid",
    429: "the credential's rate limit is used up (Retry-After)",
    500: "the stored transparency log disagrees with a signed checkpoint: an operator must "
    "investigate",
    503: "the database is unavailable (Retry-After)",
}


class Problem(BaseModel):
    """A problem document (RFC 9457); each type may add members (docs/errors.md)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="urn:timebank:problem:<slug>, one per rule")
    title: str
    status: int
    detail: str
    instance: str | None = None


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` entries of problem statuses, each an application/problem+json document."""
    return {
        status: {
            "description": REASONS[status],
            "content": {"application/problem+json": {"schema": {"$ref": PROBLEM_REF}}},
        }
        for status in statuses
    }
