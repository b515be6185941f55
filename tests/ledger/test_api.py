"""The ledger's HTTP API: shapes, rules and problem documents."""

from __future__ import annotations

import hashlib
import uuid

import pytest
import rfc8785

from tests.conftest import Api

PROBLEM = "application/problem+json"


def assert_problem(response: object, status: int, slug: str) -> dict[str, object]:
    r = response  # httpx.Response
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    assert r.headers["content-type"].startswith(PROBLEM)  # type: ignore[attr-defined]
    body: dict[str, object] = r.json()  # type: ignore[attr-defined]
    assert body["type"] == f"urn:timebank:problem:{slug}"
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


async def test_book_lifecycle_and_head(api: Api) -> None:
    r = await api.client.post("/v1/books", json={"code": "xh", "name": "新华区"})
    assert r.status_code == 201
    assert r.json()["head"] == {"seq": 0, "entry_hash": "0" * 64}
    assert_problem(
        await api.client.post("/v1/books", json={"code": "xh", "name": "again"}),
        409,
        "book-exists",
    )
    assert (await api.client.get("/v1/books/xh")).json()["name"] == "新华区"
    assert_problem(await api.client.get("/v1/books/nope"), 404, "book-not-found")
    issuance, member = await api.funded("xh", 60)
    head = (await api.client.get("/v1/books/xh/head")).json()
    tx = (await api.client.get(f"/v1/accounts/{member}/entries")).json()["items"][0]
    assert head["seq"] == 1 == tx["seq"]


async def test_transfer_returns_entry_hash_and_balances(api: Api) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 0)
    r = await api.transfer(book, issuance, member, 60, memo="助老", meta={"activity": "a1"})
    assert r.status_code == 201, r.text
    body = r.json()
    entry = body["entry"]
    assert entry["seq"] == 1 and entry["book"] == book and entry["prev_hash"] == "0" * 64
    assert entry["legs"] == [
        {"account_id": issuance, "asset": "HOUR", "amount": -60},
        {"account_id": member, "asset": "HOUR", "amount": 60},
    ]
    assert entry["memo"] == "助老" and entry["meta"]["activity"] == "a1"
    assert entry["meta"]["actor"] == {"credential": api.credential}
    assert entry["posted_at"].endswith("Z") and len(entry["posted_at"]) == 27
    assert body["entry_hash"] == hashlib.sha256(rfc8785.dumps(entry)).hexdigest()
    balances = {b["account_id"]: b for b in body["balances"]}
    assert balances[member]["posted"] == 60 and balances[member]["available"] == 60
    assert balances[issuance]["posted"] == -60
    again = await api.client.get(f"/v1/transactions/{body['id']}")
    assert again.json() == body
    second = await api.transfer(book, issuance, member, 5)
    assert second.json()["entry"]["prev_hash"] == body["entry_hash"]


async def test_insufficient_funds_and_overdraft_limit(api: Api) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 50)
    other = await api.account(book)
    problem = assert_problem(await api.transfer(book, member, other, 51), 409, "insufficient-funds")
    # What the account has (not the -1 it would have had), and its limit.
    assert (problem["account_id"], problem["available"], problem["overdraft_limit"]) == (
        member,
        50,
        0,
    )
    assert (await api.transfer(book, member, other, 50)).status_code == 201
    limited = await api.account(book, overdraft_limit=100)
    assert (await api.transfer(book, limited, other, 100)).status_code == 201
    problem = assert_problem(await api.transfer(book, limited, other, 1), 409, "insufficient-funds")
    assert (problem["available"], problem["overdraft_limit"]) == (-100, 100)
    assert (await api.balance(limited))["posted"] == -100


@pytest.mark.parametrize("amount", [0, 1.5, "60", True, None, 2**53, -(2**53), 60.0], ids=repr)
async def test_amounts_must_be_nonzero_safe_integers(api: Api, amount: object) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 0)
    r = await api.client.post(
        f"/v1/books/{book}/transactions",
        json={
            "kind": "transfer",
            "legs": [
                {"account_id": issuance, "amount": amount},
                {"account_id": member, "amount": 1},
            ],
        },
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    problem = assert_problem(r, 422, "validation")
    fields = [e["field"] for e in problem["errors"]]  # type: ignore[union-attr]
    assert any(f.startswith("legs/0/amount") for f in fields), fields


async def test_unbalanced_and_cross_asset_and_cross_book(api: Api) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 10)
    r = await api.client.post(
        f"/v1/books/{book}/transactions",
        json={
            "legs": [{"account_id": issuance, "amount": -5}, {"account_id": member, "amount": 4}]
        },
        headers={"Idempotency-Key": "k1"},
    )
    assert assert_problem(r, 422, "unbalanced-legs")["sums"] == {"HOUR": -1}
    points = await api.account(book, "POINT", overdraft_limit=100)
    r = await api.transfer(book, points, member, 5)
    assert_problem(r, 422, "unbalanced-legs")
    other_book = await api.book()
    stranger = await api.account(other_book)
    assert_problem(await api.transfer(book, member, stranger, 1), 422, "account-not-in-book")
    assert_problem(await api.transfer(book, member, str(uuid.uuid4()), 1), 422, "unknown-account")
    # Two assets in one transaction, each balancing on its own, is allowed.
    points_member = await api.account(book, "POINT")
    r = await api.client.post(
        f"/v1/books/{book}/transactions",
        json={
            "kind": "swap",
            "legs": [
                {"account_id": member, "amount": -5},
                {"account_id": issuance, "amount": 5},
                {"account_id": points, "amount": -50},
                {"account_id": points_member, "amount": 50},
            ],
        },
        headers={"Idempotency-Key": "k2"},
    )
    assert r.status_code == 201, r.text


async def test_frozen_and_closed_accounts(api: Api) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 10)
    r = await api.client.patch(f"/v1/accounts/{member}", json={"status": "frozen"})
    assert r.json()["status"] == "frozen"
    assert_problem(await api.transfer(book, issuance, member, 1), 409, "account-not-open")
    await api.client.patch(f"/v1/accounts/{member}", json={"status": "open"})
    assert (await api.transfer(book, member, issuance, 10)).status_code == 201
    assert (
        await api.client.patch(f"/v1/accounts/{member}", json={"status": "closed"})
    ).status_code == 200
    assert_problem(await api.transfer(book, issuance, member, 1), 409, "account-not-open")
    await api.transfer(book, issuance, await api.account(book), 1)
    assert_problem(
        await api.client.patch(f"/v1/accounts/{issuance}", json={"status": "closed"}),
        409,
        "conflict",
    )


async def test_holds_post_for_less_void_and_available(api: Api) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 100)
    shop = await api.account(book)

    async def hold(amount: int) -> dict[str, object]:
        r = await api.client.post(
            f"/v1/books/{book}/holds",
            json={
                "from_account_id": member,
                "to_account_id": shop,
                "amount": amount,
                "expires_in": 120,
                "meta": {"basket": 1},
            },
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    first = await hold(70)
    assert first["status"] == "pending" and first["entry"]["kind"] == "hold"  # type: ignore[index]
    account = await api.balance(member)
    assert (account["posted"], account["available"], account["pending_debits"]) == (100, 30, 70)
    # A hold can never be spent twice: the reservation counts against available.
    assert_problem(await api.transfer(book, member, shop, 31), 409, "insufficient-funds")
    r = await api.client.post(
        f"/v1/holds/{first['id']}/post",
        json={"amount": 50},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 200, r.text
    assert r.json()["entry"]["meta"] == {
        "hold": first["id"],
        "actor": {"credential": api.credential},
    }
    account = await api.balance(member)
    assert (account["posted"], account["available"], account["pending_debits"]) == (50, 50, 0)
    assert (await api.balance(shop))["posted"] == 50
    assert_problem(
        await api.client.post(
            f"/v1/holds/{first['id']}/void", headers={"Idempotency-Key": uuid.uuid4().hex}
        ),
        409,
        "hold-not-pending",
    )
    second = await hold(20)
    assert_problem(
        await api.client.post(
            f"/v1/holds/{second['id']}/post",
            json={"amount": 21},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        ),
        422,
        "hold-amount-exceeded",
    )
    r = await api.client.post(
        f"/v1/holds/{second['id']}/void", headers={"Idempotency-Key": uuid.uuid4().hex}
    )
    assert r.status_code == 200 and r.json()["entry"]["meta"]["reason"] == "voided"
    assert r.json()["status"] == "voided"
    assert (await api.balance(member))["available"] == 50
    assert (await api.client.get(f"/v1/holds/{second['id']}")).json()["status"] == "voided"


async def test_reversal_once_and_not_for_holds(api: Api) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 0)
    tx = (await api.transfer(book, issuance, member, 40)).json()
    r = await api.client.post(
        f"/v1/transactions/{tx['id']}/reversal", headers={"Idempotency-Key": "rev-1"}
    )
    assert r.status_code == 201, r.text
    entry = r.json()["entry"]
    assert entry["kind"] == "reversal"
    assert entry["meta"] == {"reverses": tx["id"], "actor": {"credential": api.credential}}
    assert [leg["amount"] for leg in entry["legs"]] == [40, -40]
    assert (await api.balance(member))["posted"] == 0
    assert_problem(
        await api.client.post(
            f"/v1/transactions/{tx['id']}/reversal", headers={"Idempotency-Key": "rev-2"}
        ),
        409,
        "already-reversed",
    )
    assert_problem(
        await api.client.post(
            f"/v1/transactions/{r.json()['id']}/reversal", headers={"Idempotency-Key": "rev-3"}
        ),
        422,
        "not-reversible",
    )


async def test_reversal_can_be_refused_for_funds(api: Api) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 0)
    tx = (await api.transfer(book, issuance, member, 40)).json()
    await api.transfer(book, member, issuance, 30)
    assert_problem(
        await api.client.post(
            f"/v1/transactions/{tx['id']}/reversal", headers={"Idempotency-Key": "rev"}
        ),
        409,
        "insufficient-funds",
    )


async def test_point_in_time_balance_and_entries_pagination(api: Api) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 0)
    seqs = []
    for amount in (10, 20, 30, 40, 50):
        seqs.append((await api.transfer(book, issuance, member, amount)).json()["seq"])
    r = await api.client.get(f"/v1/accounts/{member}", params={"as_of_seq": seqs[1]})
    assert r.json()["posted"] == 30 and r.json()["as_of_seq"] == seqs[1]
    assert (await api.client.get(f"/v1/accounts/{member}", params={"as_of_seq": 0})).json()[
        "posted"
    ] == 0
    assert (await api.balance(member))["posted"] == 150
    page = (await api.client.get(f"/v1/accounts/{member}/entries", params={"limit": 2})).json()
    assert [i["amount"] for i in page["items"]] == [50, 40]
    assert [i["posted_after"] for i in page["items"]] == [150, 100]
    rest = (
        await api.client.get(
            f"/v1/accounts/{member}/entries",
            params={"limit": 10, "before_seq": page["next_before_seq"]},
        )
    ).json()
    assert [i["amount"] for i in rest["items"]] == [30, 20, 10]
    assert rest["next_before_seq"] is None


async def test_problem_documents_for_bad_requests(api: Api) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 0)
    url = f"/v1/books/{book}/transactions"
    legs = {"legs": [{"account_id": issuance, "amount": -1}, {"account_id": member, "amount": 1}]}
    assert_problem(await api.client.post(url, json=legs), 400, "idempotency-key-missing")
    assert_problem(
        await api.client.post(url, json=legs, headers={"Idempotency-Key": "a\tb"}),
        422,
        "validation",
    )
    r = await api.client.post(
        url,
        content=b"{not json",
        headers={"Idempotency-Key": "x", "Content-Type": "application/json"},
    )
    assert_problem(r, 400, "malformed-json")
    r = await api.client.post(
        url,
        content=b"a=b",
        headers={"Idempotency-Key": "x", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_problem(r, 415, "unsupported-media-type")
    big = {**legs, "memo": "x" * (70 * 1024)}
    assert_problem(
        await api.client.post(url, json=big, headers={"Idempotency-Key": "y"}),
        413,
        "body-too-large",
    )
    meta = {**legs, "meta": {"blob": "x" * 5000}}
    assert_problem(
        await api.client.post(url, json=meta, headers={"Idempotency-Key": "z"}), 422, "validation"
    )
    assert_problem(
        await api.client.post(url, json={**legs, "kind": "hold"}, headers={"Idempotency-Key": "w"}),
        422,
        "validation",
    )
    assert_problem(
        await api.client.post(url, json={**legs, "extra": 1}, headers={"Idempotency-Key": "v"}),
        422,
        "validation",
    )
    one_leg = {"legs": legs["legs"][:1]}
    assert_problem(
        await api.client.post(url, json=one_leg, headers={"Idempotency-Key": "u"}),
        422,
        "validation",
    )
    assert_problem(await api.client.get("/v1/accounts/not-a-uuid"), 422, "validation")
    assert_problem(await api.client.get(f"/v1/accounts/{uuid.uuid4()}"), 404, "account-not-found")
    assert_problem(await api.client.get("/v1/nothing-here"), 404, "not-found")
    assert_problem(await api.client.delete(f"/v1/books/{book}"), 405, "method-not-allowed")
    anonymous = await api.client.get(f"/v1/books/{book}", headers={"Authorization": ""})
    assert_problem(anonymous, 401, "unauthorized")
    wrong = await api.client.get(f"/v1/books/{book}", headers={"Authorization": "Bearer nope"})
    assert_problem(wrong, 401, "unauthorized")
