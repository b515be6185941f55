"""Responses built from plain JSON documents, without FastAPI's re-validation."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from app.errors import PROBLEM_MEDIA_TYPE


def compact_json(document: Any) -> bytes:
    """Compact UTF-8 JSON, as sent over HTTP."""
    return orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS)


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
