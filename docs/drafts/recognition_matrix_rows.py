"""Scratch: proposed authorization-matrix rows for the recognition routes (deleted after)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import Api
from tests.identity.test_authorization_matrix import (
    CALLERS,
    MEMBER_READ,
    OK,
    ADMIN_ONLY,
    A,
    H,
    Call,
    _,
    _fill,
    _headers,
    fixed,
)
from tests.identity.world import World, build_world

_cache: dict[str, str] = {}


async def _agreement(w: World, to_book: str | None = None) -> str:
    body = {"from_book": w.home, "to_book": to_book or await w.api.book()}
    return str((await w.post("/v1/recognition/agreements", body))["id"])


async def standing_agreement(w: World) -> str:
    if "agreement" not in _cache:
        _cache["agreement"] = await _agreement(w)
    return _cache["agreement"]


async def new_agreement(w: World) -> Call:
    return Call("POST", "/v1/recognition/agreements", {"from_book": w.home, "to_book": await w.api.book()})


async def agreement_read(w: World) -> Call:
    return Call("GET", f"/v1/recognition/agreements/{await standing_agreement(w)}")


async def agreement_end(w: World) -> Call:
    return Call("POST", f"/v1/recognition/agreements/{await _agreement(w)}/end")


async def transfer_m(w: World) -> Call:
    body = {"agreement_id": await standing_agreement(w), "member_id": w.member, "amount": 1}
    return Call("POST", "/v1/recognition/transfers", body)


async def transfer_read(w: World) -> Call:
    if "transfer" not in _cache:
        body = {"agreement_id": await standing_agreement(w), "member_id": w.member, "amount": 1}
        _cache["transfer"] = (await w.post("/v1/recognition/transfers", body))["id"]
    return Call("GET", f"/v1/recognition/transfers/{_cache['transfer']}")


ROWS: dict[tuple[str, str], tuple[Any, tuple[Any, ...]]] = {
    ("POST", "/v1/recognition/agreements"): (new_agreement, (OK, H, _, _, _, _, _, _, _, H, _, A)),
    ("GET", "/v1/recognition/agreements"): (
        fixed("GET", "/v1/recognition/agreements"),
        (OK, OK, OK, _, _, OK, OK, _, _, OK, OK, A),
    ),
    ("GET", "/v1/recognition/agreements/{agreement_id}"): (
        agreement_read,
        (OK, OK, OK, _, _, OK, OK, _, _, H, H, A),
    ),
    ("POST", "/v1/recognition/agreements/{agreement_id}/end"): (agreement_end, ADMIN_ONLY),
    ("POST", "/v1/recognition/transfers"): (transfer_m, (OK, OK, _, _, _, OK, H, _, _, H, _, A)),
    ("GET", "/v1/recognition/transfers/{transfer_id}"): (transfer_read, MEMBER_READ),
    ("GET", "/v1/members/{member_id}/recognition-transfers"): (
        fixed("GET", "/v1/members/{w.member}/recognition-transfers"),
        MEMBER_READ,
    ),
    ("GET", "/v1/recognition/reconciliation"): (
        fixed("GET", "/v1/recognition/reconciliation"),
        (OK, OK, OK, _, _, _, _, _, _, OK, OK, A),
    ),
}


@pytest.fixture
async def world(api: Api) -> World:
    _cache.clear()
    return await build_world(api)


async def test_rows(api: Api, world: World) -> None:
    routes = {
        (m.upper(), p) for p, ops in api.app.openapi()["paths"].items() for m in ops
        if "recognition" in p
    }
    assert routes == set(ROWS)
    mismatches = []
    for (method, template), (build, expected) in ROWS.items():
        for caller, want in zip(CALLERS, expected, strict=True):
            call = await build(world)
            r = await api.client.request(
                call.method,
                call.path,
                json=_fill(call.body, world) if call.body is not None else None,
                headers=_headers(world, caller),
            )
            got = OK if 200 <= r.status_code < 300 else r.status_code
            if got != want:
                mismatches.append(f"{method} {template} as {caller}: {r.status_code} {r.text[:200]}")
            if r.status_code >= 400:
                assert r.headers["content-type"] == "application/problem+json"
    assert mismatches == []
