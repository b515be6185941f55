"""A posting route's request read by hand: the caller, its Idempotency-Key and the JSON body.

The routes that post transfers and holds are the hot path. There FastAPI's resolution of a
dependency and of the route's parameters, and matching the route among all the others, cost a
large share of a posting's CPU (docs/performance.md). These routes take the request and call
`read_posting`, which runs the checks in the order FastAPI runs them on every other route,
with the same problem documents (the edge middleware has already applied the input policy,
app/kit/input_policy.py): a body that is not JSON (400), then the caller, its role and its
key (`read_posting_context`), then the body's fields (422); tests/identity/
test_posting_request.py holds the answers equal to a FastAPI-parsed twin's. `documented`
describes the parameters and the body in OpenAPI exactly as FastAPI would, and `RequestRoute`
calls the endpoint without FastAPI's per-request machinery.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

from fastapi import HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.models import OpenAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from app.http.caller import MEMBER_HEADER_DESCRIPTION
from app.http.context import (
    IDEMPOTENCY_KEY_DESCRIPTION,
    PostingContext,
    RoleGate,
    read_posting_context,
)
from app.kit.canonical_json import JsonObject

Body = TypeVar("Body", bound=BaseModel)
REF_TEMPLATE: Final = "#/components/schemas/{model}"
_NO_BODY: Final = object()
# The bodies of hand-read routes, by schema name: FastAPI does not see them, so
# `add_body_schemas` puts them into the OpenAPI components.
_BODIES: dict[str, type[BaseModel]] = {}


Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]


class RequestRoute(APIRoute):
    """A route whose endpoint takes the `Request` alone and returns its `Response`.

    FastAPI matches and documents it as any other route, but calls the endpoint directly: its
    per-request handler, which would resolve no parameters here, still builds the query
    parameters, cookies and a response template and runs its telemetry hooks
    (docs/performance.md).
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        d = self.dependant
        params = (d.path_params, d.query_params, d.header_params, d.cookie_params, d.body_params)
        if d.dependencies or any(params) or d.request_param_name is None:
            raise TypeError(f"{path}: a RequestRoute's endpoint takes the request and nothing else")

    def get_route_handler(self) -> Endpoint:
        endpoint: Endpoint = self.endpoint
        return endpoint


def documented(model: type[BaseModel], path: tuple[str, ...] = ()) -> JsonObject:
    """The `openapi_extra` of a hand-read posting route: its `path` parameters (strings, read
    from `request.path_params`), its Idempotency-Key and its JSON body."""
    _BODIES[model.__name__] = model
    header_schema = {
        "type": "string",
        "description": IDEMPOTENCY_KEY_DESCRIPTION,
        "title": "Idempotency-Key",
    }
    member_schema = {
        "anyOf": [{"type": "string"}, {"type": "null"}],
        "description": MEMBER_HEADER_DESCRIPTION,
        "title": "X-Member-Id",
    }
    return {
        "parameters": [
            *(
                {
                    "in": "path",
                    "name": name,
                    "required": True,
                    "schema": {"title": name.replace("_", " ").title(), "type": "string"},
                }
                for name in path
            ),
            {
                "description": MEMBER_HEADER_DESCRIPTION,
                "in": "header",
                "name": "X-Member-Id",
                "required": False,
                "schema": member_schema,
            },
            {
                "description": IDEMPOTENCY_KEY_DESCRIPTION,
                "in": "header",
                "name": "idempotency-key",
                "required": True,
                "schema": header_schema,
            },
        ],
        "requestBody": {
            "content": {
                "application/json": {"schema": {"$ref": REF_TEMPLATE.format(model=model.__name__)}}
            },
            "required": True,
        },
    }


def add_body_schemas(document: dict[str, Any]) -> JsonObject:
    """An OpenAPI document with the hand-read bodies' schemas (and theirs) in its components."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, model in sorted(_BODIES.items()):
        schema = model.model_json_schema(ref_template=REF_TEMPLATE, mode="validation")
        for nested, nested_schema in schema.pop("$defs", {}).items():
            schemas.setdefault(nested, nested_schema)
        schemas.setdefault(name, schema)
    # As FastAPI finishes its own document (this writes numbers as its models type them).
    encoded: dict[str, Any] = jsonable_encoder(
        OpenAPI.model_validate(document), by_alias=True, exclude_none=True
    )
    return encoded


async def read_posting(
    request: Request, model: type[Body], allowed: RoleGate
) -> tuple[PostingContext, Body]:
    """The posting context and the validated body, or the refusal FastAPI would have sent
    (with `allowed` as the route's `allow(...)` dependency)."""
    raw = await request.body()
    if raw:
        # Most bodies are valid: pydantic parses and validates them in one pass, cheaper than
        # json.loads and model_validate. Any other goes the way FastAPI goes, which
        # decides the problem (tests/identity/test_posting_request.py holds the two alike).
        try:
            body = model.model_validate_json(raw)
        except ValidationError:
            pass
        else:
            return await read_posting_context(request, allowed), body
    parsed: Any = _NO_BODY
    if raw:
        # As FastAPI reads a JSON body (the edge middleware has refused other media types).
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RequestValidationError(
                [
                    {
                        "type": "json_invalid",
                        "loc": ("body", exc.pos),
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": exc.msg},
                    }
                ]
            ) from None
        except Exception:  # not UTF-8, nested too deep, ...
            raise HTTPException(400, "There was an error parsing the body") from None
    context = await read_posting_context(request, allowed)
    if parsed is _NO_BODY:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required"}]
        )
    try:
        body = model.model_validate(parsed, from_attributes=True)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None
    return context, body
