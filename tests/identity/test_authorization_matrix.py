"""Every route × every caller, with the status docs/authorization.md promises.

The routes come from the app's OpenAPI document (generated from its routes): a new route
without a row here fails `test_every_route_has_a_row`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import Api
from tests.identity.world import World, build_world

# Callers, in the order of each row's expectations.
CALLERS = (
    "platform",  # admin bound to no book
    "admin",  # admin of the home book
    "auditor",
    "org",  # organisation A (the member M belongs to A)
    "org_other",  # organisation B of the same book
    "mini",  # mini-program acting for member M
    "mini_other",  # the same mini-program acting for another member
    "kiosk",
    "kiosk_other",
    "admin_away",  # admin of another book
    "auditor_away",
    "anonymous",  # no token
)
OK = "ok"  # any 2xx


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: dict[str, Any] | None = None


Builder = Callable[[World], Awaitable[Call]]


def fixed(method: str, path: str, body: dict[str, Any] | None = None) -> Builder:
    async def build(w: World) -> Call:
        return Call(method, path.format(w=w), body)

    return build


async def new_book(w: World) -> Call:
    return Call("POST", "/v1/books", {"code": f"n{uuid.uuid4().hex[:8]}", "name": "新区"})


async def reversal(w: World) -> Call:
    return Call("POST", f"/v1/transactions/{await w.transfer()}/reversal")


async def hold_post(w: World) -> Call:
    return Call("POST", f"/v1/holds/{await w.new_hold()}/post", {})


async def hold_void(w: World) -> Call:
    return Call("POST", f"/v1/holds/{await w.new_hold()}/void")


async def register(w: World) -> Call:
    body = {
        "book": w.home,
        "display_name": "李四",
        "phone": "13700000000",
        "birth_date": "1950-01-01",
        "identity": {"provider": "wechat", "subject": f"o_{uuid.uuid4().hex}"},
    }
    return Call("POST", "/v1/members", body)


async def erase(w: World) -> Call:
    member = await w.register(w.home, w.org_a)
    return Call("POST", f"/v1/members/{member['id']}/erase")


async def revoke(w: World) -> Call:
    return Call("POST", f"/v1/credentials/{(await w.credential('auditor', w.home))['id']}/revoke")


async def rotate(w: World) -> Call:
    return Call("POST", f"/v1/credentials/{(await w.credential('auditor', w.home))['id']}/rotate")


async def transfer(w: World) -> Call:
    legs = [
        {"account_id": w.org_a_hours, "amount": -1},
        {"account_id": w.member_hours, "amount": 1},
    ]
    return Call("POST", f"/v1/books/{w.home}/transactions", {"legs": legs})


async def place_hold(w: World) -> Call:
    body = {"from_account_id": w.org_a_hours, "to_account_id": w.member_hours, "amount": 1}
    return Call("POST", f"/v1/books/{w.home}/holds", body)


async def enrol(w: World) -> Call:
    body = {"volunteer_number": w.member_other_number}
    return Call("POST", f"/v1/organisations/{w.org_a}/members", body)


_ = 403  # forbidden: the role may never, or the object is visible but the action is not
H = 404  # hidden: outside the caller's reach
A = 401
PUBLIC = (OK,) * 12
# A route only admins use, on an object or book of the home book.
ADMIN_ONLY = (OK, OK, _, _, _, _, _, _, _, H, _, A)
# A book-wide read every role of the home book may make.
BOOK_READ = (OK, OK, OK, OK, OK, OK, OK, OK, OK, H, H, A)
# Reads of M's account or of entries moving it (org A: M is its member).
M_READ = (OK, OK, OK, OK, H, OK, H, H, H, H, H, A)
# Reads of member M through the member routes (kiosks never read members).
MEMBER_READ = (OK, OK, OK, OK, H, OK, H, _, _, H, H, A)
MEMBER_EDIT = (OK, OK, _, _, _, OK, H, _, _, H, _, A)
# Postings from organisation A's account.
ORG_POSTING = (OK, OK, _, OK, _, _, _, _, _, H, _, A)

MATRIX: dict[tuple[str, str], tuple[Builder, tuple[Any, ...]]] = {
    ("GET", "/healthz"): (fixed("GET", "/healthz"), PUBLIC),
    ("GET", "/readyz"): (fixed("GET", "/readyz"), PUBLIC),
    ("GET", "/metrics"): (fixed("GET", "/metrics"), PUBLIC),
    ("POST", "/v1/books"): (new_book, (OK, _, _, _, _, _, _, _, _, _, _, A)),
    ("GET", "/v1/books/{code}"): (fixed("GET", "/v1/books/{w.home}"), BOOK_READ),
    ("GET", "/v1/books/{code}/head"): (fixed("GET", "/v1/books/{w.home}/head"), BOOK_READ),
    ("POST", "/v1/books/{code}/accounts"): (
        fixed("POST", "/v1/books/{w.home}/accounts", {"asset": "POINT", "owner": "system:x"}),
        ADMIN_ONLY,
    ),
    ("GET", "/v1/accounts/{account_id}"): (
        fixed("GET", "/v1/accounts/{w.member_hours}"),
        M_READ,
    ),
    ("PATCH", "/v1/accounts/{account_id}"): (
        fixed("PATCH", "/v1/accounts/{w.member_hours}", {"status": "open"}),
        ADMIN_ONLY,
    ),
    ("GET", "/v1/accounts/{account_id}/entries"): (
        fixed("GET", "/v1/accounts/{w.member_hours}/entries"),
        M_READ,
    ),
    ("POST", "/v1/books/{code}/transactions"): (transfer, ORG_POSTING),
    ("GET", "/v1/transactions/{tx_id}"): (fixed("GET", "/v1/transactions/{w.tx}"), M_READ),
    ("POST", "/v1/transactions/{tx_id}/reversal"): (reversal, ADMIN_ONLY),
    ("POST", "/v1/books/{code}/holds"): (place_hold, ORG_POSTING),
    ("GET", "/v1/holds/{hold_id}"): (fixed("GET", "/v1/holds/{w.hold}"), M_READ),
    # Organisation B cannot see a hold between A and A's member: 404 before any 403.
    ("POST", "/v1/holds/{hold_id}/post"): (hold_post, (OK, OK, _, OK, H, _, _, _, _, H, _, A)),
    ("POST", "/v1/holds/{hold_id}/void"): (hold_void, (OK, OK, _, OK, H, _, _, _, _, H, _, A)),
    ("POST", "/v1/members"): (register, (OK, OK, _, OK, OK, OK, OK, _, _, H, _, A)),
    ("GET", "/v1/members/{member_id}"): (fixed("GET", "/v1/members/{w.member}"), MEMBER_READ),
    ("PATCH", "/v1/members/{member_id}"): (
        fixed("PATCH", "/v1/members/{w.member}", {"display_name": "王小明"}),
        MEMBER_EDIT,
    ),
    # A fresh member each time, whom the mini-program does not act for (see test_members).
    ("POST", "/v1/members/{member_id}/erase"): (erase, (OK, OK, _, _, _, H, H, _, _, H, _, A)),
    ("GET", "/v1/members/{member_id}/balances"): (
        fixed("GET", "/v1/members/{w.member}/balances"),
        MEMBER_READ,
    ),
    ("GET", "/v1/members/{member_id}/entries"): (
        fixed("GET", "/v1/members/{w.member}/entries"),
        MEMBER_READ,
    ),
    ("POST", "/v1/organisations"): (
        fixed("POST", "/v1/organisations", {"book": "{w.home}", "kind": "charity", "name": "x"}),
        ADMIN_ONLY,
    ),
    # Each caller lists its own book's organisations.
    ("GET", "/v1/organisations"): (fixed("GET", "/v1/organisations"), (OK,) * 11 + (A,)),
    ("GET", "/v1/organisations/{organisation_id}"): (
        fixed("GET", "/v1/organisations/{w.org_a}"),
        BOOK_READ,
    ),
    ("PATCH", "/v1/organisations/{organisation_id}"): (
        fixed("PATCH", "/v1/organisations/{w.org_a}", {"name": "新华社工站"}),
        ADMIN_ONLY,
    ),
    ("POST", "/v1/organisations/{organisation_id}/members"): (
        enrol,
        (OK, OK, _, OK, _, _, _, _, _, H, _, A),
    ),
    ("POST", "/v1/credentials"): (
        fixed("POST", "/v1/credentials", {"role": "auditor", "book": "{w.home}"}),
        ADMIN_ONLY,
    ),
    # A book's admin lists its own book's credentials.
    ("GET", "/v1/credentials"): (
        fixed("GET", "/v1/credentials"),
        (OK, OK, _, _, _, _, _, _, _, OK, _, A),
    ),
    ("GET", "/v1/credentials/{credential_id}"): (
        fixed("GET", "/v1/credentials/{w.credential_id}"),
        ADMIN_ONLY,
    ),
    ("POST", "/v1/credentials/{credential_id}/revoke"): (revoke, ADMIN_ONLY),
    ("POST", "/v1/credentials/{credential_id}/rotate"): (rotate, ADMIN_ONLY),
    # The transparency log (docs/audit-format.md §8.1): public keys for anyone, the book's
    # checkpoints and proofs for every role of the book, receipts with the transaction.
    ("GET", "/.well-known/jwks.json"): (fixed("GET", "/.well-known/jwks.json"), PUBLIC),
    ("GET", "/v1/books/{code}/log-keys"): (fixed("GET", "/v1/books/{w.home}/log-keys"), BOOK_READ),
    ("GET", "/v1/books/{code}/checkpoint"): (
        fixed("GET", "/v1/books/{w.home}/checkpoint"),
        BOOK_READ,
    ),
    ("GET", "/v1/books/{code}/checkpoints"): (
        fixed("GET", "/v1/books/{w.home}/checkpoints"),
        BOOK_READ,
    ),
    ("POST", "/v1/books/{code}/checkpoints"): (
        fixed("POST", "/v1/books/{w.home}/checkpoints"),
        ADMIN_ONLY,
    ),
    ("GET", "/v1/books/{code}/proofs/inclusion"): (
        fixed("GET", "/v1/books/{w.home}/proofs/inclusion?seq=1"),
        BOOK_READ,
    ),
    ("GET", "/v1/books/{code}/proofs/consistency"): (
        fixed("GET", "/v1/books/{w.home}/proofs/consistency?first=1"),
        BOOK_READ,
    ),
    ("GET", "/v1/transactions/{tx_id}/receipt"): (
        fixed("GET", "/v1/transactions/{w.tx}/receipt"),
        M_READ,
    ),
    ("GET", "/v1/transactions/{tx_id}/receipt.svg"): (
        fixed("GET", "/v1/transactions/{w.tx}/receipt.svg"),
        M_READ,
    ),
    ("GET", "/v1/transactions/{tx_id}/proof"): (
        fixed("GET", "/v1/transactions/{w.tx}/proof"),
        M_READ,
    ),
    ("GET", "/v1/books/{code}/export"): (
        fixed("GET", "/v1/books/{w.home}/export"),
        (OK, OK, OK, _, _, _, _, _, _, H, H, A),
    ),
}


def _fill(value: Any, w: World) -> Any:
    if isinstance(value, str):
        return value.format(w=w)
    if isinstance(value, dict):
        return {k: _fill(v, w) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, w) for v in value]
    return value


def _headers(w: World, caller: str) -> dict[str, str]:
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    if caller == "anonymous":
        return headers | {"Authorization": ""}
    token = w.tokens["mini" if caller == "mini_other" else caller]
    headers["Authorization"] = f"Bearer {token}"
    if caller == "mini":
        headers["X-Member-Id"] = w.member
    if caller == "mini_other":
        headers["X-Member-Id"] = w.member_other
    return headers


def test_every_route_has_a_row(api: Api) -> None:
    routes = {
        (method.upper(), path)
        for path, operations in api.app.openapi()["paths"].items()
        for method in operations
    }
    assert routes - MATRIX.keys() == set(), "routes without an authorization row"
    assert MATRIX.keys() - routes == set(), "rows for routes that do not exist"
    assert all(len(expected) == len(CALLERS) for _, expected in MATRIX.values())


@pytest.fixture
async def world(api: Api) -> World:
    return await build_world(api)


async def test_each_caller_gets_the_documented_status(api: Api, world: World) -> None:
    mismatches = []
    for (method, template), (build, expected) in MATRIX.items():
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
                mismatches.append(
                    f"{method} {template} as {caller}: {r.status_code} {r.text[:160]}"
                )
            if r.status_code >= 400:
                assert r.headers["content-type"] == "application/problem+json"
    assert mismatches == []
