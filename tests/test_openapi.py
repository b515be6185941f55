"""The committed OpenAPI document matches the app."""

from __future__ import annotations

import json
from pathlib import Path

from app.ops.openapi import openapi_text

COMMITTED = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"


def test_openapi_has_not_drifted() -> None:
    assert COMMITTED.read_text() == openapi_text(), (
        "openapi/openapi.json is stale: run `timebank openapi` and commit it"
    )


def test_every_v1_route_is_documented_with_problem_responses() -> None:
    document = json.loads(COMMITTED.read_text())
    paths = document["paths"]
    for route in (
        "/v1/books",
        "/v1/books/{code}/transactions",
        "/v1/holds/{hold_id}/post",
        "/v1/transactions/{tx_id}/reversal",
        "/v1/accounts/{account_id}/entries",
    ):
        assert route in paths
    post = paths["/v1/books/{code}/transactions"]["post"]
    assert "application/problem+json" in post["responses"]["409"]["content"]
    params = {p["name"] for p in post["parameters"]}
    assert "idempotency-key" in params
