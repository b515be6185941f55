"""The committed OpenAPI document, generated from the app."""

from __future__ import annotations

import json

from app.config import Settings


def openapi_text() -> str:
    """openapi/openapi.json as it should be for the current code."""
    from app.main import create_app

    app = create_app(Settings(database_url="postgresql://unused@localhost/unused"))
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
