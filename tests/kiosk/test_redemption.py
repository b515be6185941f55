"""Redemption at a charity supermarket through the API: the happy path, cancellation, expiry,
idempotent retries, and every refusal (docs/kiosk.md)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from app.audit import offline
from app.audit.errors import SigningKeyUnavailable
from app.kiosk import redemptions
from tests.conftest import Api, ScratchDatabase
from tests.identity.test_credentials import notices
from tests.kiosk.shop import Shop, build_shop
from tests.volunteering.test_service_proof import anonymous

PROBLEM = "urn:timebank:problem:"


def problem(r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json", r.text
    body: dict[str, Any] = r.json()
    assert body["type"] == PROBLEM + slug, body
    return body


@pytest.fixture
async def shop(api: Api) -> Shop:
    return await build_shop(api)


async def test_a_basket_is_held_then_confirmed_with_a_receipt_that_verifies(shop: Shop) -> None:
    s = shop
    member = await s.member()
    points = s.points_account(member)
    await s.points_to(member, 100)
    rice = await s.item("大米 5kg", 30, stock=5)
    oil = await s.item("食用油", 20, stock=None)

    r = await s.redeem(await s.code(member), [(rice, 2), (oil, 1)])
    assert r.status_code == 201, r.text
    pending = r.json()
    assert (pending["status"], pending["total"], pending["asset"]) == ("pending", 80, "POINT")
    assert pending["member_id"] == member["id"] and pending["site_id"] == s.site
    assert [(line["name"], line["quantity"], line["amount"]) for line in pending["lines"]] == [
        ("大米 5kg", 2, 60),
        ("食用油", 1, 20),
    ]
    # The points are held and the rice reserved; nothing is posted yet.
    assert await s.available(points) == 20 and await s.balance(points) == 100
    assert (await s.get_item(rice))["available"] == 3
    assert (await s.get_item(rice))["stock"] == 5

    r = await s.confirm(pending["id"])
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["redemption"]["status"] == "confirmed"
    assert done["redemption"]["tx_id"] == done["tx_id"]
    assert await s.balance(points) == 20 and await s.available(points) == 20
    rice_now = await s.get_item(rice)
    assert (rice_now["stock"], rice_now["reserved"], rice_now["available"]) == (3, 0, 3)
    tx = await s.ok("GET", f"/v1/transactions/{done['tx_id']}")
    assert tx["kind"] == "hold.post" and tx["entry"]["meta"]["hold"] == pending["hold_id"]

    jwks = (await s.api.client.get("/.well-known/jwks.json")).json()
    verified = offline.verify_receipt(done["receipt"], jwks)
    assert (verified.claims["tx_id"], verified.claims["seq"]) == (done["tx_id"], done["seq"])
    assert verified.claims["entry_hash"] == done["entry_hash"]

    day = await s.posted_day(done["tx_id"])
    report = await s.ok("GET", f"/v1/kiosk/sites/{s.site}/report?date={day}", "kiosk")
    assert report["reconciled"] and report["differences"] == []
    assert (report["redemptions"], report["taken"]) == (1, {"POINT": 80})
    out = {i["name"]: (i["out"], i["stock_left"]) for i in report["items"]}
    assert out == {"大米 5kg": (2, 3), "食用油": (1, None)}
    csv = await s.call("GET", f"/v1/kiosk/sites/{s.site}/report?date={day}&format=csv", "kiosk")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    saved_as = f'attachment; filename="{s.book}-kiosk-{s.site}-{day}.csv"'
    assert csv.headers["content-disposition"] == saved_as
    # A BOM first, so that a spreadsheet reads the Chinese names as UTF-8.
    assert csv.content.startswith(b"\xef\xbb\xbfdate,item_id,name,")
    assert f"{day},{rice['id']},大米 5kg,POINT,30,2,3,0" in csv.text
    assert f"{day},1,POINT,80,true," in csv.text


async def test_cancel_and_expiry_give_points_and_stock_back(shop: Shop) -> None:
    s = shop
    member = await s.member()
    points = s.points_account(member)
    await s.points_to(member, 50)
    soap = await s.item("肥皂", 10, stock=2)

    first = (await s.redeem(await s.code(member), [(soap, 2)])).json()
    assert (await s.get_item(soap))["available"] == 0
    cancelled = (await s.cancel(first["id"])).json()["redemption"]
    assert cancelled["status"] == "cancelled" and cancelled["tx_id"] is not None
    assert (await s.get_item(soap))["available"] == 2 and await s.available(points) == 50
    problem(await s.confirm(first["id"]), 409, "redemption-not-pending")

    second = (await s.redeem(await s.code(member), [(soap, 1)])).json()
    s.later(121)
    # The service's sweeper may settle it first (it runs every second); either way, once.
    state = s.api.app.state
    await redemptions.expire_due(state.sessions, state.sequencer, state.clock())
    expired = await s.ok("GET", f"/v1/kiosk/redemptions/{second['id']}", "kiosk")
    assert expired["status"] == "expired"
    assert (await s.get_item(soap))["available"] == 2 and await s.available(points) == 50
    hold = await s.ok("GET", f"/v1/holds/{second['hold_id']}")
    assert hold["status"] == "voided"
    # Nothing more to expire.
    assert await redemptions.expire_due(state.sessions, state.sequencer, state.clock()) == 0


async def test_a_retried_request_is_answered_once(shop: Shop) -> None:
    s = shop
    member = await s.member()
    await s.points_to(member, 50)
    tea = await s.item("茶叶", 15, stock=10)
    code, key = await s.code(member), uuid.uuid4().hex
    first = await s.redeem(code, [(tea, 1)], key=key)
    again = await s.redeem(code, [(tea, 1)], key=key)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    assert (await s.get_item(tea))["reserved"] == 1
    confirm_key = uuid.uuid4().hex
    done = await s.confirm(first.json()["id"], key=confirm_key)
    replay = await s.confirm(first.json()["id"], key=confirm_key)
    assert replay.status_code == 200 and replay.json() == done.json()
    assert (await s.get_item(tea))["stock"] == 9


async def test_codes_that_are_forged_expired_used_or_for_another_member_are_refused(
    shop: Shop,
) -> None:
    s = shop
    member, other = await s.member(), await s.member()
    await s.points_to(member, 50)
    jam = await s.item("果酱", 5, stock=None)
    code = await s.code(member)
    forged = code[:-1] + ("A" if code[-1] != "A" else "B")
    problem(await s.redeem(forged, [(jam, 1)]), 422, "redeem-code-invalid")
    problem(await s.redeem("hello", [(jam, 1)]), 422, "redeem-code-invalid")
    problem(
        await s.redeem(code, [(jam, 1)], member_id=other["id"]), 409, "redeem-code-other-member"
    )
    assert (await s.redeem(code, [(jam, 1)], member_id=member["id"])).status_code == 201
    problem(await s.redeem(code, [(jam, 1)]), 409, "redeem-code-used")
    late = await s.code(member)
    s.later(61)
    problem(await s.redeem(late, [(jam, 1)]), 409, "redeem-code-expired")
    # An erased member gets no code.
    erased = await s.member()
    assert (await s.call("POST", f"/v1/members/{erased['id']}/erase")).status_code == 200
    problem(await s.call("POST", f"/v1/members/{erased['id']}/redeem-codes"), 409, "member-erased")
    # A mini-program asks codes only for the member it acts for.
    r = await s.call("POST", f"/v1/members/{other['id']}/redeem-codes", "mini", member=member["id"])
    problem(r, 404, "member-not-found")
    # The path names the member, as on every member route: no X-Member-Id needed.
    r = await s.call("POST", f"/v1/members/{member['id']}/redeem-codes", "mini")
    assert r.status_code == 201, r.text
    assert r.json()["member_id"] == member["id"]


async def test_stock_balance_site_and_time_refusals(shop: Shop) -> None:
    s = shop
    member = await s.member()
    await s.points_to(member, 40)
    milk = await s.item("牛奶", 10, stock=1)
    gold = await s.item("金条", 1000, stock=None)
    elsewhere = await s.item("面条", 5, stock=None, site=s.other_site)

    problem(await s.redeem(await s.code(member), [(milk, 2)]), 409, "out-of-stock")
    low = problem(await s.redeem(await s.code(member), [(gold, 1)]), 409, "insufficient-funds")
    assert low["account_id"] == s.points_account(member)
    # A basket whose total passes the largest amount a journal holds is refused, not a 500.
    priceless = await s.item("无价之宝", 2**53 - 1, stock=None)
    r = await s.redeem(await s.code(member), [(priceless, 2)])
    problem(r, 409, "insufficient-funds")
    # A kiosk redeems only its own site's items, and sees no other site's redemptions.
    problem(await s.redeem(await s.code(member), [(elsewhere, 1)]), 404, "kiosk-item-not-found")
    pending = (await s.redeem(await s.code(member), [(milk, 1)])).json()
    problem(await s.confirm(pending["id"], kiosk="kiosk_other"), 404, "redemption-not-found")
    problem(await s.cancel(pending["id"], who="kiosk_other"), 404, "redemption-not-found")
    # Another kiosk of the same site may confirm it.
    s.later(121)
    problem(await s.confirm(pending["id"], kiosk="kiosk_2"), 409, "redemption-expired")
    # A withdrawn item is refused; a redemption needs a kiosk.
    fresh = await s.item("鸡蛋", 2, stock=10)
    await s.ok("PATCH", f"/v1/kiosk/items/{fresh['id']}", "shop_org", body={"status": "inactive"})
    problem(await s.redeem(await s.code(member), [(fresh, 1)]), 409, "kiosk-item-inactive")
    r = await s.call("POST", "/v1/kiosk/redemptions", "admin", body={"code": "x", "items": []})
    assert r.status_code in (403, 422)


async def test_double_confirm_is_refused(shop: Shop) -> None:
    s = shop
    member = await s.member()
    await s.points_to(member, 40)
    bread = await s.item("面包", 10, stock=3)
    pending = (await s.redeem(await s.code(member), [(bread, 1)])).json()
    assert (await s.confirm(pending["id"])).status_code == 200
    again = problem(await s.confirm(pending["id"]), 409, "redemption-not-pending")
    assert again["redemption_status"] == "confirmed"
    problem(await s.cancel(pending["id"]), 409, "redemption-not-pending")
    assert (await s.get_item(bread))["stock"] == 2
    assert await s.balance(s.points_account(member)) == 30


async def test_stock_changes_are_recorded_and_never_below_zero(shop: Shop) -> None:
    s = shop
    member = await s.member()
    await s.points_to(member, 40)
    flour = await s.item("面粉", 10, stock=2)
    restock = await s.ok(
        "POST",
        f"/v1/kiosk/items/{flour['id']}/stock",
        "kiosk",
        body={"kind": "restock", "delta": 3, "reason": "到货"},
    )
    assert restock["item"]["stock"] == 5 and restock["move"]["stock_after"] == 5
    assert restock["move"]["created_by"] == s.credentials["kiosk"]
    await s.redeem(await s.code(member), [(flour, 2)])  # 2 held back
    r = await s.call(
        "POST",
        f"/v1/kiosk/items/{flour['id']}/stock",
        "kiosk",
        body={"kind": "correction", "delta": -4, "reason": "盘点"},
    )
    problem(r, 409, "stock-below-zero")
    r = await s.call(
        "POST",
        f"/v1/kiosk/items/{flour['id']}/stock",
        "kiosk",
        body={"kind": "correction", "delta": -3, "reason": "盘点"},
    )
    assert r.status_code == 201 and r.json()["item"]["available"] == 0
    # Another site's kiosk may read the item but not change it.
    r = await s.call(
        "POST",
        f"/v1/kiosk/items/{flour['id']}/stock",
        "kiosk_other",
        body={"kind": "restock", "delta": 1, "reason": "到货"},
    )
    assert r.status_code == 403


async def test_the_report_names_what_does_not_reconcile(shop: Shop) -> None:
    s = shop
    member = await s.member()
    points = s.points_account(member)
    await s.points_to(member, 100)
    rice = await s.item("大米", 10, stock=5)
    pending = (await s.redeem(await s.code(member), [(rice, 1)])).json()
    done = (await s.confirm(pending["id"])).json()
    day = await s.posted_day(done["tx_id"])
    path = f"/v1/kiosk/sites/{s.site}/report?date={day}"
    assert (await s.ok("GET", path, "shop_org"))["reconciled"]

    # Points posted to the site outside any redemption: the books hold more than the goods.
    posted = await s.ok("GET", f"/v1/transactions/{done['tx_id']}")
    site_account = posted["entry"]["legs"][1]["account_id"]
    hold = await s.ok(
        "POST",
        f"/v1/books/{s.book}/holds",
        body={"from_account_id": points, "to_account_id": site_account, "amount": 7},
    )
    await s.ok("POST", f"/v1/holds/{hold['id']}/post", body={})
    report = await s.ok("GET", path, "shop_org")
    assert not report["reconciled"]
    assert [d["issue"] for d in report["differences"]] == [
        "hold.post of 7 POINT with no redemption"
    ]
    # The redemption itself still counts once.
    assert (report["redemptions"], report["taken"]) == (1, {"POINT": 10})


async def test_a_basket_priced_in_two_assets_is_refused(shop: Shop) -> None:
    s = shop
    member = await s.member()
    await s.points_to(member, 40)
    points_item = await s.item("毛巾", 5, stock=None)
    body = {"name": "理发", "asset": "HOUR", "price": 30, "stock": None}
    hours_item = await s.ok("POST", f"/v1/kiosk/sites/{s.site}/items", "admin", body=body)
    code = await s.code(member)
    r = await s.redeem(code, [(points_item, 1), (hours_item, 1)])
    problem(r, 422, "basket-mixed-assets")
    # Nothing was held or used: the same code still redeems a one-asset basket.
    assert (await s.redeem(code, [(points_item, 1)])).status_code == 201


async def test_a_sites_pending_redemptions_can_be_picked_up_again(shop: Shop) -> None:
    s = shop
    member = await s.member()
    await s.points_to(member, 40)
    tea = await s.item("红茶", 10, stock=None)
    first = (await s.redeem(await s.code(member), [(tea, 1)])).json()
    second = (await s.redeem(await s.code(member), [(tea, 2)])).json()
    await s.confirm(first["id"])
    path = f"/v1/kiosk/sites/{s.site}/redemptions"
    pending = await s.ok("GET", f"{path}?status=pending", "kiosk_2")
    assert [r["id"] for r in pending["items"]] == [second["id"]]
    every = await s.ok("GET", path, "shop_org")
    assert [r["id"] for r in every["items"]] == [second["id"], first["id"]]
    assert [r["status"] for r in every["items"]] == ["pending", "confirmed"]
    # Another site's kiosk does not list them; a bad status is a validation problem.
    assert (await s.call("GET", path, "kiosk_other")).status_code == 403
    problem(await s.call("GET", f"{path}?status=lost", "kiosk"), 422, "validation")


async def test_a_refused_redemption_retried_with_its_key_is_decided_again(shop: Shop) -> None:
    # The hold and the redemption are one transaction: a refusal is not stored under any key.
    s = shop
    member = await s.member()
    await s.points_to(member, 5)
    rice = await s.item("大米", 10, stock=3)
    code, key = await s.code(member), uuid.uuid4().hex
    problem(await s.redeem(code, [(rice, 1)], key=key), 409, "insufficient-funds")
    await s.points_to(member, 5)
    again = await s.redeem(code, [(rice, 1)], key=key)
    assert again.status_code == 201, again.text
    assert again.headers.get("Idempotent-Replayed") is None
    assert (await s.get_item(rice))["reserved"] == 1


async def test_a_confirmation_whose_receipt_cannot_be_signed_stands_and_a_retry_gets_it(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The receipt is signed after the confirmation commits: a signing failure loses no step.
    s = shop
    member = await s.member()
    await s.points_to(member, 20)
    soap = await s.item("香皂", 10, stock=2)
    pending = (await s.redeem(await s.code(member), [(soap, 1)])).json()
    receipts = s.api.app.state.audit.receipts

    async def no_key(*_: Any) -> Any:
        raise SigningKeyUnavailable("no signing key is valid now")

    monkeypatch.setattr(receipts, "sign", no_key)
    key = uuid.uuid4().hex
    problem(await s.confirm(pending["id"], key=key), 503, "signing-key-unavailable")
    found = await s.ok("GET", f"/v1/kiosk/redemptions/{pending['id']}", "kiosk")
    assert found["status"] == "confirmed" and (await s.get_item(soap))["stock"] == 1
    monkeypatch.undo()
    again = await s.confirm(pending["id"], key=key)
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    jwks = (await s.api.client.get("/.well-known/jwks.json")).json()
    verified = offline.verify_receipt(again.json()["receipt"], jwks)
    assert verified.claims["tx_id"] == found["tx_id"] == again.json()["tx_id"]


async def test_the_kiosk_sees_what_a_scanned_code_can_spend_before_the_basket(
    shop: Shop,
) -> None:
    s = shop
    member = await s.member()
    await s.points_to(member, 50)
    await s.item("挂面", 12, stock=None)
    code = await s.code(member)
    checked = await s.call("POST", "/v1/kiosk/code-checks", "kiosk", body={"code": code})
    assert checked.status_code == 200, checked.text
    seen = checked.json()
    assert seen["member_id"] == member["id"]
    assert seen["volunteer_number"] == member["volunteer_number"]
    assert seen["points"] == [{"asset": "POINT", "available": 50}]
    # Checking leaves the code unused; a used or forged one is refused as at redemption.
    noodles = await s.item("挂面二", 12, stock=None)
    assert (await s.redeem(code, [(noodles, 1)])).status_code == 201
    again = await s.call("POST", "/v1/kiosk/code-checks", "kiosk", body={"code": code})
    problem(again, 409, "redeem-code-used")
    forged = await s.call("POST", "/v1/kiosk/code-checks", "kiosk", body={"code": "HELLO"})
    problem(forged, 422, "redeem-code-invalid")
    # Only a kiosk asks.
    mini = await s.call("POST", "/v1/kiosk/code-checks", "mini", body={"code": code})
    problem(mini, 403, "forbidden")
    # A member erased after the code was issued is told at the check, as at redemption.
    gone = await s.member()
    gone_code = await s.code(gone)
    assert (await s.call("POST", f"/v1/members/{gone['id']}/erase")).status_code == 200
    erased = await s.call("POST", "/v1/kiosk/code-checks", "kiosk", body={"code": gone_code})
    problem(erased, 409, "member-erased")


async def test_a_kiosk_pairs_with_a_short_code_instead_of_a_token(
    shop: Shop, database: ScratchDatabase
) -> None:
    s = shop
    issued = await s.call("POST", f"/v1/kiosk/sites/{s.site}/pairing-codes", "platform")
    assert issued.status_code == 201, issued.text
    code = issued.json()["code"]
    assert len(code) == 8 and issued.json()["site_id"] == s.site
    # No token: the code is the authority; typed in lower case with a space, it still works.
    async with anonymous(s.api) as client:
        typed = f"{code[:4].lower()} {code[4:]}"
        r = await client.post("/v1/kiosk/pairings", json={"code": typed, "name": "收银台 2"})
        assert r.status_code == 201, r.text
        paired = r.json()
        assert paired["role"] == "kiosk" and paired["organisation_id"] == s.site
        assert paired["name"] == "收银台 2" and paired["token"].startswith("tbk_")
        site = await client.get(
            "/v1/kiosk/site", headers={"Authorization": f"Bearer {paired['token']}"}
        )
        assert site.status_code == 200 and site.json()["site_id"] == s.site
        # Once only, and never a guessed one.
        again = await client.post("/v1/kiosk/pairings", json={"code": code})
        problem(again, 422, "pairing-code-invalid")
        guessed = await client.post("/v1/kiosk/pairings", json={"code": "ABCDEFGH"})
        problem(guessed, 422, "pairing-code-invalid")
    # The grant is in the journal, its actor the credential that asked for the code.
    granted = [
        n for n in await notices(database, s.book) if n["kind"] == "notice.credential_granted"
    ]
    assert granted[-1]["meta"]["credential_id"] == paired["id"]
    assert granted[-1]["meta"]["actor"]["credential"] == s.api.credential
    # The kiosk itself never asks for a code; a late code is refused.
    problem(
        await s.call("POST", f"/v1/kiosk/sites/{s.site}/pairing-codes", "kiosk"), 403, "forbidden"
    )
    late = (await s.call("POST", f"/v1/kiosk/sites/{s.site}/pairing-codes", "admin")).json()
    s.later(601)
    async with anonymous(s.api) as client:
        expired = await client.post("/v1/kiosk/pairings", json={"code": late["code"]})
        problem(expired, 422, "pairing-code-invalid")
