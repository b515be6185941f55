"""The OpenAPI document is the service: the Idempotency-Key is required where it is demanded,
a role that may never act is refused before its parameters and body are read, and every
problem status is documented with the problem schema.

Every operation comes from the app's own document, so a new route is held to all of it.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from app.identity.authorization import ALL_ROLES
from app.identity.dependencies import allowed_of
from tests.conftest import Api
from tests.identity.world import World, build_world

WRITES = ("post", "put", "patch")
PROBLEM_REF = "#/components/schemas/Problem"
# A credential of each role in the world (the mini-program acting for member M).
CALLER_OF_ROLE = {
    "admin": "platform",
    "org": "org",
    "miniprogram": "mini",
    "kiosk": "kiosk",
    "auditor": "auditor",
}


@pytest.fixture
async def world(api: Api) -> World:
    return await build_world(api)


def _operations(api: Api) -> list[tuple[str, str, dict[str, Any]]]:
    document = api.app.openapi()
    return [
        (method, path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def _roles(api: Api) -> dict[tuple[str, str], tuple[str, ...]]:
    """The roles each route's `allow(...)` admits (every role for a route without one)."""
    found: dict[tuple[str, str], tuple[str, ...]] = {}
    for context in iter_route_contexts(api.app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        allowed = [a for a in map(allowed_of, route.dependencies) if a is not None]
        for method in route.methods or ():
            roles = allowed[0].roles if allowed else ALL_ROLES
            found[(method.lower(), str(context.path_format))] = roles
    return found


def _filled(path: str, w: World) -> str:
    """The path with each parameter given a well-formed value (mostly of nothing)."""
    out = path.replace("{code}", w.home).replace("{asset}", "HOUR")
    while "{" in out:
        start, end = out.index("{"), out.index("}")
        out = out[:start] + str(uuid.uuid4()) + out[end + 1 :]
    return out


def _headers(w: World, caller: str, key: bool) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {w.tokens[caller]}"}
    if caller == "mini":
        headers["X-Member-Id"] = w.member
    if key:
        headers["Idempotency-Key"] = uuid.uuid4().hex
    return headers


async def _send(
    api: Api, w: World, method: str, path: str, operation: dict[str, Any], headers: dict[str, str]
) -> httpx.Response:
    """The operation with an empty body of the media type it takes (none if it takes none)."""
    content = operation.get("requestBody", {}).get("content", {})
    url = _filled(path, w)
    if "text/csv" in content:
        headers = {**headers, "Content-Type": "text/csv"}
        return await api.client.request(method, url, content=b"", headers=headers)
    if content:
        return await api.client.request(method, url, json={}, headers=headers)
    return await api.client.request(method, url, headers=headers)


def _key_required(operation: dict[str, Any]) -> bool:
    return any(
        p["in"] == "header" and p["name"].lower() == "idempotency-key" and p["required"]
        for p in operation.get("parameters", [])
    )


async def test_the_idempotency_key_is_demanded_exactly_where_documented(
    api: Api, world: World
) -> None:
    roles = _roles(api)
    mismatches, required = [], 0
    for method, path, operation in _operations(api):
        if method not in WRITES or not path.startswith("/v1/"):
            continue
        # A caller whose role may take the action: otherwise its 403 comes first.
        caller = CALLER_OF_ROLE[roles[(method, path)][0]]
        r = await _send(api, world, method, path, operation, _headers(world, caller, key=False))
        demanded = (
            r.status_code == 400
            and r.json().get("type") == "urn:timebank:problem:idempotency-key-missing"
        )
        documented = _key_required(operation)
        required += documented
        if demanded != documented:
            mismatches.append(f"{method.upper()} {path}: documented {documented}, {r.text[:120]}")
    assert mismatches == []
    assert required >= 30  # the walk reached the routes that need a key


# Routes that take no credential: what they are given (a proof's id, a pairing code) is the
# authority.
PUBLIC_PATHS = ("/v1/service-proofs/{proof_id}", "/v1/kiosk/pairings", "/v1/console/sessions")


async def test_a_role_that_may_never_write_is_refused_before_its_body_is_read(
    api: Api, world: World
) -> None:
    """The auditor may never write: `{}` (invalid for every body) gets 403, key or no key."""
    mismatches, bodies = [], 0
    for method, path, operation in _operations(api):
        if "requestBody" not in operation or path in PUBLIC_PATHS:
            continue
        bodies += 1
        for key in (True, False):
            headers = _headers(world, "auditor", key)
            r = await _send(api, world, method, path, operation, headers)
            if r.status_code != 403:
                mismatches.append(f"{method.upper()} {path} (key {key}): {r.text[:120]}")
            else:
                assert r.json()["type"] == "urn:timebank:problem:forbidden"
    assert mismatches == []
    assert bodies >= 40


async def test_query_parameters_are_checked_after_the_role(api: Api, world: World) -> None:
    """A kiosk never reads members: an invalid `limit` does not change that."""
    r = await api.client.get(
        f"/v1/members/{world.member}/entries?limit=0", headers=_headers(world, "kiosk", False)
    )
    assert r.status_code == 403, r.text


def test_every_problem_status_is_documented_with_the_problem_schema(api: Api) -> None:
    document = api.app.openapi()
    assert "Problem" in document["components"]["schemas"]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for method, path, operation in _operations(api):
        answers = operation["responses"]
        for status, entry in answers.items():
            if int(status) >= 400:
                schema = entry["content"]["application/problem+json"]["schema"]
                assert schema == {"$ref": PROBLEM_REF}, (method, path, status)
        if path.startswith("/v1/") and path not in PUBLIC_PATHS:
            assert {"401", "429", "503"} <= set(answers), (method, path)
        if "requestBody" in operation:
            assert {"400", "413", "415", "422"} <= set(answers), (method, path)
        if _key_required(operation):
            assert {"400", "409", "422"} <= set(answers), (method, path)
    # Signing a checkpoint answers 201 for a new one and 200 when its size was signed.
    sign = document["paths"]["/v1/books/{code}/checkpoints"]["post"]["responses"]
    assert {"200", "201"} <= set(sign)
    assert sign["200"]["content"]["application/json"]["schema"]


def test_every_refusal_of_the_authorization_matrix_is_documented(api: Api) -> None:
    """Each 401, 403 and 404 docs/authorization.md promises is in the route's responses."""
    from tests.identity.test_authorization_matrix import CALLERS, MATRIX

    for (method, path), (_, expected) in MATRIX.items():
        operation = api.app.openapi()["paths"][path][method.lower()]
        answers = set(operation["responses"])
        for caller, want in zip(CALLERS, expected, strict=True):
            if isinstance(want, int):
                assert str(want) in answers, (method, path, caller, want)
