"""Organisations: the region tree, their accounts, and the notices that record changes."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import Api, ScratchDatabase
from tests.identity.test_credentials import notices


async def create(api: Api, key: str, **body: Any) -> Any:
    return await api.client.post("/v1/organisations", json=body, headers={"Idempotency-Key": key})


async def test_the_region_tree_with_accounts_is_recorded_in_the_journal(
    api: Api, database: ScratchDatabase
) -> None:
    book = await api.book()
    street = await create(api, "s", book=book, kind="community", name="新华街道")
    assert street.status_code == 201, street.text
    station_body = {
        "book": book,
        "kind": "social_work_station",
        "name": "新华社工站",
        "parent_id": street.json()["id"],
        "accounts": [
            {"asset": "HOUR", "purpose": "issuance", "overdraft_limit": 600_000},
            {"asset": "POINT", "purpose": "pool"},
        ],
    }
    station = await create(api, "w", **station_body)
    assert station.status_code == 201, station.text
    org = station.json()
    assert [(a["asset"], a["purpose"], a["overdraft_limit"]) for a in org["accounts"]] == [
        ("HOUR", "issuance", 600_000),
        ("POINT", "pool", 0),
    ]
    account = await api.balance(org["accounts"][0]["id"])
    assert account["owner"] == f"org:{org['id']}" and account["policy"] == "overdraft_limit"
    replay = await create(api, "w", **station_body)
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.json()["id"] == org["id"]
    # A street cannot become a child of its own station.
    cycle = await api.client.patch(
        f"/v1/organisations/{street.json()['id']}",
        json={"parent_id": org["id"]},
        headers={"Idempotency-Key": "p1"},
    )
    assert cycle.status_code == 422
    assert cycle.json()["type"] == "urn:timebank:problem:invalid-parent"
    renamed = await api.client.patch(
        f"/v1/organisations/{org['id']}",
        json={"name": "新华街道社工站"},
        headers={"Idempotency-Key": "p2"},
    )
    assert renamed.status_code == 200 and renamed.json()["name"] == "新华街道社工站"
    recorded = await notices(database, book)
    assert [n["kind"] for n in recorded] == [
        "notice.organisation_created",
        "notice.organisation_created",
        "notice.organisation_changed",
    ]
    assert recorded[1]["meta"]["accounts"] == [a["id"] for a in org["accounts"]]
    assert recorded[2]["meta"]["name"] == "新华街道社工站"
    assert recorded[2]["meta"]["parent_id"] == street.json()["id"]


async def test_a_certifying_organisation_gets_its_hour_issuance_account(api: Api) -> None:
    book = await api.book()
    station = (await create(api, "s", book=book, kind="social_work_station", name="社工站")).json()
    assert [(a["asset"], a["purpose"]) for a in station["accounts"]] == [("HOUR", "issuance")]
    hours = await api.balance(station["accounts"][0]["id"])
    assert hours["owner"] == f"org:{station['id']}" and hours["overdraft_limit"] == 10**9
    # One it names is the one it gets; a kiosk site certifies nothing and gets none.
    named = [{"asset": "HOUR", "purpose": "issuance", "overdraft_limit": 6000}]
    team = await create(api, "t", book=book, kind="volunteer_team", name="队", accounts=named)
    assert [a["overdraft_limit"] for a in team.json()["accounts"]] == [6000]
    site = (await create(api, "k", book=book, kind="kiosk_site", name="爱心超市")).json()
    assert site["accounts"] == []


async def test_a_parent_must_be_in_the_same_book(api: Api) -> None:
    home, away = await api.book(), await api.book()
    parent = await create(api, "a", book=away, kind="community", name="外区")
    child = await create(
        api, "b", book=home, kind="community", name="本区", parent_id=parent.json()["id"]
    )
    assert child.status_code == 422 and child.json()["type"].endswith("invalid-parent")


async def test_concurrent_retries_of_one_action_create_one_organisation(
    api: Api, database: ScratchDatabase
) -> None:
    book = await api.book()
    body = {"book": book, "kind": "charity", "name": "社区基金会"}
    answers = await asyncio.gather(
        *(
            api.client.post("/v1/organisations", json=body, headers={"Idempotency-Key": "same"})
            for _ in range(6)
        )
    )
    assert [r.status_code for r in answers] == [201] * 6
    assert len({r.json()["id"] for r in answers}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in answers) == 5
    listed = await api.client.get("/v1/organisations", params={"book": book})
    assert len(listed.json()["items"]) == 1
    assert [n["kind"] for n in await notices(database, book)] == ["notice.organisation_created"]
