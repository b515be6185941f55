"""Responses built from plain JSON documents, without FastAPI's re-validation."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from app.errors import PROBLEM_MEDIA_TYPE


def json_response(status_code: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON (or, for errors, problem+json) response of a document that is already JSON."""
    media = PROBLEM_MEDIA_TYPE if status_code >= 400 else "application/json"
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(payload, status_code=status_code, media_type=media, headers=headers)
