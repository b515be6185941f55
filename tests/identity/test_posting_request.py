"""A posting route that reads its request by hand answers as a FastAPI-parsed one would."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse, Response

from app.http.context import Posting
from app.http.posting_request import RequestRoute, read_posting
from app.identity.dependencies import allow
from app.ledger.schemas import HoldCreate, TransactionCreate
from app.ledger_api.router import POSTERS, TRANSACTION_POSTERS
from tests.conftest import Api

A = "0b6f1e1a-9a43-4a37-9f55-3a1d0a0b2c01"
B = "5d2c3b4a-1e0f-4d8c-8b7a-6f5e4d3c2b10"
GOOD = b'{"legs":[{"account_id":"%s","amount":-1},{"account_id":"%s","amount":1}]}' % (
    A.encode(),
    B.encode(),
)
BAD_FIELDS = b'{"legs":[{"account_id":"nope","amount":1.5}],"extra":1}'
JSON = {"Content-Type": "application/json"}
NO_AUTH = {"Authorization": ""}
AUDITOR = {"Authorization": "auditor"}  # replaced by an auditor's token

CASES: list[tuple[str, bytes, dict[str, str]]] = [
    ("valid", GOOD, {"Idempotency-Key": "k1"}),
    ("not JSON", b"{not json", {"Idempotency-Key": "k1"}),
    ("not UTF-8", b'{"legs": "\xff\xfe"}', {"Idempotency-Key": "k1"}),
    ("nested too deep", b"[" * 100_000, {"Idempotency-Key": "k1"}),
    ("empty", b"", {"Idempotency-Key": "k1"}),
    ("null", b"null", {"Idempotency-Key": "k1"}),
    ("an array", b"[]", {"Idempotency-Key": "k1"}),
    ("bad fields", BAD_FIELDS, {"Idempotency-Key": "k1"}),
    ("no legs", b"{}", {"Idempotency-Key": "k1"}),
    ("bad fields, no caller", BAD_FIELDS, {"Idempotency-Key": "k1", **NO_AUTH}),
    ("not JSON, no caller", b"{not json", {"Idempotency-Key": "k1", **NO_AUTH}),
    ("empty, no caller", b"", {"Idempotency-Key": "k1", **NO_AUTH}),
    ("bad fields, no key", BAD_FIELDS, {}),
    ("bad fields, bad key", BAD_FIELDS, {"Idempotency-Key": "a\tb"}),
    ("valid, bad key", GOOD, {"Idempotency-Key": "x" * 256}),
    # A role that may never post: 403 before the key and the fields.
    ("bad fields, auditor", BAD_FIELDS, {"Idempotency-Key": "k1", **AUDITOR}),
    ("no legs, no key, auditor", b"{}", AUDITOR),
]


@pytest.fixture
async def twin_routes(api: Api) -> Api:
    """The same posting route twice: parsed by FastAPI, and read by hand."""

    @api.app.post("/test/parsed/{code}", dependencies=[allow(POSTERS, "post transactions")])
    async def parsed(code: str, data: TransactionCreate, ctx: Posting) -> dict[str, Any]:
        return {"code": code, "legs": len(data.legs), "key": ctx.idem.key}

    async def by_hand(request: Request) -> Response:
        ctx, data = await read_posting(request, TransactionCreate, TRANSACTION_POSTERS)
        code = request.path_params["code"]
        return JSONResponse({"code": code, "legs": len(data.legs), "key": ctx.idem.key})

    api.app.router.add_api_route(
        "/test/by-hand/{code}", by_hand, methods=["POST"], route_class_override=RequestRoute
    )
    return api


@pytest.mark.parametrize(("case", "body", "headers"), CASES, ids=[c[0] for c in CASES])
async def test_read_by_hand_answers_as_fastapi_would(
    twin_routes: Api, case: str, body: bytes, headers: dict[str, str]
) -> None:
    if headers.get("Authorization") == "auditor":
        created = await twin_routes.client.post(
            "/v1/credentials",
            json={"role": "auditor", "book": None},
            headers={"Idempotency-Key": f"auditor-{case}"},
        )
        assert created.status_code == 201, created.text
        headers = {**headers, "Authorization": f"Bearer {created.json()['token']}"}
    answers = []
    for route in ("parsed", "by-hand"):
        r = await twin_routes.client.post(
            f"/test/{route}/xh", content=body, headers={**JSON, **headers}
        )
        document = r.json()
        document.pop("instance", None)  # the path, which differs
        answers.append((r.status_code, r.headers["content-type"], document))
    assert answers[0] == answers[1]
    if "auditor" in case:
        assert answers[1][0] == 403
    if case == "valid":
        assert answers[1][0] == 200
    else:
        assert answers[1][0] >= 400


async def test_the_caller_is_checked_before_the_fields_and_after_the_syntax(
    twin_routes: Api,
) -> None:
    url = "/test/by-hand/xh"
    no_caller = {**JSON, **NO_AUTH, "Idempotency-Key": "k"}
    r = await twin_routes.client.post(url, content=BAD_FIELDS, headers=no_caller)
    assert r.status_code == 401
    r = await twin_routes.client.post(url, content=b"{not json", headers=no_caller)
    assert (r.status_code, r.json()["type"]) == (400, "urn:timebank:problem:malformed-json")
    r = await twin_routes.client.post(url, content=BAD_FIELDS, headers={**JSON})
    assert r.json()["type"] == "urn:timebank:problem:idempotency-key-missing"
    r = await twin_routes.client.post(
        url, content=BAD_FIELDS, headers={**JSON, "Idempotency-Key": "k"}
    )
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"legs/0/account_id", "legs/0/amount", "extra"} <= fields


def test_a_request_route_refuses_an_endpoint_with_parameters() -> None:
    # Its handler would call the endpoint with the request alone: anything else is a bug.
    async def takes_a_query(request: Request, page: int = 1) -> Response:
        return Response()

    async def takes_nothing() -> Response:
        return Response()

    async def takes_the_request(request: Request) -> Response:
        return Response()

    with pytest.raises(TypeError, match="the request and nothing else"):
        RequestRoute("/x", takes_a_query, methods=["POST"])
    with pytest.raises(TypeError, match="the request and nothing else"):
        RequestRoute("/x", takes_nothing, methods=["POST"])
    RequestRoute("/x", takes_the_request, methods=["POST"])


TRICKY_BODIES = [
    GOOD,
    # The last of duplicate keys wins, in both parsers.
    GOOD[:-1] + b',"memo":"first","memo":"second"}',
    GOOD[:-1] + b',"memo":"\\u00e9\\ud83d\\ude00 caf\xc3\xa9 \\u0000 \\"q\\""}',
    GOOD[:-1] + b',"meta":{"f":1.5,"big":1180591620717411303424,"neg":-0.0,"e":1e-7}}',
    GOOD[:-1] + b',"meta":{"inf":1e400}}',
    GOOD[:-1] + b',"meta":{"lone":"\\ud800"}}',
    GOOD[:-1] + b',"meta":{"n":null,"b":true,"l":[1,[2,{"x":[]}]],"s":"\\/"}}',
    GOOD[:-1] + ',"meta":{"键":"值","\\u00e9":[9007199254740991,-3]}}'.encode(),
    b" \n\t" + GOOD + b" \r\n",
    GOOD.replace(b'"amount":-1', b'"amount":-1.0'),
    GOOD.replace(b'"amount":-1', b'"amount":"-1"'),
    GOOD[:-1] + b',"kind":"transfer.sub"}',
    b'{"from_account_id":"%s","to_account_id":"%s","amount":3,"expires_in":60}'
    % (
        A.encode(),
        B.encode(),
    ),
]


@pytest.mark.parametrize("raw", TRICKY_BODIES)
@pytest.mark.parametrize("model", [TransactionCreate, HoldCreate])
def test_a_body_pydantic_accepts_in_one_pass_is_what_json_loads_would_give(
    raw: bytes, model: type[BaseModel]
) -> None:
    # read_posting takes model_validate_json's result when it succeeds, and FastAPI's way
    # (json.loads, then model_validate) otherwise: where the first succeeds, both must agree.
    try:
        fast = model.model_validate_json(raw)
    except ValidationError:
        return
    assert model.model_validate(json.loads(raw)) == fast


def test_the_comparison_above_is_not_vacuous() -> None:
    accepted = [
        (raw, model)
        for raw in TRICKY_BODIES
        for model in (TransactionCreate, HoldCreate)
        if _accepted_in_one_pass(model, raw)
    ]
    assert len(accepted) >= 7  # duplicate keys, escapes, non-ASCII, nesting, whitespace, ...


def _accepted_in_one_pass(model: type[BaseModel], raw: bytes) -> bool:
    try:
        model.model_validate_json(raw)
    except ValidationError:
        return False
    return True
