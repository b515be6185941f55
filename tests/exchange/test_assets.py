"""Defining assets, listing them, changing their validity, and who may."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import Api
from tests.volunteering.district import District, build_district


@pytest.fixture
async def d(api: Api) -> District:
    """The volunteering district, plus an admin of another book."""
    d = await build_district(api)
    away = await api.book()
    admin = await api.client.post(
        "/v1/credentials",
        json={"role": "admin", "book": away},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    d.tokens["admin_away"] = admin.json()["token"]
    return d


def code() -> str:
    return f"F{uuid.uuid4().hex[:8].upper()}"


async def notices(d: District, kind: str, book: str | None = None) -> list[dict[str, Any]]:
    async with d.api.app.state.sessions() as session:
        rows = await session.execute(
            text(
                "SELECT body FROM journal_entries WHERE book_code = :b AND kind = :k ORDER BY seq"
            ),
            {"b": book or d.book, "k": kind},
        )
        return [json.loads(bytes(row.body)) for row in rows]


async def test_an_admin_defines_an_asset_of_an_organisation_of_its_book(d: District) -> None:
    asset = code()
    body = {
        "code": asset,
        "name": "Foundation points",
        "unit": "point",
        "issuer_organisation_id": d.team,
        "expires_after_years": 2,
    }
    key = uuid.uuid4().hex
    created = await d.call("POST", "/v1/assets", "admin", body=body, key=key)
    assert created.status_code == 201, created.text
    read = created.json()
    assert read["code"] == asset and read["issuer_organisation_id"] == d.team
    assert read["issuer_book"] == d.book and read["expires_after_years"] == 2
    again = await d.call("POST", "/v1/assets", "admin", body=body, key=key)
    assert again.status_code == 201 and again.json() == read
    assert again.headers["Idempotent-Replayed"] == "true"
    [notice] = await notices(d, "notice.asset_defined")
    assert notice["legs"] == []
    facts = dict(notice["meta"])
    assert set(facts.pop("actor")) == {"credential"}
    assert facts == {
        "asset": asset,
        "name": "Foundation points",
        "unit": "point",
        "issuer_organisation_id": d.team,
        "expires_after_years": 2,
    }
    # Anyone authenticated reads assets.
    for who in ("auditor", "team", "kiosk", "admin_away"):
        codes = [a["code"] for a in (await d.ok("GET", "/v1/assets", who))["items"]]
        assert codes == sorted(codes) and {"HOUR", "POINT", asset} <= set(codes)
        assert (await d.ok("GET", f"/v1/assets/{asset}", who)) == read
    mini = await d.call("GET", "/v1/assets/POINT", "mini")
    assert mini.status_code == 200
    assert mini.json()["unit"] == "point" and mini.json()["issuer_organisation_id"] is None
    anonymous = await d.api.client.get("/v1/assets", headers={"Authorization": ""})
    assert anonymous.status_code == 401


async def test_refusals(d: District) -> None:
    base = {"code": code(), "name": "Points", "unit": "point", "issuer_organisation_id": d.team}
    for who in ("auditor", "team", "mini", "kiosk"):
        r = await d.call("POST", "/v1/assets", who, body=base)
        assert r.status_code == 403, (who, r.text)
    # Without an issuer: platform admins only.
    plain = {"code": code(), "name": "Points", "unit": "point"}
    r = await d.call("POST", "/v1/assets", "admin", body=plain)
    assert r.status_code == 403 and r.json()["type"] == "urn:timebank:problem:forbidden"
    r = await d.call("POST", "/v1/assets", "platform", body=plain)
    assert r.status_code == 201 and r.json()["issuer_organisation_id"] is None
    assert r.json()["expires_after_years"] is None
    # An issuer out of reach is answered as missing.
    r = await d.call("POST", "/v1/assets", "admin_away", body=base)
    assert r.status_code == 404
    assert r.json()["type"] == "urn:timebank:problem:organisation-not-found"
    r = await d.call(
        "POST", "/v1/assets", "platform", body=base | {"issuer_organisation_id": str(uuid.uuid4())}
    )
    assert r.status_code == 404
    # Codes are unique, HOUR and POINT included.
    for taken in ("HOUR", plain["code"]):
        r = await d.call("POST", "/v1/assets", "platform", body=plain | {"code": taken})
        assert r.status_code == 409 and r.json()["type"] == "urn:timebank:problem:asset-exists"
    for bad in (
        {"code": "points"},
        {"code": "P" * 17},
        {"code": "9P"},
        {"expires_after_years": 51},
        {"expires_after_years": -1},
        {"expires_after_years": "2"},
        {"name": ""},
        {"unit": "u" * 33},
        {"colour": "red"},
    ):
        r = await d.call("POST", "/v1/assets", "platform", body=base | {"code": code()} | bad)
        assert r.status_code == 422, (bad, r.text)
    r = await d.call("GET", "/v1/assets/NOPE", "auditor")
    assert r.status_code == 404 and r.json()["type"] == "urn:timebank:problem:asset-not-found"
    assert await notices(d, "notice.asset_defined") == []


async def test_a_code_is_defined_once_under_concurrent_requests(d: District) -> None:
    body = {"code": code(), "name": "Points", "unit": "point", "issuer_organisation_id": d.team}
    answers = await asyncio.gather(
        *(d.call("POST", "/v1/assets", "admin", body=body) for _ in range(12))
    )
    assert sorted(r.status_code for r in answers) == [201] + [409] * 11
    assert len(await notices(d, "notice.asset_defined")) == 1


async def test_changing_the_validity_period(d: District) -> None:
    asset = code()
    body = {"code": asset, "name": "Points", "unit": "point", "issuer_organisation_id": d.team}
    await d.ok("POST", "/v1/assets", "admin", body=body)
    path = f"/v1/assets/{asset}"
    for who, status in (("team", 403), ("auditor", 403), ("admin_away", 403)):
        r = await d.call("PATCH", path, who, body={"expires_after_years": 3})
        assert r.status_code == status, (who, r.text)
    changed = await d.ok("PATCH", path, "admin", body={"expires_after_years": 3})
    assert changed["expires_after_years"] == 3
    # The same value again changes nothing and records nothing.
    assert (await d.ok("PATCH", path, "admin", body={"expires_after_years": 3})) == changed
    cleared = await d.ok("PATCH", path, "platform", body={"expires_after_years": None})
    assert cleared["expires_after_years"] is None
    facts = [n["meta"] for n in await notices(d, "notice.asset_changed")]
    assert [(f["expires_after_years"], f["previous_expires_after_years"]) for f in facts] == [
        (3, None),
        (None, 3),
    ]
    assert all(f["asset"] == asset and f["issuer_organisation_id"] == d.team for f in facts)
    # An asset without an issuer: platform admins only, and no book records it.
    r = await d.call("PATCH", "/v1/assets/POINT", "admin", body={"expires_after_years": 2})
    assert r.status_code == 403
    assert (await d.ok("PATCH", "/v1/assets/POINT", "platform", body={"expires_after_years": 2}))[
        "expires_after_years"
    ] == 2
    assert (await d.ok("GET", "/v1/assets/POINT", "mini"))["expires_after_years"] == 2
    for bad in ({}, {"expires_after_years": 51}, {"name": "x", "expires_after_years": 1}):
        r = await d.call("PATCH", path, "admin", body=bad)
        assert r.status_code == 422, (bad, r.text)
    r = await d.call("PATCH", "/v1/assets/NOPE", "platform", body={"expires_after_years": 1})
    assert r.status_code == 404 and r.json()["type"] == "urn:timebank:problem:asset-not-found"
