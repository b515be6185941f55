"""The problem statuses each route documents, derived from what the route depends on.

A route's `responses` in OpenAPI are built here, not listed by hand, so that the document
follows the code: every route can answer 422 (the input policy refuses NUL in any URL); a
route that authenticates can answer 401, 429 and 503; one whose
`allow(...)` leaves out a role, 403; one with path parameters, 404; one with parameters or a
body, 422 (and a body 400, 413 and 415); one that needs an Idempotency-Key, 400, 409 and 422;
one that writes, 404 and 409 (the objects its body names, and the domain's refusals). A route
adds what these rules cannot see with `problems(...)` in its own `responses`.
tests/identity/test_contract.py holds the service to it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute

from app.http.caller import authenticated
from app.http.context import get_session, posting_context
from app.http.posting_request import RequestRoute
from app.http.responses import Problem, problems
from app.identity.authorization import ALL_ROLES
from app.identity.dependencies import allowed_of
from app.kit.canonical_json import JsonObject

WRITES: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def problem_statuses(route: APIRoute) -> set[int]:
    """The problem statuses a route can answer, from its dependencies, parameters and body."""
    # The door refuses U+0000 in any URL's path or query, whatever the route (422).
    statuses: set[int] = {422}
    if isinstance(route, RequestRoute):
        # Read by hand (posting_request.py): a caller with a role, a key, a path and a body.
        return {400, 401, 403, 404, 409, 413, 415, 422, 429, 503}
    calls = [d.call for d in _dependants(route.dependant)]
    if authenticated in calls:
        statuses |= {401, 429, 503, 422}  # 422: a mini-program's X-Member-Id is not a UUID
    if get_session in calls:
        statuses.add(503)
    if posting_context in calls:
        statuses |= {400, 409, 422}
    for dependency in route.dependencies:
        allowed = allowed_of(dependency)
        if allowed is not None and set(ALL_ROLES) - set(allowed.roles):
            statuses.add(403)
    flat = route.dependant
    params = [*flat.path_params, *flat.query_params, *flat.header_params, *flat.cookie_params]
    for sub in _dependants(route.dependant):
        params += [*sub.path_params, *sub.query_params]
    if params:
        statuses.add(422)
    if any(sub.path_params for sub in _dependants(route.dependant)):
        statuses.add(404)
    if any(p.alias == "book" for sub in _dependants(route.dependant) for p in sub.query_params):
        statuses.add(404)  # a book out of reach (read by the route or by a dependency of it)
    if route.body_field is not None or (route.openapi_extra or {}).get("requestBody"):
        statuses |= {400, 413, 415, 422}
    if (route.methods or set()) & WRITES:
        statuses |= {404, 409}
    return statuses


def _is_problem(entry: dict[str, Any]) -> bool:
    content = entry.get("content") or {}
    return set(content) == {"application/problem+json"}


def document_problems(document: dict[str, Any], routes: Sequence[BaseRoute]) -> JsonObject:
    """The OpenAPI document with each operation's problem responses derived as above, in place
    of FastAPI's own 422 (the service answers problem documents, not FastAPI's), and the
    `Problem` schema in its components."""
    for context in iter_route_contexts(routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        operations = document["paths"].get(context.path_format, {})
        for method in route.methods or ():
            operation = operations.get(method.lower())
            if operation is None:
                continue
            answers = operation["responses"]
            statuses = problem_statuses(route)
            for status, entry in route.responses.items():
                if _is_problem(entry):
                    statuses.add(int(status))
            for status, entry in problems(*statuses).items():
                answers[str(status)] = entry
            if "422" in answers and 422 not in statuses:
                del answers["422"]
            operation["responses"] = dict(sorted(answers.items()))
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = Problem.model_json_schema()
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document
