"""Issue 6 from end to end, through the HTTP API only: a member's service hours in book A are
exchanged for points under two versions of a rule, moved to book B and given in part to a
parent there; then every receipt verifies offline, both exports verify, and every figure reconciles
with the journal.

After the move, the member gives part of the hours to a parent registered in book B: a gift
is made in one book, from the giver's account there (`book` in the request).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter, defaultdict
from datetime import timedelta
from typing import Any

import httpx
import rfc8785

from app.audit import offline, receipts
from tests.conftest import Api
from tests.exchange.market import Market, build_market, key
from tests.volunteering.district import MORNING

PROBLEM = "urn:timebank:problem:"

# The story's figures (HOUR in minutes).
SERVED = (180, 150)  # two approved service records
V1 = {"num": 1, "den": 6}  # rule v1: one point per 6 minutes
V2 = {"num": 2, "den": 15}  # rule v2: one point per 7.5 minutes
EXCHANGED_V1, EXCHANGED_V2 = 125, 100
GIFTED = 45
AGREEMENT = (9, 10)  # book B credits 9 minutes for 10 of book A's


def floor_of(amount: int, ratio: dict[str, int]) -> int:
    return amount * ratio["num"] // ratio["den"]


def problem(r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    body: dict[str, Any] = r.json()
    assert body["type"] == PROBLEM + slug, body
    return body


async def export_lines(api: Api, book: str) -> list[bytes]:
    r = await api.client.get(f"/v1/books/{book}/export")
    assert r.status_code == 200, r.text
    return [line.encode() for line in r.text.splitlines() if line]


def entries_of(lines: list[bytes]) -> list[dict[str, Any]]:
    # Each line is {"entry", "entry_hash", "receipt"}; the last one is the checkpoint line.
    parsed = [json.loads(line) for line in lines]
    assert "checkpoint" in parsed[-1] and all("entry" in line for line in parsed[:-1])
    return [line["entry"] for line in parsed[:-1]]


async def posted(api: Api, account: str) -> int:
    r = await api.client.get(f"/v1/accounts/{account}")
    assert r.status_code == 200, r.text
    return int(r.json()["posted"])


async def serve(m: Market, member: dict[str, Any]) -> list[str]:
    """Two projects of the day, a manual record in each, approved: two service credits."""
    morning = await m.project()  # 09:00-12:00
    afternoon = await m.project(
        title="社区环境清洁",
        category="environment",
        starts_at=(MORNING + timedelta(hours=5)).isoformat(),
        ends_at=(MORNING + timedelta(hours=8)).isoformat(),
    )
    txs = []
    for project, start, minutes in (
        (morning, MORNING, SERVED[0]),
        (afternoon, MORNING + timedelta(hours=5), SERVED[1]),
    ):
        r = await m.manual(project["id"], member["id"], start, minutes)
        assert r.status_code == 201, r.text
        assert r.json()["credited_minutes"] == minutes
        approved = await m.ok("POST", f"/v1/service-records/{r.json()['id']}/approve", "team")
        assert approved["status"] == "approved"
        tx = await m.ok("GET", f"/v1/transactions/{approved['tx_id']}")
        assert tx["kind"] == "service_credit"
        assert tx["entry"]["meta"]["record"] == r.json()["id"]
        assert [(leg["account_id"], leg["amount"]) for leg in tx["entry"]["legs"]] == [
            (m.team_issuance, -minutes),
            (member["hours"], minutes),
        ]
        txs.append(approved["tx_id"])
    assert await m.balance(member["hours"]) == sum(SERVED)
    return txs


async def exchange(m: Market, quote: dict[str, Any], rule: dict[str, Any]) -> dict[str, Any]:
    """Execute a quote (and retry it with the same key); its entry, checked against the rule."""
    idem = key()
    r = await m.exchange(quote["id"], key=idem)
    assert r.status_code == 201, r.text
    done = r.json()
    assert done["quote"]["status"] == "executed" and done["quote"]["tx_id"] == done["entry"]["id"]
    retry = await m.exchange(quote["id"], key=idem)
    assert retry.status_code == 201 and retry.headers.get("Idempotent-Replayed") == "true"
    assert retry.json()["entry"]["id"] == done["entry"]["id"]

    entry: dict[str, Any] = done["entry"]["entry"]
    assert entry["kind"] == "exchange"
    meta = entry["meta"]
    assert (meta["rule"], meta["rule_hash"], meta["quote"]) == (
        rule["id"],
        rule["rule_hash"],
        quote["id"],
    )
    assert (meta["rule_code"], meta["rule_version"]) == (rule["code"], rule["version"])
    give, receive = quote["give"]["amount"], quote["receive"]["amount"]
    assert [(leg["asset"], leg["amount"]) for leg in entry["legs"]] == [
        ("HOUR", -give),
        ("HOUR", give),
        ("POINT", -receive),
        ("POINT", receive),
    ]
    return entry


async def test_hours_served_exchanged_given_and_moved_all_verify_and_reconcile(api: Api) -> None:
    m = await build_market(api)  # book A, a charity with HOUR and POINT pools, 10 000 points
    a = m.book
    member = await m.member()
    txs: dict[str, str] = {}

    # 1. The member serves in two projects; each approval credits the hours.
    txs["service_morning"], txs["service_afternoon"] = await serve(m, member)
    earned = sum(SERVED)

    # 2. Rule v1; a quote priced by it, executed: floor(125 × 1 / 6) = 20 points.
    v1 = await m.rule(ratio=V1)
    assert (v1["version"], v1["status"], v1["in_force"]) == (1, "published", True)
    quote = (await m.quote(member, EXCHANGED_V1)).json()
    points_v1 = floor_of(EXCHANGED_V1, V1)
    assert points_v1 == 20
    assert quote["rule"] == {
        "id": v1["id"],
        "code": v1["code"],
        "version": 1,
        "hash": v1["rule_hash"],
    }
    assert quote["give"] == {"asset": "HOUR", "amount": EXCHANGED_V1}
    assert quote["receive"] == {"asset": "POINT", "amount": points_v1}
    exchange_v1 = await exchange(m, quote, v1)
    txs["exchange_v1"] = exchange_v1["tx_id"]
    assert await m.points(member) == points_v1
    # A second quote under v1, left unexecuted.
    stale = (await m.quote(member, 60)).json()
    assert stale["rule"]["id"] == v1["id"] and stale["status"] == "open"

    # 3. Rule v2 of the same code retires v1: the stale quote and v1 itself are refused.
    v2 = await m.rule(ratio=V2)
    assert (v2["code"], v2["version"], v2["rule"]["replaces"]) == (v1["code"], 2, v1["id"])
    assert v2["rule_hash"] != v1["rule_hash"]
    retired = await m.ok("GET", f"/v1/exchange-rules/{v1['id']}")
    assert (retired["status"], retired["in_force"]) == ("retired", False)
    refused = problem(await m.exchange(stale["id"]), 409, "exchange-rule-retired")
    assert refused["rule_id"] == v1["id"]
    problem(await m.quote(member, 60, rule_id=v1["id"]), 409, "exchange-rule-retired")
    stale_now = await m.ok("GET", f"/v1/exchange/quotes/{stale['id']}")
    assert stale_now["tx_id"] is None and stale_now["status"] == "void"

    quote = (await m.quote(member, EXCHANGED_V2)).json()
    points_v2 = floor_of(EXCHANGED_V2, V2)
    assert points_v2 == 13  # floor(100 × 2 / 15), where v1 would have paid 16
    assert (quote["rule"]["id"], quote["rule"]["version"]) == (v2["id"], 2)
    assert quote["receive"] == {"asset": "POINT", "amount": points_v2}
    exchange_v2 = await exchange(m, quote, v2)
    txs["exchange_v2"] = exchange_v2["tx_id"]
    assert await m.points(member) == points_v1 + points_v2

    journal_a = entries_of(await export_lines(api, a))
    published = [e["meta"] for e in journal_a if e["kind"] == "notice.rule_published"]
    assert [(n["rule"]["id"], n["rule_hash"]) for n in published] == [
        (v1["id"], v1["rule_hash"]),
        (v2["id"], v2["rule_hash"]),
    ]
    for notice, rule in zip(published, (v1, v2), strict=True):
        assert notice["rule"] == rule["rule"]
        assert notice["rule_hash"] == hashlib.sha256(rfc8785.dumps(notice["rule"])).hexdigest()
    assert [(n["rule"]["ratio"], n["rule"]["version"]) for n in published] == [(V1, 1), (V2, 2)]
    (retirement,) = [e["meta"] for e in journal_a if e["kind"] == "notice.rule_retired"]
    assert (retirement["rule_id"], retirement["rule_hash"], retirement["version"]) == (
        v1["id"],
        v1["rule_hash"],
        1,
    )
    # The chain's order tells which rule was in force for each exchange.
    assert [
        e["kind"]
        for e in journal_a
        if e["kind"].startswith("notice.rule_") or e["tx_id"] in txs.values()
    ] == [
        "service_credit",
        "service_credit",
        "notice.rule_published",
        "exchange",
        "notice.rule_published",
        "notice.rule_retired",
        "exchange",
    ]

    # 4. The member moves to book B with the rest of the hours, at the agreement's ratio.
    b = await api.book()
    rest = earned - EXCHANGED_V1 - EXCHANGED_V2
    assert await m.balance(member["hours"]) == rest == 105
    agreement = await m.ok(
        "POST",
        "/v1/recognition/agreements",
        "platform",
        body={"from_book": a, "to_book": b, "ratio_num": AGREEMENT[0], "ratio_den": AGREEMENT[1]},
    )
    assert agreement["status"] == "active"
    r = await m.call(
        "POST",
        "/v1/recognition/transfers",
        "mini",
        body={"agreement_id": agreement["id"], "amount": rest},
        member=member["id"],
    )
    assert r.status_code == 201, r.text
    transfer = r.json()
    arrived = rest * AGREEMENT[0] // AGREEMENT[1]
    assert arrived == 94  # floor(94.5): rounding never creates hours
    assert (transfer["from_amount"], transfer["to_amount"]) == (rest, arrived)
    assert (transfer["credited"], transfer["overflow"]) == (arrived, 0)
    out = await m.ok("GET", f"/v1/transactions/{transfer['from_entry']['tx_id']}", "platform")
    into = await m.ok("GET", f"/v1/transactions/{transfer['to_entry']['tx_id']}", "platform")
    assert (out["book"], out["kind"], into["book"], into["kind"]) == (
        a,
        "recognition.out",
        b,
        "recognition.in",
    )
    assert out["entry"]["meta"]["counterpart"] == {
        "book": b,
        "seq": into["seq"],
        "tx_id": into["id"],
    }
    assert into["entry"]["meta"]["counterpart"] == {
        "book": a,
        "seq": out["seq"],
        "tx_id": out["id"],
    }
    assert out["entry"]["legs"][0] == {
        "account_id": member["hours"],
        "asset": "HOUR",
        "amount": -rest,
    }
    member_b = into["entry"]["legs"][1]
    assert member_b["amount"] == arrived and member_b["asset"] == "HOUR"
    hours_b = member_b["account_id"]
    txs["recognition_out"], txs["recognition_in"] = out["id"], into["id"]
    assert await m.balance(member["hours"]) == 0
    assert await posted(api, hours_b) == arrived

    report = await m.ok("GET", "/v1/recognition/reconciliation", "platform")
    assert report["mirrored"] and report["recorded_matches"] and report["unplaced"] == []
    (pair,) = report["pairs"]
    assert pair["books"] == sorted([a, b]) and pair["unmatched"] == [] and pair["mirrored"]
    (row,) = pair["assets"]
    clearing = {
        c["book"]: (c["posted"], c["implied"]) for c in (row["a_clearing"], row["b_clearing"])
    }
    assert clearing == {a: (rest, rest), b: (-arrived, -arrived)}
    flows = {(f["from_book"], f["to_book"]): f for f in (row["a_to_b"], row["b_to_a"])}
    assert flows[(a, b)]["journal"] == {"transfers": 1, "from_amount": rest, "to_amount": arrived}
    assert flows[(b, a)]["journal"] == {"transfers": 0, "from_amount": 0, "to_amount": 0}
    assert all(f["journal"] == f["recorded"] for f in flows.values())

    # 5. In book B, the member gives part of the moved hours to a parent who lives there,
    # under B's relatives-only policy, through book B's mini-program acting for the member.
    parent = await m.ok(
        "POST",
        "/v1/members",
        "platform",
        body={
            "book": b,
            "display_name": "李父",
            "phone": f"138{uuid.uuid4().int % 10**8:08d}",
            "birth_date": "1950-06-01",
            "identity": {"provider": "wechat", "subject": f"o_{uuid.uuid4().hex}"},
        },
    )
    relatives = ["child", "parent", "spouse"]
    policy = await api.client.put(
        f"/v1/books/{b}/asset-policies/HOUR",
        json={"gift_relations": relatives},
        headers={"Idempotency-Key": key()},
    )
    assert policy.status_code == 200 and policy.json()["gift_relations"] == relatives
    app_b = await m.ok(
        "POST", "/v1/credentials", "platform", body={"role": "miniprogram", "book": b}
    )
    m.tokens["mini_b"] = app_b["token"]
    gift_body = {"to_member_id": parent["id"], "book": b, "amount": GIFTED}
    # Book A's mini-program, acting for the member, gives in book B too (issue 21): the
    # member's units are theirs wherever they were moved; book B's policy applies.
    r = await m.call("POST", "/v1/gifts", "mini", body=gift_body, member=member["id"])
    problem(r, 422, "gift-relationship-required")
    r = await m.call(
        "POST",
        "/v1/gifts",
        "mini_b",
        body=gift_body | {"relationship": "friend"},
        member=member["id"],
    )
    problem(r, 422, "gift-relationship-not-allowed")
    r = await m.call(
        "POST",
        "/v1/gifts",
        "mini_b",
        body=gift_body | {"relationship": "parent"},
        member=member["id"],
    )
    assert r.status_code == 201, r.text
    gift = r.json()
    assert gift["gift"]["book"] == b
    assert (gift["gift"]["received"], gift["gift"]["relationship"]) == (GIFTED, "parent")
    txs["gift"] = gift["entry"]["tx_id"]
    assert await posted(api, hours_b) == arrived - GIFTED
    # The member's history in book B: the hours that arrived, then the gift.
    history = await m.ok("GET", f"/v1/members/{member['id']}/entries?book={b}", "platform")
    assert [(i["tx_id"], i["amount"]) for i in history["items"]] == [
        (txs["gift"], -GIFTED),
        (txs["recognition_in"], arrived),
    ]
    gifts = await m.ok("GET", f"/v1/members/{member['id']}/gifts?book={b}", "platform")
    assert [(g["direction"], g["tx_id"]) for g in gifts["items"]] == [("given", txs["gift"])]

    # 7. No redemption. Every transaction of the story has a receipt that verifies offline,
    # with its inclusion proof in a signed checkpoint; both whole exports verify.
    jwks = (await api.client.get("/.well-known/jwks.json")).json()
    lines = {book: await export_lines(api, book) for book in (a, b)}
    journals = {book: entries_of(book_lines) for book, book_lines in lines.items()}
    by_tx = {e["tx_id"]: e for journal in journals.values() for e in journal}
    hashes = {
        json.loads(line)["entry"]["tx_id"]: json.loads(line)["entry_hash"]
        for book_lines in lines.values()
        for line in book_lines[:-1]
    }
    assert Counter(by_tx[tx]["kind"] for tx in txs.values()) == {
        "service_credit": 2,
        "exchange": 2,
        "gift": 1,
        "recognition.out": 1,
        "recognition.in": 1,
    }
    for name, tx in txs.items():
        r = await api.client.get(f"/v1/transactions/{tx}/receipt")
        assert r.status_code == 200, r.text
        answer = r.json()
        bundle = await api.client.get(f"/v1/transactions/{tx}/proof")
        assert bundle.status_code == 200, bundle.text
        verified = offline.verify_receipt(answer["receipt"], jwks, proof=bundle.text)
        claims, entry = verified.claims, by_tx[tx]
        assert (claims["tx_id"], claims["book"], claims["seq"]) == (
            tx,
            entry["book"],
            entry["seq"],
        ), name
        assert claims["entry_hash"] == answer["entry_hash"] == hashes[tx], name
        receipts.check_receipt_entry(claims, entry, hashes[tx])
        assert verified.checkpoint is not None and verified.checkpoint.size >= entry["seq"]
    for book, book_lines in lines.items():
        verdict = offline.verify_export(book_lines[:-1], book_lines[-1], jwks)
        assert (verdict.book, verdict.from_seq, verdict.to_seq) == (book, 1, len(journals[book]))
        assert verdict.totals is not None
        assert all(total == (0, 0) for total in verdict.totals.values()), verdict.totals

    # Every figure reconciles. Each account's balance is the sum of its legs in the journal,
    # and each asset's balances sum to 0 in each book.
    from_journal: dict[str, int] = defaultdict(int)
    assets: dict[str, tuple[str, str]] = {}
    for book, journal in journals.items():
        for entry in journal:
            for leg in entry["legs"]:
                from_journal[leg["account_id"]] += leg["amount"]
                assets[leg["account_id"]] = (book, leg["asset"])
    per_asset: dict[tuple[str, str], int] = defaultdict(int)
    for account, total in from_journal.items():
        assert await posted(api, account) == total, account
        per_asset[assets[account]] += total
    assert set(per_asset) == {(a, "HOUR"), (a, "POINT"), (b, "HOUR")}
    assert all(total == 0 for total in per_asset.values()), per_asset

    points = points_v1 + points_v2
    assert await m.points(member) == points == 33
    pools = {p["asset"]: p for p in await m.ok("GET", f"/v1/organisations/{m.charity}/pools")}
    assert pools["POINT"]["posted"] == 10_000 - points
    assert pools["HOUR"]["posted"] == EXCHANGED_V1 + EXCHANGED_V2
    assert from_journal[pools["HOUR"]["account_id"]] == EXCHANGED_V1 + EXCHANGED_V2
    assert await m.balance(m.team_issuance) == -earned

    balances = await m.ok("GET", f"/v1/members/{member['id']}/balances", "platform")
    seen = {(x["book"], x["asset"]): x for x in balances["balances"]}
    assert {k: x["posted"] for k, x in seen.items()} == {
        (a, "HOUR"): 0,
        (a, "POINT"): points,
        (b, "HOUR"): arrived - GIFTED,
    }
    for x in seen.values():
        assert x["posted"] == from_journal[x["account_id"]]
    parent_balances = await m.ok("GET", f"/v1/members/{parent['id']}/balances", "platform")
    assert {(x["book"], x["asset"]): x["posted"] for x in parent_balances["balances"]} == {
        (b, "HOUR"): GIFTED,
        (b, "POINT"): 0,
    }
    parent_hours = next(
        x["account_id"] for x in parent_balances["balances"] if x["asset"] == "HOUR"
    )
    assert from_journal[parent_hours] == GIFTED
    # What the member earned went exactly to the pool and book A's clearing; what arrived in B
    # is in the member's and the parent's accounts.
    assert earned == EXCHANGED_V1 + EXCHANGED_V2 + rest
    assert from_journal[hours_b] + from_journal[parent_hours] == arrived
