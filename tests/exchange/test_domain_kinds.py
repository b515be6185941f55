"""The kinds the exchange services post cannot be posted by a client through POST /transactions:
caps, reports and statistics are read back from them (app/ledger/journal.py DOMAIN_KIND_ROUTES)."""

from __future__ import annotations

import pytest

from app.exchange.exchanges import service as exchanges
from app.exchange.expiry import service as expiry
from app.exchange.gifts import service as gifts
from app.exchange.pools import service as pools
from app.exchange.public_pool import service as public_pool
from app.exchange.recognition import transfers as recognition
from tests.conftest import Api
from tests.volunteering.district import District, build_district

KINDS = [
    exchanges.KIND_EXCHANGE,
    pools.KIND_DONATION,
    gifts.KIND_GIFT,
    public_pool.KIND_DONATION,
    public_pool.KIND_GRANT,
    recognition.KIND_OUT,
    recognition.KIND_IN,
    expiry.KIND_EXPIRY,
    "service_credit",
]


@pytest.fixture
async def district(api: Api) -> District:
    return await build_district(api)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_client_cannot_post_a_domain_kind(district: District, kind: str) -> None:
    d = district
    member = await d.member()
    legs = [
        {"account_id": d.team_issuance, "amount": -60},
        {"account_id": member["hours"], "amount": 60},
    ]
    path = f"/v1/books/{d.book}/transactions"
    r = await d.call("POST", path, "admin", body={"kind": kind, "legs": legs})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["field"] == "kind"
    # The same legs under an ordinary kind post: the refusal is the kind's alone.
    r = await d.call("POST", path, "admin", body={"kind": "transfer", "legs": legs})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("key", ["actor", "overflow", "counterpart"])
async def test_a_client_cannot_set_the_ledgers_meta_keys(district: District, key: str) -> None:
    d = district
    member = await d.member()
    legs = [
        {"account_id": d.team_issuance, "amount": -60},
        {"account_id": member["hours"], "amount": 60},
    ]
    body = {"kind": "transfer", "legs": legs, "meta": {key: []}}
    r = await d.call("POST", f"/v1/books/{d.book}/transactions", "admin", body=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "meta"
