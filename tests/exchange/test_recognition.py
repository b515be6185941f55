"""Mutual recognition between books (通存通兑): agreements published in both chains, transfers
as two linked entries, their idempotency and concurrency, and the clearing reconciliation."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.exchange.ratios import convert
from app.ledger.posting import Draft
from app.ledger.verify_runner import verify_book
from tests.conftest import Api, ScratchDatabase


@dataclass
class Region:
    """Two books (`a`, `b`) and a third (`c`), an issuing organisation in `a` and `b`, and a
    credential for each kind of caller."""

    api: Api
    database: ScratchDatabase
    a: str = ""
    b: str = ""
    c: str = ""
    issuance: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    async def call(
        self,
        method: str,
        path: str,
        who: str = "platform",
        body: Any = None,
        member: str | None = None,
        key: str | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        if member is not None:
            headers["X-Member-Id"] = member
        if method == "POST":
            headers["Idempotency-Key"] = key or uuid.uuid4().hex
        return await self.api.client.request(method, path, json=body, headers=headers)

    async def ok(self, method: str, path: str, who: str = "platform", **kw: Any) -> Any:
        r = await self.call(method, path, who, **kw)
        assert r.status_code in (200, 201), r.text
        return r.json()

    async def member(self, book: str) -> dict[str, Any]:
        body = {
            "book": book,
            "display_name": "张通存",
            "phone": f"139{uuid.uuid4().int % 10**8:08d}",
            "birth_date": "1958-04-01",
            "identity": {"provider": "wechat", "subject": f"o_{uuid.uuid4().hex}"},
        }
        data: dict[str, Any] = await self.ok("POST", "/v1/members", body=body)
        data["hours"] = next(a["account_id"] for a in data["accounts"] if a["asset"] == "HOUR")
        return data

    async def earn(self, book: str, account: str, minutes: int) -> None:
        """Service hours from the book's volunteer team (its issuance account)."""
        r = await self.api.transfer(book, self.issuance[book], account, minutes)
        assert r.status_code == 201, r.text

    async def agree(self, from_book: str, to_book: str, **terms: Any) -> dict[str, Any]:
        body = {"from_book": from_book, "to_book": to_book, **terms}
        data: dict[str, Any] = await self.ok("POST", "/v1/recognition/agreements", body=body)
        return data

    async def transfer(
        self,
        agreement: str,
        member: str,
        amount: int,
        who: str = "mini",
        key: str | None = None,
    ) -> httpx.Response:
        body: dict[str, Any] = {"agreement_id": agreement, "amount": amount}
        if who == "mini":
            return await self.call(
                "POST", "/v1/recognition/transfers", who, body=body, member=member, key=key
            )
        body["member_id"] = member
        return await self.call("POST", "/v1/recognition/transfers", who, body=body, key=key)

    async def head(self, book: str) -> dict[str, Any]:
        data: dict[str, Any] = await self.ok("GET", f"/v1/books/{book}/head")
        return data

    async def posted(self, account: str) -> int:
        return int((await self.ok("GET", f"/v1/accounts/{account}"))["posted"])

    async def member_account(self, book: str, member: str, asset: str = "HOUR") -> str | None:
        conn = await asyncpg.connect(self.database.app_url)
        try:
            found = await conn.fetchval(
                "SELECT id::text FROM accounts WHERE book_code = $1 AND owner = $2 AND asset = $3",
                book,
                f"member:{member}",
                asset,
            )
        finally:
            await conn.close()
        return None if found is None else str(found)

    async def clearing(self, book: str, other: str, asset: str = "HOUR") -> str:
        conn = await asyncpg.connect(self.database.app_url)
        try:
            found = await conn.fetchval(
                "SELECT id::text FROM accounts WHERE book_code = $1 AND owner = $2 "
                "AND asset = $3 AND meta ->> 'purpose' = $4",
                book,
                f"book:{book}",
                asset,
                f"clearing:{other}",
            )
        finally:
            await conn.close()
        assert found is not None
        return str(found)

    async def journal(self, book: str) -> list[dict[str, Any]]:
        r = await self.call("GET", f"/v1/books/{book}/export")
        assert r.status_code == 200, r.text
        lines = [json.loads(line) for line in r.text.splitlines() if line]
        return [line["entry"] for line in lines if "entry" in line]  # the last is the trailer

    async def verify(self, *books: str) -> None:
        for book in books:
            await verify_book(self.database.app_url, book)  # raises on the first bad entry

    async def reconciliation(self, who: str = "platform", book: str | None = None) -> Any:
        query = "" if book is None else f"?book={book}"
        return await self.ok("GET", f"/v1/recognition/reconciliation{query}", who)


async def _credential(api: Api, role: str, book: str | None, org: str | None = None) -> str:
    body: dict[str, Any] = {"role": role, "book": book}
    if org is not None:
        body["organisation_id"] = org
    r = await api.client.post(
        "/v1/credentials", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


@pytest.fixture
async def region(api: Api, database: ScratchDatabase) -> Region:
    g = Region(api, database)
    g.a, g.b, g.c = await api.book(), await api.book(), await api.book()
    g.tokens["platform"] = api.token
    for book in (g.a, g.b):
        r = await api.client.post(
            "/v1/organisations",
            json={
                "book": book,
                "kind": "volunteer_team",
                "name": f"志愿服务队 {book}",
                "accounts": [{"asset": "HOUR", "purpose": "issuance", "overdraft_limit": 10**9}],
            },
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == 201, r.text
        g.issuance[book] = r.json()["accounts"][0]["id"]
        if book == g.a:
            g.tokens["org_a"] = await _credential(api, "org", book, r.json()["id"])
    g.tokens["admin_a"] = await _credential(api, "admin", g.a)
    g.tokens["admin_b"] = await _credential(api, "admin", g.b)
    g.tokens["admin_c"] = await _credential(api, "admin", g.c)
    g.tokens["auditor_a"] = await _credential(api, "auditor", g.a)
    g.tokens["auditor_c"] = await _credential(api, "auditor", g.c)
    g.tokens["mini"] = await _credential(api, "miniprogram", None)
    return g


def _notices(journal: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e["meta"] for e in journal if e["kind"] == kind]


async def test_an_agreement_is_published_in_both_books_and_ends_in_both(region: Region) -> None:
    g = region
    agreement = await g.agree(g.a, g.b)
    assert agreement["status"] == "active" and agreement["ratio"] == {"num": 1, "den": 1}
    assert (agreement["from_asset"], agreement["to_asset"]) == ("HOUR", "HOUR")
    facts = {
        "agreement_id": agreement["id"],
        "from_book": g.a,
        "from_asset": "HOUR",
        "to_book": g.b,
        "to_asset": "HOUR",
        "ratio": {"num": 1, "den": 1},
    }
    for book in (g.a, g.b):
        (meta,) = _notices(await g.journal(book), "notice.recognition_agreed")
        actor = meta.pop("actor")
        assert meta == facts and actor == {"credential": g.api.credential}

    # One active agreement per direction and asset pair; the reverse direction is another.
    again = await g.call(
        "POST", "/v1/recognition/agreements", body={"from_book": g.a, "to_book": g.b}
    )
    assert again.status_code == 409
    assert again.json()["type"] == "urn:timebank:problem:recognition-agreement-exists"
    reverse = await g.agree(g.b, g.a)
    other_asset = await g.agree(g.a, g.b, to_asset="POINT", ratio_num=1, ratio_den=60)
    assert other_asset["ratio"] == {"num": 1, "den": 60}

    listed = await g.ok("GET", "/v1/recognition/agreements", "auditor_a")
    assert [x["id"] for x in listed["items"]] == [agreement["id"], reverse["id"], other_asset["id"]]
    assert (await g.ok("GET", "/v1/recognition/agreements", "admin_c"))["items"] == []
    hidden = await g.call("GET", f"/v1/recognition/agreements/{agreement['id']}", "admin_c")
    assert hidden.status_code == 404
    seen = await g.ok("GET", f"/v1/recognition/agreements/{agreement['id']}", "admin_b")
    assert seen == agreement

    # Either side may end it; both chains record the end.
    ended = await g.ok("POST", f"/v1/recognition/agreements/{agreement['id']}/end", "admin_b")
    assert ended["status"] == "ended" and ended["ended_at"] is not None
    for book in (g.a, g.b):
        metas = _notices(await g.journal(book), "notice.recognition_ended")
        assert [{k: v for k, v in m.items() if k != "actor"} for m in metas] == [
            {"agreement_id": agreement["id"]}
        ]
    twice = await g.call("POST", f"/v1/recognition/agreements/{agreement['id']}/end")
    assert twice.json()["type"] == "urn:timebank:problem:recognition-agreement-ended"
    member = await g.member(g.a)
    await g.earn(g.a, member["hours"], 60)
    refused = await g.transfer(agreement["id"], member["id"], 30)
    assert refused.status_code == 409, refused.text
    assert refused.json()["type"] == "urn:timebank:problem:recognition-agreement-ended"
    # Once ended, the direction is free for a new agreement.
    renewed = await g.agree(g.a, g.b)
    assert renewed["id"] != agreement["id"]
    await g.verify(g.a, g.b)


async def test_concurrent_duplicate_agreements_make_one(region: Region) -> None:
    g = region
    body = {"from_book": g.a, "to_book": g.b}
    answers = await asyncio.gather(
        *(g.call("POST", "/v1/recognition/agreements", body=body) for _ in range(10))
    )
    assert sorted(r.status_code for r in answers) == [201] + [409] * 9
    # Only the one agreement was published.
    for book in (g.a, g.b):
        assert len(_notices(await g.journal(book), "notice.recognition_agreed")) == 1


async def test_a_transfer_writes_one_linked_entry_in_each_book(region: Region) -> None:
    g = region
    agreement = await g.agree(g.a, g.b)
    member = await g.member(g.a)
    await g.earn(g.a, member["hours"], 300)

    key = uuid.uuid4().hex
    r = await g.transfer(agreement["id"], member["id"], 120, key=key)
    assert r.status_code == 201, r.text
    transfer = r.json()
    assert (transfer["from_amount"], transfer["to_amount"], transfer["credited"]) == (120, 120, 120)
    assert transfer["overflow"] == 0 and transfer["member_id"] == member["id"]
    out_ref, in_ref = transfer["from_entry"], transfer["to_entry"]
    assert (out_ref["book"], in_ref["book"]) == (g.a, g.b)

    out = await g.ok("GET", f"/v1/transactions/{out_ref['tx_id']}")
    into = await g.ok("GET", f"/v1/transactions/{in_ref['tx_id']}")
    for ref, stored in ((out_ref, out), (in_ref, into)):
        assert (stored["book"], stored["seq"], stored["entry_hash"]) == (
            ref["book"],
            ref["seq"],
            ref["entry_hash"],
        )
    b_member = await g.member_account(g.b, member["id"])
    assert b_member is not None
    a_clearing, b_clearing = await g.clearing(g.a, g.b), await g.clearing(g.b, g.a)
    assert out["kind"] == "recognition.out" and into["kind"] == "recognition.in"
    assert [(leg["account_id"], leg["amount"]) for leg in out["entry"]["legs"]] == [
        (member["hours"], -120),
        (a_clearing, 120),
    ]
    assert [(leg["account_id"], leg["amount"]) for leg in into["entry"]["legs"]] == [
        (b_clearing, -120),
        (b_member, 120),
    ]
    actor = {"credential": out["entry"]["meta"]["actor"]["credential"], "member": member["id"]}
    common = {"agreement": agreement["id"], "transfer": transfer["id"], "actor": actor}
    assert out["entry"]["meta"] == {
        **common,
        "counterpart": {"book": g.b, "seq": into["seq"], "tx_id": into["id"]},
    }
    assert into["entry"]["meta"] == {
        **common,
        "counterpart": {"book": g.a, "seq": out["seq"], "tx_id": out["id"]},
    }
    assert await g.posted(member["hours"]) == 180
    assert await g.posted(b_member) == 120
    assert (await g.posted(a_clearing), await g.posted(b_clearing)) == (120, -120)

    # A retry with the same key answers the same transfer and posts nothing.
    heads = (await g.head(g.a), await g.head(g.b))
    retry = await g.transfer(agreement["id"], member["id"], 120, key=key)
    assert retry.status_code == 201 and retry.headers.get("Idempotent-Replayed") == "true"
    assert retry.json() == transfer
    assert (await g.head(g.a), await g.head(g.b)) == heads
    assert await g.posted(member["hours"]) == 180

    assert await g.ok("GET", f"/v1/recognition/transfers/{transfer['id']}", "admin_b") == transfer
    mine = await g.ok(
        "GET", f"/v1/members/{member['id']}/recognition-transfers", "mini", member=member["id"]
    )
    assert mine["items"] == [transfer] and mine["next_after"] is None

    # Neither half can be reversed alone: that would unmirror the books.
    for half in (out, into):
        r = await g.call("POST", f"/v1/transactions/{half['id']}/reversal")
        assert r.status_code == 422 and r.json()["type"].endswith(":not-reversible"), r.text
    assert (await g.head(g.a), await g.head(g.b)) == heads
    await g.verify(g.a, g.b)


async def test_hours_go_there_and_back_at_the_agreements_ratios(region: Region) -> None:
    g = region
    # Book b takes a's minutes as points (one point per hour), and gives back an hour a point.
    there = await g.agree(g.a, g.b, to_asset="POINT", ratio_num=1, ratio_den=60)
    back = await g.agree(g.b, g.a, from_asset="POINT", ratio_num=60, ratio_den=1)
    member = await g.member(g.a)
    await g.earn(g.a, member["hours"], 200)

    small = await g.transfer(there["id"], member["id"], 59)
    assert small.status_code == 422
    assert small.json()["type"] == "urn:timebank:problem:recognition-amount-too-small"
    assert small.json()["minimum"] == 60
    moved = await g.transfer(there["id"], member["id"], 150)
    assert moved.status_code == 201, moved.text
    assert (moved.json()["from_amount"], moved.json()["to_amount"]) == (150, 2)  # floor
    points = await g.member_account(g.b, member["id"], "POINT")
    assert points is not None and await g.posted(points) == 2

    returned = await g.transfer(back["id"], member["id"], 2)
    assert returned.status_code == 201, returned.text
    assert returned.json()["to_amount"] == 120
    assert await g.posted(member["hours"]) == 200 - 150 + 120
    assert await g.posted(points) == 0

    report = await g.reconciliation()
    assert report["mirrored"] and report["recorded_matches"] and report["unplaced"] == []
    (pair,) = report["pairs"]
    assert pair["books"] == sorted([g.a, g.b]) and pair["unmatched"] == []
    (row,) = pair["assets"]
    a_side, b_side = (row["a_clearing"], row["b_clearing"])
    sides = {a_side["book"]: a_side, b_side["book"]: b_side}
    # a's clearing for b holds what left a (150 minutes) less what came back (120 minutes);
    # b's clearing for a: −2 points given on arrival, +2 points taken on return.
    assert (sides[g.a]["asset"], sides[g.a]["posted"], sides[g.a]["implied"]) == ("HOUR", 30, 30)
    assert (sides[g.b]["asset"], sides[g.b]["posted"], sides[g.b]["implied"]) == ("POINT", 0, 0)
    flows = {(f["from_book"], f["to_book"]): f for f in (row["a_to_b"], row["b_to_a"])}
    assert flows[(g.a, g.b)]["journal"] == {"transfers": 1, "from_amount": 150, "to_amount": 2}
    assert flows[(g.b, g.a)]["journal"] == {"transfers": 1, "from_amount": 2, "to_amount": 120}
    assert all(f["journal"] == f["recorded"] for f in flows.values())
    await g.verify(g.a, g.b)


async def test_refusals_change_neither_book(region: Region) -> None:
    g = region
    agreement = await g.agree(g.a, g.b)
    member = await g.member(g.a)
    await g.earn(g.a, member["hours"], 100)
    heads = (await g.head(g.a), await g.head(g.b))

    poor = await g.transfer(agreement["id"], member["id"], 101)
    assert poor.status_code == 409
    assert poor.json()["type"] == "urn:timebank:problem:insufficient-funds"
    assert poor.json()["account_id"] == member["hours"]
    assert (await g.head(g.a), await g.head(g.b)) == heads
    assert await g.posted(member["hours"]) == 100

    # A frozen account in the receiving book refuses the whole transfer.
    b_member = await g.member_account(g.b, member["id"])
    assert b_member is not None  # opened by the refused attempt, still empty
    frozen = await g.call("PATCH", f"/v1/accounts/{b_member}", body={"status": "frozen"})
    assert frozen.status_code == 200, frozen.text
    r = await g.transfer(agreement["id"], member["id"], 50)
    assert r.status_code == 409
    assert r.json()["type"] == "urn:timebank:problem:account-not-open"
    assert (await g.head(g.a), await g.head(g.b)) == heads
    assert await g.posted(member["hours"]) == 100
    await g.ok("PATCH", f"/v1/accounts/{b_member}", body={"status": "open"})

    # An erased member takes no part.
    erased = await g.call("POST", f"/v1/members/{member['id']}/erase")
    assert erased.status_code == 200, erased.text
    gone = await g.transfer(agreement["id"], member["id"], 50, who="platform")
    assert gone.status_code == 409
    assert gone.json()["type"] == "urn:timebank:problem:member-not-eligible"
    assert (await g.head(g.a), await g.head(g.b)) == heads

    # Unknown agreement; a member with no hours in the sending book.
    unknown = await g.transfer(str(uuid.uuid4()), member["id"], 1)
    assert unknown.status_code == 404
    assert unknown.json()["type"] == "urn:timebank:problem:recognition-agreement-not-found"
    stranger = await g.member(g.b)
    none = await g.transfer(agreement["id"], stranger["id"], 1)
    assert none.status_code == 409
    assert none.json()["type"] == "urn:timebank:problem:recognition-no-account"
    missing = await g.call("GET", f"/v1/recognition/transfers/{uuid.uuid4()}")
    assert missing.json()["type"] == "urn:timebank:problem:recognition-transfer-not-found"
    await g.verify(g.a, g.b)


async def test_concurrent_transfers_never_overdraw(region: Region) -> None:
    g = region
    agreement = await g.agree(g.a, g.b)
    member = await g.member(g.a)
    await g.earn(g.a, member["hours"], 100)

    answers = await asyncio.gather(
        *(g.transfer(agreement["id"], member["id"], 15) for _ in range(20))
    )
    codes = sorted(r.status_code for r in answers)
    assert codes == [201] * 6 + [409] * 14, [r.text for r in answers if r.status_code >= 500]
    for r in answers:
        if r.status_code == 409:
            assert r.json()["type"] == "urn:timebank:problem:insufficient-funds"
    b_member = await g.member_account(g.b, member["id"])
    assert b_member is not None
    assert (await g.posted(member["hours"]), await g.posted(b_member)) == (10, 90)
    for r in answers:
        if r.status_code != 201:
            continue
        transfer = r.json()
        out = await g.ok("GET", f"/v1/transactions/{transfer['from_entry']['tx_id']}")
        into = await g.ok("GET", f"/v1/transactions/{transfer['to_entry']['tx_id']}")
        assert out["entry"]["meta"]["counterpart"]["tx_id"] == into["id"]
        assert into["entry"]["meta"]["counterpart"]["tx_id"] == out["id"]
    listed = await g.ok("GET", f"/v1/members/{member['id']}/recognition-transfers?limit=4")
    assert len(listed["items"]) == 4 and listed["next_after"] is not None
    rest = await g.ok(
        "GET",
        f"/v1/members/{member['id']}/recognition-transfers?after={listed['next_after']}",
    )
    assert len(rest["items"]) == 2 and rest["next_after"] is None
    report = await g.reconciliation()
    assert report["mirrored"] and report["recorded_matches"]
    (row,) = report["pairs"][0]["assets"]
    by_book = {
        row["a_clearing"]["book"]: row["a_clearing"],
        row["b_clearing"]["book"]: row["b_clearing"],
    }
    assert (by_book[g.a]["posted"], by_book[g.b]["posted"]) == (90, -90)
    await g.verify(g.a, g.b)


async def test_transfers_both_ways_at_once_all_complete(region: Region) -> None:
    g = region
    there = await g.agree(g.a, g.b)
    back = await g.agree(g.b, g.a)
    from_a = [await g.member(g.a) for _ in range(3)]
    from_b = [await g.member(g.b) for _ in range(3)]
    for m in from_a:
        await g.earn(g.a, m["hours"], 1000)
    for m in from_b:
        await g.earn(g.b, m["hours"], 1000)

    calls = []
    for i in range(8):
        for m in from_a:
            calls.append(g.transfer(there["id"], m["id"], 10 + i))
        for m in from_b:
            calls.append(g.transfer(back["id"], m["id"], 20 + i, who="admin_b"))
    answers = await asyncio.gather(*calls)
    assert [r.status_code for r in answers] == [201] * len(calls), [
        r.text for r in answers if r.status_code != 201
    ]
    sent_a = 3 * sum(10 + i for i in range(8))  # 3 × 108 = 324
    sent_b = 3 * sum(20 + i for i in range(8))  # 3 × 188 = 564

    report = await g.reconciliation()
    assert report["mirrored"] and report["recorded_matches"]
    (pair,) = report["pairs"]
    (row,) = pair["assets"]
    clearing = {c["book"]: c["posted"] for c in (row["a_clearing"], row["b_clearing"])}
    assert clearing == {g.a: sent_a - sent_b, g.b: sent_b - sent_a}
    flows = {(f["from_book"], f["to_book"]): f["journal"] for f in (row["a_to_b"], row["b_to_a"])}
    assert flows[(g.a, g.b)] == {"transfers": 24, "from_amount": sent_a, "to_amount": sent_a}
    assert flows[(g.b, g.a)] == {"transfers": 24, "from_amount": sent_b, "to_amount": sent_b}
    await g.verify(g.a, g.b)


async def test_reconciliation_notices_a_clearing_balance_that_is_off(region: Region) -> None:
    g = region
    agreement = await g.agree(g.a, g.b)
    member = await g.member(g.a)
    await g.earn(g.a, member["hours"], 100)
    assert (await g.transfer(agreement["id"], member["id"], 40)).status_code == 201
    assert (await g.reconciliation())["mirrored"]

    # An ordinary posting into a's clearing account: the balance no longer mirrors b's.
    a_clearing = await g.clearing(g.a, g.b)
    await g.earn(g.a, a_clearing, 5)
    report = await g.reconciliation()
    assert not report["mirrored"] and report["recorded_matches"]
    (row,) = report["pairs"][0]["assets"]
    side = row["a_clearing"] if row["a_clearing"]["book"] == g.a else row["b_clearing"]
    assert (side["posted"], side["implied"]) == (45, 40) and not row["mirrored"]
    back = await g.api.transfer(g.a, a_clearing, g.issuance[g.a], 5)
    assert back.status_code == 201, back.text
    assert (await g.reconciliation())["mirrored"]

    # A recognition entry with no counterpart (as a faulty writer would append it; posted
    # through the ledger's one writer directly) is reported, not counted as mirrored.
    draft = Draft(
        g.a,
        "post",
        "recognition.out",
        [(member["hours"], -10), (a_clearing, 10)],
        meta={"agreement": agreement["id"], "transfer": str(uuid.uuid4())},
    )
    forged = await g.api.app.state.sequencer.submit(draft)
    assert forged.status_code == 201, forged.body
    report = await g.reconciliation()
    assert not report["mirrored"]
    (pair,) = report["pairs"]
    assert [(u["tx_id"], u["reason"]) for u in pair["unmatched"]] == [
        (forged.body["id"], "names no counterpart")
    ]
    # The journal now counts a transfer the table does not have.
    assert not report["recorded_matches"]


async def test_who_may_agree_transfer_and_reconcile(region: Region) -> None:
    g = region
    body = {"from_book": g.a, "to_book": g.b}
    one_book = await g.call("POST", "/v1/recognition/agreements", "admin_a", body=body)
    assert one_book.status_code == 404
    for who in ("auditor_a", "org_a", "mini"):
        r = await g.call("POST", "/v1/recognition/agreements", who, body=body, member=None)
        assert r.status_code == 403, (who, r.text)
    agreement = await g.agree(g.a, g.b)
    mine, other = await g.member(g.a), await g.member(g.a)
    await g.earn(g.a, mine["hours"], 100)
    await g.earn(g.a, other["hours"], 100)

    # A mini-program moves only the hours of the member it acts for.
    theirs = await g.call(
        "POST",
        "/v1/recognition/transfers",
        "mini",
        body={"agreement_id": agreement["id"], "member_id": other["id"], "amount": 10},
        member=mine["id"],
    )
    assert theirs.status_code == 404
    assert theirs.json()["type"] == "urn:timebank:problem:member-not-found"
    nobody = await g.call(
        "POST",
        "/v1/recognition/transfers",
        "mini",
        body={"agreement_id": agreement["id"], "amount": 10},
    )
    assert nobody.status_code == 422
    # Admins: of the sending book yes, of the receiving book no (403), of another book 404.
    assert (await g.transfer(agreement["id"], other["id"], 10, who="admin_a")).status_code == 201
    assert (await g.transfer(agreement["id"], other["id"], 10, who="admin_b")).status_code == 403
    assert (await g.transfer(agreement["id"], other["id"], 10, who="admin_c")).status_code == 404
    for who in ("auditor_a", "org_a"):
        assert (await g.transfer(agreement["id"], other["id"], 10, who=who)).status_code == 403
    assert await g.posted(other["hours"]) == 90 and await g.posted(mine["hours"]) == 100

    # Reading: the member's own list through the mini-program, not another's.
    assert (
        await g.call(
            "GET", f"/v1/members/{other['id']}/recognition-transfers", "mini", member=mine["id"]
        )
    ).status_code == 404
    assert (
        await g.call("GET", f"/v1/members/{other['id']}/recognition-transfers", "admin_c")
    ).status_code == 404

    # Reconciliation: admins and auditors, over the pairs of books they reach.
    assert (await g.call("GET", "/v1/recognition/reconciliation", "mini")).status_code == 403
    assert (await g.call("GET", "/v1/recognition/reconciliation", "org_a")).status_code == 403
    seen = await g.reconciliation("auditor_a")
    assert [p["books"] for p in seen["pairs"]] == [sorted([g.a, g.b])] and seen["mirrored"]
    assert (await g.reconciliation("auditor_c"))["pairs"] == []
    out_of_reach = await g.call("GET", f"/v1/recognition/reconciliation?book={g.a}", "auditor_c")
    assert out_of_reach.status_code == 404
    assert (await g.reconciliation("admin_b", book=g.b))["mirrored"]


async def test_the_receiving_books_storage_cap_sends_the_excess_to_its_pool(
    region: Region,
) -> None:
    g = region
    conn = await asyncpg.connect(g.database.app_url)
    try:
        await conn.execute(
            "INSERT INTO book_asset_policies (book_code, asset, storage_cap) "
            "VALUES ($1, 'HOUR', 100)",
            g.b,
        )
    finally:
        await conn.close()
    agreement = await g.agree(g.a, g.b)
    member = await g.member(g.a)
    await g.earn(g.a, member["hours"], 300)

    r = await g.transfer(agreement["id"], member["id"], 130)
    assert r.status_code == 201, r.text
    transfer = r.json()
    assert (transfer["to_amount"], transfer["credited"], transfer["overflow"]) == (130, 100, 30)
    into = await g.ok("GET", f"/v1/transactions/{transfer['to_entry']['tx_id']}")
    b_member = await g.member_account(g.b, member["id"])
    b_clearing = await g.clearing(g.b, g.a)
    legs = [(leg["account_id"], leg["amount"]) for leg in into["entry"]["legs"]]
    assert legs[:2] == [(b_clearing, -130), (b_member, 100)]
    pool = legs[2][0]
    assert legs[2] == (pool, 30)
    assert into["entry"]["meta"]["overflow"] == [{"account": b_member, "amount": 30, "cap": 100}]
    assert await g.posted(pool) == 30 and await g.posted(member["hours"]) == 170
    report = await g.reconciliation()
    assert report["mirrored"] and report["recorded_matches"]
    (row,) = report["pairs"][0]["assets"]
    clearing = {c["book"]: c["posted"] for c in (row["a_clearing"], row["b_clearing"])}
    assert clearing == {g.a: 130, g.b: -130}
    # At the cap in the receiving book: nothing would reach the member, so neither book posts.
    heads = [await g.head(g.a), await g.head(g.b)]
    refused = await g.transfer(agreement["id"], member["id"], 40)
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["type"] == "urn:timebank:problem:nothing-to-move"
    assert (problem["account_id"], problem["storage_cap"]) == (b_member, 100)
    assert [await g.head(g.a), await g.head(g.b)] == heads
    zero = await g.transfer(agreement["id"], member["id"], 0)  # never reaches the ledger
    assert zero.status_code == 422 and zero.json()["type"] == "urn:timebank:problem:validation"
    assert [await g.head(g.a), await g.head(g.b)] == heads
    assert await g.posted(pool) == 30 and await g.posted(member["hours"]) == 170
    await g.verify(g.a, g.b)


@given(
    amounts=st.lists(st.integers(1, 10**9), min_size=1, max_size=20),
    num=st.integers(1, 1_000_000),
    den=st.integers(1, 1_000_000),
)
def test_conversion_never_creates_value(amounts: list[int], num: int, den: int) -> None:
    for amount in amounts:
        got = convert(amount, num, den)
        # floor: the exact value, less under one unit.
        assert got * den <= amount * num < (got + 1) * den
        # There and back at the reciprocal ratio never returns more than was sent.
        assert convert(got, den, num) <= amount
    # Many small transfers never yield more than one transfer of their sum.
    assert sum(convert(a, num, den) for a in amounts) <= convert(sum(amounts), num, den)


async def test_a_mini_program_of_the_home_book_sees_the_members_units_in_every_book(
    region: Region,
) -> None:
    g = region
    g.tokens["mini_a"] = await _credential(g.api, "miniprogram", g.a)
    there = await g.agree(g.a, g.b, to_asset="POINT", ratio_num=1, ratio_den=60)
    member = await g.member(g.a)
    other = await g.member(g.a)
    await g.earn(g.a, member["hours"], 180)
    moved = await g.transfer(there["id"], member["id"], 120)
    assert moved.status_code == 201, moved.text
    points = await g.member_account(g.b, member["id"], "POINT")
    # The path names the member; no X-Member-Id needed to read their balances.
    balances = await g.ok("GET", f"/v1/members/{member['id']}/balances", "mini_a")
    held = {(b["book"], b["asset"]): b["posted"] for b in balances["balances"]}
    assert held[(g.b, "POINT")] == 2 and held[(g.a, "HOUR")] == 60
    history = await g.ok("GET", f"/v1/members/{member['id']}/entries?book={g.b}", "mini_a")
    assert [(i["account_id"], i["amount"]) for i in history["items"]] == [(points, 2)]
    gifts = await g.ok("GET", f"/v1/members/{member['id']}/gifts?book={g.b}", "mini_a")
    assert gifts["items"] == []
    # Acting for the member, it gives there too (the receiver holds an account of POINT there).
    await g.earn(g.a, other["hours"], 60)
    assert (await g.transfer(there["id"], other["id"], 60)).status_code == 201
    gift = await g.call(
        "POST",
        "/v1/gifts",
        "mini_a",
        body={
            "from_member_id": member["id"],
            "to_member_id": other["id"],
            "book": g.b,
            "asset": "POINT",
            "amount": 1,
            "relationship": "friend",
        },
        member=member["id"],
    )
    assert gift.status_code == 201, gift.text
    # An admin of the home book still sees only the books it reaches.
    mine = await g.ok("GET", f"/v1/members/{member['id']}/balances", "admin_a")
    assert {b["book"] for b in mine["balances"]} == {g.a}
    refused = await g.call("GET", f"/v1/members/{member['id']}/entries?book={g.b}", "admin_a")
    assert refused.status_code == 404
