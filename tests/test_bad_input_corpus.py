"""A corpus of bad inputs, each once answered 500 or accepted: now a 4xx problem document.

Gathered from issue 19 and from the fuzz run (tests/test_fuzz_openapi.py): NUL characters,
JSON depth, duplicate keys, date ranges, database constraint violations, personal data in
journal text (the input policy, README); 403 before 422, consent to enrol, conflicting
registrations (the contract); proofs past the head.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import Api
from tests.kiosk.shop import build_shop
from tests.volunteering.district import MORNING


def nested(depth: int) -> Any:
    """A JSON value `depth` objects deep."""
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


@dataclass(frozen=True)
class Bad:
    """One bad request: `{name}` in the path, the query and text bodies names a seeded object."""

    method: str
    path: str
    body: Any = None
    raw: str | None = None  # a body sent byte for byte (duplicate keys, say)
    who: str = "platform"
    member: str | None = None
    expected: int | None = None  # an exact status, where the class 4xx is not enough


CORPUS: list[Any] = [
    pytest.param(
        Bad(
            "POST", "/v1/organisations", {"book": "{book}", "kind": "community", "name": "社\x00区"}
        ),
        id="organisation-name-with-nul",
    ),
    pytest.param(
        Bad(
            "POST",
            "/v1/kiosk/sites/{site}/items",
            {"name": "大米\x00", "asset": "POINT", "price": 10, "stock": 1},
            who="admin",
        ),
        id="kiosk-item-name-with-nul",
    ),
    pytest.param(
        Bad(
            "POST",
            "/v1/kiosk/items/{item}/stock",
            {"kind": "restock", "delta": 1, "reason": "到货\x00"},
            who="admin",
        ),
        id="stock-reason-with-nul",
    ),
    pytest.param(
        Bad("POST", "/v1/service-records/{record}/reverse", {"reason": "录错\x00"}, who="team"),
        id="record-reversal-reason-with-nul",
    ),
    pytest.param(
        Bad(
            "POST",
            "/v1/books/{book}/accounts",
            {"asset": "HOUR", "owner": "test:owner", "meta": {"note": "a\x00b"}},
        ),
        id="account-meta-with-nul",
    ),
    pytest.param(
        Bad("POST", "/v1/assets", {"code": "FUZZ", "unit": "z\x00", "name": "积分"}),
        id="asset-unit-with-nul-found-by-fuzz",
    ),
    pytest.param(
        Bad("POST", "/v1/organisations/{community}/members", {"volunteer_number": "7\x00{"}),
        id="volunteer-number-with-nul-found-by-fuzz",
    ),
    pytest.param(
        Bad("PATCH", "/v1/organisations/{community}", {"name": None}),
        id="organisation-name-null",
    ),
    pytest.param(
        Bad(
            "PATCH",
            "/v1/organisations/{community}",
            {"maker_checker": False, "name": None, "parent_id": None, "person_in_charge": None},
        ),
        id="organisation-all-null-found-by-fuzz",
    ),
    pytest.param(
        Bad(
            "POST",
            "/v1/organisations/{charity}/donations",
            {"asset": "NOPE", "amount": 1, "donor": {"name": "王善人"}},
        ),
        id="donation-of-unknown-asset",
    ),
    pytest.param(
        Bad("GET", "/v1/kiosk/sites/{site}/report?date=0001-01-01"),
        id="kiosk-report-on-day-one",
    ),
    pytest.param(
        Bad("GET", "/v1/kiosk/sites/{site}/report?date=9999-12-31"),
        id="kiosk-report-on-the-last-day",
    ),
    pytest.param(
        Bad(
            "POST",
            "/v1/projects",
            {
                "book": "{book}",
                "community_id": "{community}",
                "title": "陪伴空巢老人",
                "category": "elder_care",
                "place": "活动中心",
                "starts_at": "2026-11-21T09:00:00+08:00",
                "ends_at": "9999-12-31T23:59:00-08:00",
                "capacity": 10,
            },
            who="team",
        ),
        id="project-ending-after-year-9999",
    ),
    pytest.param(
        Bad(
            "POST",
            "/v1/books/{book}/accounts",
            {"asset": "HOUR", "owner": "test:owner", "meta": nested(300)},
        ),
        id="account-meta-300-deep",
    ),
    pytest.param(
        Bad(
            "POST",
            "/v1/books/{book}/transactions",
            {
                "kind": "transfer",
                "legs": [
                    {"account_id": "{issuance}", "amount": -1},
                    {"account_id": "{hours}", "amount": 1},
                ],
                "meta": nested(400),
            },
        ),
        id="transaction-meta-400-deep",
    ),
    pytest.param(
        Bad(
            "POST",
            "/v1/organisations",
            raw='{"book": "{book}", "book": "{other_book}", "kind": "community", "name": "两本"}',
        ),
        id="duplicate-keys",
    ),
    pytest.param(
        Bad(
            "POST",
            "/v1/books/{book}/transactions",
            {
                "kind": "transfer",
                "legs": [
                    {"account_id": "{issuance}", "amount": -1},
                    {"account_id": "{hours}", "amount": 1},
                ],
                "memo": "联系电话 13812345678",
            },
        ),
        id="phone-number-in-memo",
    ),
    pytest.param(
        Bad(
            "POST",
            "/v1/books/{book}/transactions",
            {
                "kind": "transfer",
                "legs": [
                    {"account_id": "{issuance}", "amount": -1},
                    {"account_id": "{hours}", "amount": 1},
                ],
                "meta": {"who": "身份证 11010519491231002X"},
            },
        ),
        id="resident-id-in-meta",
    ),
    pytest.param(
        Bad(
            "POST",
            "/v1/books/{book}/holds",
            {
                "from_account_id": "{issuance}",
                "to_account_id": "{hours}",
                "amount": 1,
                "expires_in": 600,
                "memo": "电话13812345678",
            },
        ),
        id="phone-number-in-hold-memo",
    ),
    pytest.param(
        Bad("POST", "/v1/exchange-rules", {}, who="auditor", expected=403),
        id="auditor-posting-an-empty-rule",
    ),
    pytest.param(
        Bad(
            "POST",
            "/v1/organisations/{other_team}/members",
            {"volunteer_number": "{volunteer_number}"},
            who="other_team",
        ),
        id="enrolling-by-a-guessed-volunteer-number",
    ),
    pytest.param(
        Bad(
            "POST",
            "/v1/members",
            {
                "book": "{book}",
                "display_name": "冒名",
                "phone": "13700001111",
                "birth_date": "1970-01-01",
                "identity": {"provider": "wechat", "subject": "{subject}"},
            },
            who="other_team",
            expected=409,
        ),
        id="registering-a-known-identity-with-other-personal-data",
    ),
    pytest.param(
        Bad("GET", "/v1/books/{book}/proofs/inclusion?seq=100000"),
        id="inclusion-proof-past-the-head",
    ),
    pytest.param(
        Bad("GET", "/v1/books/{book}/proofs/consistency?first=100000"),
        id="consistency-proof-past-the-head",
    ),
]


@pytest.fixture(scope="module")
async def place(module_api: Api) -> tuple[Any, dict[str, str]]:
    """A district with a kiosk, a charity with pools, an approved record and a known member.

    Built once for the module: every request of the corpus is refused, so none writes."""
    api = module_api
    shop = await build_shop(api)
    shop.at(MORNING + timedelta(hours=4))
    member = await shop.member()
    project = await shop.project()
    entered = await shop.manual(project["id"], member["id"], MORNING, 60)
    assert entered.status_code == 201, entered.text
    record = entered.json()["id"]
    await shop.ok("POST", f"/v1/service-records/{record}/approve", "team")
    charity = (await shop.organisation("charity"))["id"]
    for asset in ("HOUR", "POINT"):
        await shop.ok("POST", f"/v1/organisations/{charity}/pools", body={"asset": asset})
    item = await shop.item("大米 5kg", 30, stock=5)
    subject = f"o_{uuid.uuid4().hex}"
    known = await shop.ok(
        "POST",
        "/v1/members",
        "team",
        body={
            "book": shop.book,
            "display_name": "王小明",
            "phone": "13812345678",
            "birth_date": "1990-05-17",
            "identity": {"provider": "wechat", "subject": subject},
        },
    )
    names = {
        "book": shop.book,
        "other_book": await api.book(),
        "site": shop.site,
        "item": item["id"],
        "record": record,
        "community": shop.community,
        "charity": charity,
        "other_team": shop.other_team,
        "issuance": shop.team_issuance,
        "hours": member["hours"],
        "volunteer_number": known["volunteer_number"],
        "subject": subject,
    }
    return shop, names


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, real in names.items():
            value = value.replace("{" + name + "}", real)
        return value
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    return value


@pytest.mark.parametrize("bad", CORPUS)
async def test_bad_input_is_a_4xx_problem(bad: Bad, place: tuple[Any, dict[str, str]]) -> None:
    shop, names = place
    headers = {
        "Authorization": f"Bearer {shop.tokens[bad.who]}",
        "Idempotency-Key": uuid.uuid4().hex,
    }
    if bad.member is not None:
        headers["X-Member-Id"] = _fill(bad.member, names)
    if bad.raw is not None:
        content = _fill(bad.raw, names).encode()
    elif bad.body is not None:
        content = json.dumps(_fill(bad.body, names)).encode()
    else:
        content = None
    if content is not None:
        headers["Content-Type"] = "application/json"
    # A 500 must come back as an answer, not as the app's exception raised in the test.
    transport = httpx.ASGITransport(app=shop.api.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.request(
            bad.method, _fill(bad.path, names), content=content, headers=headers
        )
    if bad.expected is not None:
        assert response.status_code == bad.expected, response.text
    else:
        assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].startswith("urn:timebank:problem:")
