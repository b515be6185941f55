"""Receipts, checkpoints and proofs over HTTP, checked with the pure verifiers of app/audit."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import asyncpg
import pytest
import rfc8785

from app.audit import merkle, receipts, tlog
from app.audit.checkpoint import open_checkpoint, verify_tlog_proof
from app.audit.keys import public_key_from_jwk
from app.audit.note import Verifier, parse_verifier_key
from app.audit.receipting import iat_of
from app.identity.credentials import create_credential
from tests.conftest import Api, ScratchDatabase


async def get_json(api: Api, path: str, status: int = 200, **params: Any) -> Any:
    r = await api.client.get(path, params=params)
    assert r.status_code == status, r.text
    return r.json()


async def jwks(api: Api) -> dict[str, Any]:
    data: dict[str, Any] = await get_json(api, "/.well-known/jwks.json")
    return data


def leaf_of(entry: dict[str, Any]) -> bytes:
    return merkle.leaf_hash(bytes(rfc8785.dumps(entry)))


async def checkpoint_verifiers(api: Api, origin: str) -> list[Verifier]:
    return [
        Verifier.from_public_key(origin, public_key_from_jwk(k)) for k in (await jwks(api))["keys"]
    ]


async def post_entries(api: Api, book: str, count: int) -> list[dict[str, Any]]:
    issuance, member = await api.funded(book, 0)
    out = []
    for i in range(count):
        r = await api.transfer(book, issuance, member, i + 1, memo=f"第{i}次 visit")
        assert r.status_code == 201, r.text
        out.append(r.json())
    return out


async def test_a_posting_answer_carries_a_receipt_of_its_entry(api: Api) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 100)
    key = uuid.uuid4().hex
    first = await api.transfer(book, issuance, member, 5, key=key)
    assert first.status_code == 201
    posting = first.json()
    token = posting["receipt"]
    claims = receipts.verify_receipt(token, await jwks(api))
    receipts.check_receipt_entry(claims, posting["entry"], posting["entry_hash"])
    assert claims["iat"] == iat_of(posting["entry"]["posted_at"])

    # Computed again wherever it is answered, it is the same receipt (Ed25519 is deterministic).
    replay = await api.transfer(book, issuance, member, 5, key=key)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["receipt"] == token
    read = await get_json(api, f"/v1/transactions/{posting['id']}")
    assert read["receipt"] == token
    assert read["entry"] == posting["entry"]
    document = await get_json(api, f"/v1/transactions/{posting['id']}/receipt")
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert document["receipt"] == token
    assert document["kid"] == header["kid"]
    assert document["size_bytes"] == len(token) < 1100
    assert document["leaf_hash"] == leaf_of(posting["entry"]).hex()


async def test_a_hold_and_its_resolution_have_receipts_and_a_refusal_has_none(api: Api) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 10)
    r = await api.client.post(
        f"/v1/books/{book}/holds",
        json={"from_account_id": member, "to_account_id": issuance, "amount": 4},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    hold = r.json()
    post = await api.client.post(
        f"/v1/holds/{hold['id']}/post", headers={"Idempotency-Key": uuid.uuid4().hex}
    )
    keys = await jwks(api)
    for answer in (hold, post.json()):
        claims = receipts.verify_receipt(answer["receipt"], keys)
        receipts.check_receipt_entry(claims, answer["entry"], answer["entry_hash"])
    refused = await api.transfer(book, member, issuance, 1000)
    assert refused.status_code == 409
    assert "receipt" not in refused.json()


async def test_the_receipt_prints_as_one_qr_code(api: Api) -> None:
    book = await api.book()
    posting = (await post_entries(api, book, 1))[0]
    r = await api.client.get(f"/v1/transactions/{posting['id']}/receipt.svg")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/svg+xml"
    assert r.text.startswith("<svg") and "</svg>" in r.text


async def test_proofs_verify_against_the_signed_checkpoints_of_several_sizes(api: Api) -> None:
    book = await api.book()
    entries: list[dict[str, Any]] = []
    signed: dict[int, bytes] = {}
    for more in (1, 1, 1, 2, 3, 5, 4):
        entries += [p["entry"] for p in await post_entries(api, book, more)]
        r = await api.client.post(f"/v1/books/{book}/checkpoints")
        assert r.status_code == 201, r.text
        checkpoint = r.json()
        vkey = parse_verifier_key(checkpoint["vkey"])
        opened = open_checkpoint(checkpoint["note"], checkpoint["origin"], [vkey])
        assert opened.size == checkpoint["tree_size"] == entries[-1]["seq"]
        assert opened.root_hash.hex() == checkpoint["root"]
        signed[opened.size] = opened.root_hash
    again = await api.client.post(f"/v1/books/{book}/checkpoints")
    assert again.status_code == 200 and again.json()["tree_size"] == max(signed)

    leaves = [leaf_of(entry) for entry in entries]
    for size, root in signed.items():
        assert merkle.root_from_leaves(leaves[:size]) == root
        for seq in range(1, size + 1):
            proof = await get_json(
                api, f"/v1/books/{book}/proofs/inclusion", seq=seq, tree_size=size
            )
            assert proof["leaf_hash"] == leaves[seq - 1].hex()
            path = [bytes.fromhex(h) for h in proof["proof"]]
            assert merkle.verify_inclusion(leaves[seq - 1], seq - 1, size, path, root)
        for first, first_root in signed.items():
            if first > size:
                continue
            proof = await get_json(
                api, f"/v1/books/{book}/proofs/consistency", first=first, second=size
            )
            path = [bytes.fromhex(h) for h in proof["proof"]]
            assert merkle.verify_consistency(first, size, path, first_root, root)

    page = await get_json(api, f"/v1/books/{book}/checkpoints", limit=3)
    assert [c["tree_size"] for c in page["items"]] == sorted(signed)[:3]
    rest = await get_json(
        api, f"/v1/books/{book}/checkpoints", after_tree_size=page["next_after_tree_size"]
    )
    assert [c["tree_size"] for c in rest["items"]] == sorted(signed)[3:]
    one = await get_json(api, f"/v1/books/{book}/checkpoints", tree_size=5)
    assert one["items"][0]["root"] == signed[5].hex()
    missing = await get_json(api, f"/v1/books/{book}/checkpoints", status=404, tree_size=4)
    assert missing["type"] == "urn:timebank:problem:checkpoint-not-found"
    latest = await get_json(api, f"/v1/books/{book}/checkpoint")
    assert latest["tree_size"] == max(signed)


async def test_a_proof_bundle_is_signed_on_demand_and_verifies_offline(api: Api) -> None:
    book = await api.book()
    postings = await post_entries(api, book, 6)
    target = postings[3]
    r = await api.client.get(f"/v1/transactions/{target['id']}/proof")
    assert r.status_code == 200, r.text
    bundle = r.text
    assert bundle.startswith(f"c2sp.org/tlog-proof@v1\nindex {target['seq'] - 1}\n")
    origin = f"timebank.local/ledger/{book}"
    checkpoint = verify_tlog_proof(
        bundle, leaf_of(target["entry"]), origin, await checkpoint_verifiers(api, origin)
    )
    assert checkpoint.size >= target["seq"]
    keys = (await api.client.get(f"/v1/books/{book}/log-keys")).text.splitlines()
    assert [parse_verifier_key(k).name for k in keys] == [origin]


BEYOND = "urn:timebank:problem:beyond-log-size"


async def test_the_inputs_of_proofs_are_checked(api: Api) -> None:
    book = await api.book()
    await post_entries(api, book, 3)
    base = f"/v1/books/{book}/proofs"
    for path, params in (
        ("inclusion", {"seq": 3, "tree_size": 2}),
        ("consistency", {"first": 3, "second": 2}),
    ):
        problem = await get_json(api, f"{base}/{path}", status=422, **params)
        assert problem["type"] == "urn:timebank:problem:validation", problem
    missing = await get_json(api, "/v1/books/nosuchbook/proofs/inclusion", status=404, seq=1)
    assert missing["type"] == "urn:timebank:problem:book-not-found"


# Each route and parameter that names a seq or a tree size, with a value past a head of 2.
PAST_THE_HEAD = [
    ("proofs/inclusion", {"seq": 3}, "seq"),
    ("proofs/inclusion", {"seq": 2**62}, "seq"),
    ("proofs/inclusion", {"seq": 3, "tree_size": 3}, "tree_size"),
    ("proofs/inclusion", {"seq": 2, "tree_size": 9}, "tree_size"),
    ("proofs/inclusion", {"seq": 5, "tree_size": 2}, "seq"),
    ("proofs/consistency", {"first": 3}, "first"),
    ("proofs/consistency", {"first": 2**62}, "first"),
    ("proofs/consistency", {"first": 1, "second": 7}, "second"),
    ("proofs/consistency", {"first": 9, "second": 2}, "first"),
    ("checkpoints", {"tree_size": 3}, "tree_size"),
    ("export", {"to_seq": 3}, "to_seq"),
]


@pytest.mark.parametrize(("route", "params", "field"), PAST_THE_HEAD)
async def test_a_seq_or_size_past_the_head_is_a_4xx_naming_the_head(
    api: Api, route: str, params: dict[str, int], field: str
) -> None:
    # Never the operator's alarm (log-inconsistent, 500): anyone can ask for a future size.
    book = await api.book()
    await post_entries(api, book, 2)
    head = (await api.client.get(f"/v1/books/{book}/head")).json()["seq"]
    assert head == 2
    problem = await get_json(api, f"/v1/books/{book}/{route}", status=422, **params)
    assert problem["type"] == BEYOND, problem
    assert problem["field"] == f"query/{field}"
    assert problem["head_seq"] == 2 and 0 <= problem["tree_size"] <= 2
    assert "past the head" in problem["detail"]
    # Nothing was signed for it, and the log still answers for what exists.
    fine = await get_json(api, f"/v1/books/{book}/proofs/inclusion", seq=2)
    assert fine["tree_size"] == 2


@pytest.mark.parametrize(
    ("route", "params"),
    [
        ("proofs/inclusion", {"seq": 0}),
        ("proofs/inclusion", {"seq": -1}),
        ("proofs/inclusion", {"seq": 1, "tree_size": 0}),
        ("proofs/inclusion", {"seq": 1, "tree_size": -5}),
        ("proofs/consistency", {"first": -1}),
        ("proofs/consistency", {"first": 0, "second": -1}),
        ("checkpoints", {"tree_size": -1}),
        ("export", {"to_seq": -1}),
        ("export", {"from_seq": 0}),
    ],
)
async def test_a_zero_or_negative_seq_or_size_is_refused_as_invalid(
    api: Api, route: str, params: dict[str, int]
) -> None:
    book = await api.book()
    await post_entries(api, book, 1)
    problem = await get_json(api, f"/v1/books/{book}/{route}", status=422, **params)
    assert problem["type"] == "urn:timebank:problem:validation", problem


async def test_sizes_of_zero_that_exist_are_answered(api: Api) -> None:
    book = await api.book()
    empty = await get_json(api, f"/v1/books/{book}/proofs/consistency", first=0, second=0)
    assert empty["proof"] == [] and empty["second_root"] == merkle.EMPTY_ROOT.hex()
    # An empty book: every seq is past its head, which is 0.
    problem = await get_json(api, f"/v1/books/{book}/proofs/inclusion", status=422, seq=1)
    assert problem["type"] == BEYOND and problem["head_seq"] == 0
    await post_entries(api, book, 1)
    grown = await get_json(api, f"/v1/books/{book}/proofs/consistency", first=0)
    assert grown["second"] == 1 and grown["proof"] == []


async def superuser_execute(database: ScratchDatabase, sql: str, *args: object) -> None:
    """Change rows behind the service's back, as a superuser with triggers disabled."""
    conn = await asyncpg.connect(database.superuser_url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(sql, *args)
    finally:
        await conn.close()


async def test_a_checkpoint_inconsistent_with_the_last_one_is_never_signed(
    api: Api, database: ScratchDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = await api.book()
    await post_entries(api, book, 4)
    first = await api.client.post(f"/v1/books/{book}/checkpoints")
    assert first.status_code == 201 and first.json()["tree_size"] == 4
    await post_entries(api, book, 1)
    # Leaves 0-3 were signed in the first checkpoint; their stored subtree is now forged.
    await superuser_execute(
        database,
        "UPDATE merkle_subtrees SET hash = sha256(hash) WHERE book_code = $1 "
        "AND level = 2 AND index = 0",
        book,
    )
    refused = await api.client.post(f"/v1/books/{book}/checkpoints")
    assert refused.status_code == 500, refused.text
    assert refused.json()["type"] == "urn:timebank:problem:log-inconsistent"
    page = await get_json(api, f"/v1/books/{book}/checkpoints")
    assert [c["tree_size"] for c in page["items"]] == [4]
    # The follower refuses too, and carries on with the other books.
    other = await api.book()
    await post_entries(api, other, 2)
    audit = api.app.state.audit
    monkeypatch.setattr(audit, "checkpoint_interval_s", 0.0)  # every growing book is due
    await audit.follow_once()
    page = await get_json(api, f"/v1/books/{book}/checkpoints")
    assert [c["tree_size"] for c in page["items"]] == [4]
    assert (await get_json(api, f"/v1/books/{other}/checkpoints"))["items"][0]["tree_size"] == 2


async def test_the_follower_integrates_and_signs_every_growing_book(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The follower integrates in small transactions: here one entry each, and still all.
    monkeypatch.setattr(tlog, "FOLLOW_CHUNK", 1)
    books = [await api.book(), await api.book()]
    for count, book in enumerate(books, 2):
        await post_entries(api, book, count)
    audit = api.app.state.audit
    await audit.follow_once()
    for count, book in enumerate(books, 2):
        latest = await get_json(api, f"/v1/books/{book}/checkpoint")
        assert latest["tree_size"] == count
    await audit.follow_once()  # nothing new: nothing signed
    for book in books:
        page = await get_json(api, f"/v1/books/{book}/checkpoints")
        assert len(page["items"]) == 1


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE merkle_subtrees SET hash = hash",
        "DELETE FROM merkle_subtrees",
        "TRUNCATE merkle_subtrees",
        "UPDATE checkpoints SET note = ''",
        "DELETE FROM checkpoints",
        "DELETE FROM signing_keys",
        "UPDATE signing_keys SET valid_from = valid_from - interval '1 day'",
    ],
)
async def test_the_log_is_append_only(api: Api, database: ScratchDatabase, statement: str) -> None:
    book = await api.book()
    await post_entries(api, book, 2)
    assert (await api.client.post(f"/v1/books/{book}/checkpoints")).status_code == 201
    for url in (database.app_url, database.owner_url):
        conn = await asyncpg.connect(url)
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
        finally:
            await conn.close()


async def credential(api: Api, role: str, book: str | None) -> dict[str, str]:
    async with api.app.state.sessions() as session, session.begin():
        _, token = await create_credential(session, role, book, name="test")
    return {"Authorization": f"Bearer {token}"}


async def test_who_may_read_the_log(api: Api) -> None:
    book, other = await api.book(), await api.book()
    posting = (await post_entries(api, book, 2))[0]
    tx = posting["id"]
    reads = [
        f"/v1/books/{book}/checkpoint",
        f"/v1/books/{book}/checkpoints",
        f"/v1/books/{book}/log-keys",
        f"/v1/books/{book}/proofs/inclusion?seq=1",
        f"/v1/books/{book}/proofs/consistency?first=1",
    ]
    of_tx = [f"/v1/transactions/{tx}/{what}" for what in ("receipt", "receipt.svg", "proof")]
    export = f"/v1/books/{book}/export"

    async def status(path: str, headers: dict[str, str] | None, method: str = "GET") -> int:
        r = await api.client.request(method, path, headers=headers)
        return r.status_code

    outsider = await credential(api, "admin", other)
    for path in [*reads, *of_tx, export]:
        assert await status(path, outsider) == 404, path
    assert await status(f"/v1/books/{book}/checkpoints", outsider, "POST") == 404

    auditor = await credential(api, "auditor", book)
    for path in [*reads, *of_tx, export]:
        assert await status(path, auditor) == 200, path
    assert await status(f"/v1/books/{book}/checkpoints", auditor, "POST") == 403

    member_app = await credential(api, "miniprogram", book)
    for path in reads:
        assert await status(path, member_app) == 200, path
    for path in of_tx:  # a transaction of accounts it does not act for
        assert await status(path, member_app) == 404, path
    assert await status(export, member_app) == 403

    anonymous = {"Authorization": ""}
    assert await status(reads[0], anonymous) == 401
    assert await status("/.well-known/jwks.json", anonymous) == 200
