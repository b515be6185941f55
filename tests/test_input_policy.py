"""The input policy at the door (README "Input policy"): a corpus of bad inputs, each refused
with its problem and nothing written."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from app.kit.db_errors import database_refusal
from app.kit.input_policy import MAX_JSON_DEPTH, check_json_body
from tests.conftest import Api
from tests.kiosk.shop import Shop, build_shop
from tests.volunteering.district import MORNING

PROBLEM = "urn:timebank:problem:"
PHONE = "请联系 13912345678 取件"
RESIDENT_ID = "身份证 11010519491231002X 低保户"


@pytest.fixture
async def shop(api: Api) -> Shop:
    """A shop of the test's own, for a test that writes."""
    return await build_shop(api)


@pytest.fixture(scope="module")
async def shared(module_api: Api) -> Shop:
    """One shop for the module's tests that only read it and send what it refuses."""
    return await build_shop(module_api)


def refused(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    """The problem document of a refusal, checked for its status and type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert problem["type"] == PROBLEM + slug, problem
    return problem


def fields(problem: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["field"], e["code"]) for e in problem["errors"]]


async def head(shop: Shop) -> int:
    return int((await shop.ok("GET", f"/v1/books/{shop.book}"))["head"]["seq"])


async def raw(
    shop: Shop, method: str, path: str, body: bytes | str, who: str = "admin"
) -> httpx.Response:
    """A request with the body's bytes as given (httpx's `json=` cannot repeat a key)."""
    headers = {
        "Authorization": f"Bearer {shop.tokens[who]}",
        "Idempotency-Key": uuid.uuid4().hex,
        "Content-Type": "application/json",
    }
    content = body.encode() if isinstance(body, str) else body
    return await shop.api.client.request(method, path, content=content, headers=headers)


def nested(depth: int) -> dict[str, Any]:
    """An object `depth` levels deep: {"n": {"n": ... {} ...}}."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


async def accounts(shop: Shop) -> tuple[str, str]:
    """A funded HOUR account of a member and another member's, for postings."""
    giver, taker = await shop.member(), await shop.member()
    r = await shop.api.transfer(shop.book, shop.team_issuance, giver["hours"], 100)
    assert r.status_code == 201, r.text
    return giver["hours"], taker["hours"]


def transfer(src: str, dst: str, **extra: Any) -> dict[str, Any]:
    legs = [{"account_id": src, "amount": -5}, {"account_id": dst, "amount": 5}]
    return {"kind": "transfer", "legs": legs} | extra


# --- NUL (U+0000) in text bound for a table -----------------------------------------------


async def test_nul_in_an_organisation_name_is_refused(shared: Shop) -> None:
    before = await head(shared)
    listed = await shared.ok("GET", f"/v1/organisations?book={shared.book}")
    body = {"book": shared.book, "kind": "community", "name": "幸福\u0000社区"}
    problem = refused(
        await shared.call("POST", "/v1/organisations", body=body), 400, "malformed-json"
    )
    assert fields(problem) == [("name", "nul_character")]
    assert await head(shared) == before
    assert await shared.ok("GET", f"/v1/organisations?book={shared.book}") == listed


async def test_nul_in_a_kiosk_item_name_is_refused(shared: Shop) -> None:
    body = {"name": "大米\u00005kg", "asset": "POINT", "price": 10, "stock": 3}
    path = f"/v1/kiosk/sites/{shared.site}/items"
    problem = refused(await shared.call("POST", path, body=body), 400, "malformed-json")
    assert fields(problem) == [("name", "nul_character")]
    assert (await shared.ok("GET", path))["items"] == []


async def test_nul_in_a_stock_reason_is_refused(shop: Shop) -> None:
    item = await shop.item("食用油", 20, 5)
    body = {"kind": "restock", "delta": 3, "reason": "补货\u0000"}
    r = await shop.call("POST", f"/v1/kiosk/items/{item['id']}/stock", body=body)
    assert fields(refused(r, 400, "malformed-json")) == [("reason", "nul_character")]
    assert (await shop.get_item(item))["stock"] == 5


async def test_nul_in_a_record_reversal_reason_is_refused(shop: Shop) -> None:
    project = await shop.project()
    member = await shop.member()
    entered = await shop.manual(project["id"], member["id"], MORNING, 60)
    assert entered.status_code == 201, entered.text
    record = entered.json()
    await shop.ok("POST", f"/v1/service-records/{record['id']}/approve", "team")
    before = await head(shop)
    path = f"/v1/service-records/{record['id']}/reverse"
    r = await shop.call("POST", path, "team", body={"reason": "录错\u0000了"})
    assert fields(refused(r, 400, "malformed-json")) == [("reason", "nul_character")]
    assert await head(shop) == before
    assert (await shop.ok("GET", f"/v1/service-records/{record['id']}"))["status"] == "approved"


async def test_nul_in_account_meta_is_refused(shared: Shop) -> None:
    body = {"asset": "HOUR", "owner": "test:owner", "meta": {"note": ["ok", "x\u0000"]}}
    r = await shared.call("POST", f"/v1/books/{shared.book}/accounts", body=body)
    assert fields(refused(r, 400, "malformed-json")) == [("meta/note/1", "nul_character")]


async def test_nul_in_a_meta_key_is_refused_and_named_printably(shared: Shop) -> None:
    body = {"asset": "HOUR", "owner": "test:owner", "meta": {"a\u0000": 1}}
    r = await shared.call("POST", f"/v1/books/{shared.book}/accounts", body=body)
    assert fields(refused(r, 400, "malformed-json")) == [("meta/a\\u0000", "nul_character")]


async def test_nul_in_a_memo_is_refused(shop: Shop) -> None:
    src, dst = await accounts(shop)
    before = await head(shop)
    body = transfer(src, dst, memo="晚间\u0000陪伴")
    r = await shop.call("POST", f"/v1/books/{shop.book}/transactions", body=body)
    assert fields(refused(r, 400, "malformed-json")) == [("memo", "nul_character")]
    assert await head(shop) == before


async def test_an_unpaired_surrogate_is_refused(shop: Shop) -> None:
    src, dst = await accounts(shop)
    before = await head(shop)
    body = json.dumps(transfer(src, dst)).replace('"transfer"', '"transfer", "memo": "\\ud800"')
    r = await raw(shop, "POST", f"/v1/books/{shop.book}/transactions", body)
    assert fields(refused(r, 400, "malformed-json")) == [("memo", "unpaired_surrogate")]
    assert await head(shop) == before


async def test_nul_in_a_query_string_is_refused(shared: Shop) -> None:
    r = await shared.call("GET", f"/v1/kiosk/sites/{shared.site}/report?date=2026-11-20%00")
    assert fields(refused(r, 422, "validation")) == [("query/date", "nul_character")]
    r = await shared.call("GET", f"/v1/organisations?book={shared.book}%00")
    assert fields(refused(r, 422, "validation")) == [("query/book", "nul_character")]


async def test_nul_in_the_url_of_a_public_route_is_a_documented_422(shared: Shop) -> None:
    r = await shared.api.client.get("/healthz?probe=%00")
    assert fields(refused(r, 422, "validation")) == [("query/probe", "nul_character")]
    document = (await shared.api.client.get("/openapi.json")).json()
    assert "422" in document["paths"]["/healthz"]["get"]["responses"]


async def test_nul_in_a_path_parameter_is_refused(shared: Shop) -> None:
    r = await shared.call("GET", f"/v1/books/{shared.book}%00x")
    assert fields(refused(r, 422, "validation")) == [("path", "nul_character")]


async def test_nul_in_a_csv_import_is_refused(shared: Shop) -> None:
    headers = {
        "Authorization": f"Bearer {shared.tokens['team']}",
        "Idempotency-Key": uuid.uuid4().hex,
        "Content-Type": "text/csv",
    }
    content = b"external_id,member\nx\x00,1\n"
    r = await shared.api.client.post("/v1/service-records/import", content=content, headers=headers)
    assert fields(refused(r, 422, "validation")) == [("body", "nul_character")]


# --- NOT NULL and foreign keys --------------------------------------------------------------


async def test_a_null_organisation_name_is_a_validation_problem(shared: Shop) -> None:
    before = await head(shared)
    r = await shared.call("PATCH", f"/v1/organisations/{shared.team}", body={"name": None})
    assert [f for f, _ in fields(refused(r, 422, "validation"))] == ["name"]
    assert await head(shared) == before
    assert (await shared.ok("GET", f"/v1/organisations/{shared.team}"))["name"].startswith(
        "volunteer"
    )


async def test_a_donation_of_an_unknown_asset_is_refused(shared: Shop) -> None:
    before = await head(shared)
    body = {"asset": "NOPE", "amount": 10, "donor": {"name": "爱心企业"}}
    r = await shared.call("POST", f"/v1/organisations/{shared.team}/donations", body=body)
    assert refused(r, 404, "asset-not-found")["asset"] == "NOPE"
    assert await head(shared) == before


# --- Dates and times within 1900..2999 ------------------------------------------------------


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "1899-12-31", "3000-01-01"])
async def test_a_report_date_out_of_range_is_refused(shared: Shop, day: str) -> None:
    r = await shared.call("GET", f"/v1/kiosk/sites/{shared.site}/report?date={day}")
    assert fields(refused(r, 422, "validation")) == [("query/date", "date_out_of_range")]


async def test_report_dates_at_the_edges_of_the_range_are_answered(shared: Shop) -> None:
    for day in ("1900-01-01", "2999-12-31"):
        await shared.ok("GET", f"/v1/kiosk/sites/{shared.site}/report?date={day}")


async def test_a_project_ending_in_the_year_10000_utc_is_refused(shared: Shop) -> None:
    before = await head(shared)
    body = {
        "book": shared.book,
        "community_id": shared.community,
        "title": "陪伴空巢老人",
        "category": "elder_care",
        "place": "幸福里社区活动中心",
        "starts_at": MORNING.isoformat(),
        "ends_at": "9999-12-31T23:59:00-08:00",
        "capacity": 10,
    }
    r = await shared.call("POST", "/v1/projects", "team", body=body)
    assert fields(refused(r, 422, "validation")) == [("ends_at", "datetime_out_of_range")]
    # 2999-12-31T23:00-08:00 is already in the year 3000 UTC.
    body["ends_at"] = "2999-12-31T23:00:00-08:00"
    r = await shared.call("POST", "/v1/projects", "team", body=body)
    assert fields(refused(r, 422, "validation")) == [("ends_at", "datetime_out_of_range")]
    assert await head(shared) == before
    assert (await shared.ok("GET", f"/v1/projects?book={shared.book}"))["items"] == []


async def test_a_stats_period_out_of_range_is_refused(shared: Shop) -> None:
    r = await shared.call("GET", "/v1/stats/service?group_by=month&from=0001-01-01")
    assert fields(refused(r, 422, "validation")) == [("query/from", "date_out_of_range")]


# --- Nesting depth -------------------------------------------------------------------------


async def test_a_body_nested_32_deep_is_accepted(shop: Shop) -> None:
    src, dst = await accounts(shop)
    # The body is level 1 and meta level 2: meta nests 31 levels, the body 32.
    body = transfer(src, dst, meta={"deep": nested(MAX_JSON_DEPTH - 2)})
    assert check_json_body(json.dumps(body).encode()) == []
    r = await shop.call("POST", f"/v1/books/{shop.book}/transactions", body=body)
    assert r.status_code == 201, r.text
    assert r.json()["entry"]["meta"]["deep"] == body["meta"]["deep"]


async def test_a_body_nested_33_deep_is_refused(shop: Shop) -> None:
    src, dst = await accounts(shop)
    before = await head(shop)
    body = transfer(src, dst, meta={"deep": nested(MAX_JSON_DEPTH - 1)})
    r = await shop.call("POST", f"/v1/books/{shop.book}/transactions", body=body)
    problem = refused(r, 400, "malformed-json")
    assert fields(problem) == [("meta/deep" + "/n" * 30, "json_too_deep")]
    assert await head(shop) == before


async def test_account_meta_nested_hundreds_deep_is_refused(shared: Shop) -> None:
    body = {"asset": "HOUR", "owner": "test:owner", "meta": nested(400)}
    r = await shared.call("POST", f"/v1/books/{shared.book}/accounts", body=body)
    assert [c for _, c in fields(refused(r, 400, "malformed-json"))] == ["json_too_deep"]
    deeper = "[" * 20_000 + "]" * 20_000  # past the parser's own recursion limit
    r = await raw(shared, "POST", f"/v1/books/{shared.book}/accounts", deeper)
    assert fields(refused(r, 400, "malformed-json")) == [("", "json_too_deep")]


# --- Duplicate keys ------------------------------------------------------------------------


async def test_a_duplicate_top_level_key_is_refused(shop: Shop) -> None:
    other = await shop.api.book()
    before = await shop.ok("GET", f"/v1/organisations?book={other}", "platform")
    body = f'{{"book":"{shop.book}","book":"{other}","kind":"community","name":"幸福社区"}}'
    r = await raw(shop, "POST", "/v1/organisations", body, "platform")
    assert fields(refused(r, 400, "malformed-json")) == [("book", "duplicate_key")]
    assert await shop.ok("GET", f"/v1/organisations?book={other}", "platform") == before


async def test_a_duplicate_nested_key_is_refused(shop: Shop) -> None:
    src, dst = await accounts(shop)
    before = await head(shop)
    body = (
        f'{{"legs":[{{"account_id":"{src}","amount":-5,"amount":-50}},'
        f'{{"account_id":"{dst}","amount":5}}]}}'
    )
    r = await raw(shop, "POST", f"/v1/books/{shop.book}/transactions", body)
    assert fields(refused(r, 400, "malformed-json")) == [("legs/0/amount", "duplicate_key")]
    assert await head(shop) == before


# --- Personal data bound for the journal ---------------------------------------------------


@pytest.mark.parametrize("memo", [PHONE, RESIDENT_ID])
async def test_personal_data_in_a_memo_is_refused(shop: Shop, memo: str) -> None:
    src, dst = await accounts(shop)
    before = await head(shop)
    body = transfer(src, dst, memo=memo)
    r = await shop.call("POST", f"/v1/books/{shop.book}/transactions", body=body)
    assert fields(refused(r, 422, "personal-data-in-text")) == [("memo", "personal_data")]
    assert await head(shop) == before


@pytest.mark.parametrize("memo", [PHONE, RESIDENT_ID])
async def test_personal_data_in_a_hold_memo_is_refused(shop: Shop, memo: str) -> None:
    src, dst = await accounts(shop)
    before = await head(shop)
    body = {"from_account_id": src, "to_account_id": dst, "amount": 5, "memo": memo}
    r = await shop.call("POST", f"/v1/books/{shop.book}/holds", body=body)
    assert fields(refused(r, 422, "personal-data-in-text")) == [("memo", "personal_data")]
    assert await head(shop) == before


@pytest.mark.parametrize("value", [PHONE, RESIDENT_ID])
async def test_personal_data_in_a_meta_value_is_refused(shop: Shop, value: str) -> None:
    src, dst = await accounts(shop)
    before = await head(shop)
    body = transfer(src, dst, meta={"visit": {"notes": ["准时到达", value]}})
    r = await shop.call("POST", f"/v1/books/{shop.book}/transactions", body=body)
    problem = refused(r, 422, "personal-data-in-text")
    assert fields(problem) == [("meta/visit/notes/1", "personal_data")]
    hold = {"from_account_id": src, "to_account_id": dst, "amount": 5, "meta": {"k": value}}
    r = await shop.call("POST", f"/v1/books/{shop.book}/holds", body=hold)
    assert fields(refused(r, 422, "personal-data-in-text")) == [("meta/k", "personal_data")]
    assert await head(shop) == before


async def test_personal_data_in_a_record_reason_is_refused(shop: Shop) -> None:
    project = await shop.project()
    member = await shop.member()
    entered = await shop.manual(project["id"], member["id"], MORNING, 60)
    record = entered.json()
    path = f"/v1/service-records/{record['id']}/reject"
    r = await shop.call("POST", path, "team", body={"reason": PHONE})
    assert fields(refused(r, 422, "personal-data-in-text")) == [("reason", "personal_data")]
    assert (await shop.ok("GET", f"/v1/service-records/{record['id']}"))["status"] == "pending"


async def test_personal_data_in_names_bound_for_notices_is_refused(shared: Shop) -> None:
    before = await head(shared)
    created = await shared.call(
        "POST",
        "/v1/organisations",
        "admin",
        body={"book": shared.book, "kind": "volunteer_team", "name": f"联系{PHONE}志愿队"},
    )
    assert fields(refused(created, 422, "personal-data-in-text")) == [("name", "personal_data")]
    renamed = await shared.call(
        "PATCH", f"/v1/organisations/{shared.team}", "admin", body={"name": f"队长{PHONE}"}
    )
    assert fields(refused(renamed, 422, "personal-data-in-text")) == [("name", "personal_data")]
    asset = await shared.call(
        "POST",
        "/v1/assets",
        "platform",
        body={"code": "PHX", "name": f"积分{PHONE}", "unit": "分"},
    )
    assert fields(refused(asset, 422, "personal-data-in-text")) == [("name", "personal_data")]
    assert await head(shared) == before  # no notice.* entry


async def test_text_without_personal_data_is_posted(shop: Shop) -> None:
    src, dst = await accounts(shop)
    # Short numbers, amounts and dates are not phone or ID numbers.
    body = transfer(src, dst, memo="3 号楼 12 户，2026-11-20 送餐", meta={"room": "1203"})
    r = await shop.call("POST", f"/v1/books/{shop.book}/transactions", body=body)
    assert r.status_code == 201, r.text


# --- Constraint violations that slip through: one mapping -----------------------------------


async def test_constraint_violations_reaching_the_database_are_409_or_422(shop: Shop) -> None:
    app = shop.api.app

    async def violate(kind: str) -> None:
        statements = {
            "unique": "INSERT INTO t VALUES (1, 1), (1, 2)",
            "not_null": "INSERT INTO t VALUES (NULL, 1)",
            "check": "INSERT INTO t VALUES (2, -1)",
            "invalid_value": "SELECT 'x' || CAST(:v AS text)",
        }
        async with app.state.sessions() as session, session.begin():
            await session.execute(
                text(
                    "CREATE TEMP TABLE t (a int NOT NULL UNIQUE, b int CHECK (b > 0)) "
                    "ON COMMIT DROP"
                )
            )
            await session.execute(text(statements[kind]), {"v": "a\x00b"})

    async def route(kind: str) -> None:
        await violate(kind)

    app.add_api_route("/test-only/violate/{kind}", route, methods=["GET"])
    expected = {"unique": 409, "not_null": 422, "check": 422, "invalid_value": 422}
    for kind, status in expected.items():
        r = await shop.api.client.get(f"/test-only/violate/{kind}")
        problem = refused(r, status, "conflict" if status == 409 else "validation")
        if status == 422:
            assert fields(problem)[0][1] == kind


def test_database_refusal_reads_the_sqlstate_through_sqlalchemy() -> None:
    cause = asyncpg.exceptions.ForeignKeyViolationError("fk")
    wrapped = IntegrityError("INSERT ...", {}, cause)
    error = database_refusal(wrapped)
    assert error is not None and error.status == 422 and error.slug == "validation"
    # asyncpg's own refusal of an argument it cannot encode (an int past 64 bits, a bad text).
    encoding = asyncpg.exceptions.DataError("invalid input for query argument $1")
    assert (refusal := database_refusal(encoding)) is not None and refusal.status == 422
    unique = database_refusal(IntegrityError("INSERT ...", {}, asyncpg.UniqueViolationError("u")))
    assert unique is not None and unique.status == 409 and unique.slug == "conflict"
    assert database_refusal(RuntimeError("not the database")) is None
    assert database_refusal(asyncpg.exceptions.SerializationError("retry")) is None


async def test_the_body_reaches_the_route_unchanged(shop: Shop) -> None:
    # Whitespace and member order are kept: the idempotency hash of the body sees the same.
    src, dst = await accounts(shop)
    key = uuid.uuid4().hex
    body = json.dumps(transfer(src, dst), indent=3)
    headers = {
        "Authorization": f"Bearer {shop.tokens['admin']}",
        "Idempotency-Key": key,
        "Content-Type": "application/json",
    }
    path = f"/v1/books/{shop.book}/transactions"
    first = await shop.api.client.post(path, content=body, headers=headers)
    again = await shop.api.client.post(path, content=body, headers=headers)
    assert first.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
