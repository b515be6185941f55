"""Every route × every caller, with the status docs/authorization.md promises.

The routes come from the app's OpenAPI document (generated from its routes): a new route
without a row here fails `test_every_route_has_a_row`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
    csv: str | None = None  # sent as text/csv instead of a JSON body


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
    """Organisation B's member gave a fresh enrolment code (through the mini-program)."""
    r = await w.api.client.post(
        f"/v1/members/{w.member_other}/enrolment-codes",
        headers={"Authorization": f"Bearer {w.tokens['mini']}", "X-Member-Id": w.member_other},
    )
    assert r.status_code == 201, r.text
    return Call(
        "POST", f"/v1/organisations/{w.org_a}/members", {"enrolment_code": r.json()["code"]}
    )


# Volunteering: organisation A's project, open from 12 hours before the world's clock for a
# day and a half. Manual records take a minute each from its start, check-ins happen from the
# clock on; the clock moves on by 31 minutes for each check-out, so each credits time.
async def _project(w: World) -> str:
    if not w.project:
        w.now = datetime.now(UTC).replace(second=0, microsecond=0)
        w.api.app.state.clock = lambda: w.now
        body = {
            "book": w.home,
            "organisation_id": w.org_a,
            "title": "助老服务",
            "category": "elder_care",
            "place": "社区中心",
            "starts_at": (w.now - timedelta(hours=12)).isoformat(),
            "ends_at": (w.now + timedelta(days=1)).isoformat(),
            "capacity": 10,
        }
        w.project = (await w.post("/v1/projects", body))["id"]
        for member, token in ((w.member, "mini"), (w.member_other, "mini")):
            await w.api.client.post(
                f"/v1/projects/{w.project}/signups",
                headers={"Authorization": f"Bearer {w.tokens[token]}", "X-Member-Id": member},
            )
    return w.project


async def _code(w: World) -> str:
    r = await w.api.client.get(f"/v1/projects/{await _project(w)}/checkin-code")
    return str(r.json()["code"])


async def _manual(w: World) -> str:
    """A new pending manual record of member M in A's project, a minute of its own."""
    project = await _project(w)
    w.slot += 1
    start = w.now - timedelta(hours=12) + timedelta(minutes=2 * w.slot)
    body = {
        "project_id": project,
        "member_id": w.member,
        "started_at": start.isoformat(),
        "ended_at": (start + timedelta(minutes=1)).isoformat(),
        "attested_by": "陈站长",
    }
    return str((await w.post("/v1/service-records", body))["id"])


async def _open_record(w: World) -> str:
    """M's open check-in at A's project (checked in now if there is none)."""
    project = await _project(w)
    listed = await w.api.client.get(f"/v1/service-records?member_id={w.member}&status=open")
    items = listed.json()["items"]
    if items:
        return str(items[0]["id"])
    record = await w.api.client.post(
        f"/v1/projects/{project}/checkin",
        json={"code": await _code(w)},
        headers={"Authorization": f"Bearer {w.tokens['mini']}", "X-Member-Id": w.member},
    )
    assert record.status_code in (200, 201), record.text
    return str(record.json()["id"])


async def need_create(w: World) -> Call:
    body = {
        "book": w.home,
        "organisation_id": w.org_a,
        "category": "elder_care",
        "target_group": "empty_nest_elderly",
        "description": "独居老人需要陪伴",
    }
    return Call("POST", "/v1/needs", body)


async def need(w: World) -> str:
    if not w.need:
        w.need = (await w.post("/v1/needs", (await need_create(w)).body or {}))["id"]
    return w.need


async def need_read(w: World) -> Call:
    return Call("GET", f"/v1/needs/{await need(w)}")


async def need_update(w: World) -> Call:
    return Call("PATCH", f"/v1/needs/{await need(w)}", {"status": "open"})


async def project_create(w: World) -> Call:
    await _project(w)
    body = {
        "book": w.home,
        "organisation_id": w.org_a,
        "title": "环保",
        "category": "environment",
        "place": "河边",
        "starts_at": w.now.isoformat(),
        "ends_at": (w.now + timedelta(hours=2)).isoformat(),
        "capacity": 5,
    }
    return Call("POST", "/v1/projects", body)


def on_project(method: str, suffix: str = "", body: dict[str, Any] | None = None) -> Builder:
    async def build(w: World) -> Call:
        return Call(method, f"/v1/projects/{await _project(w)}{suffix}", body)

    return build


async def signup(w: World) -> Call:
    return Call("POST", f"/v1/projects/{await _project(w)}/signups", {"member_id": w.member})


async def cancel_signup(w: World) -> Call:
    project = await _project(w)
    await w.api.client.post(f"/v1/projects/{project}/signups", json={"member_id": w.member})
    return Call("DELETE", f"/v1/projects/{project}/signups/{w.member}")


async def checkin(w: World) -> Call:
    return Call("POST", f"/v1/projects/{await _project(w)}/checkin", {"code": await _code(w)})


async def manual_record(w: World) -> Call:
    project = await _project(w)
    w.slot += 1
    start = w.now - timedelta(hours=12) + timedelta(minutes=2 * w.slot)
    body = {
        "project_id": project,
        "member_id": w.member,
        "started_at": start.isoformat(),
        "ended_at": (start + timedelta(minutes=1)).isoformat(),
        "attested_by": "陈站长",
    }
    return Call("POST", "/v1/service-records", body)


async def import_records(w: World) -> Call:
    project = await _project(w)
    w.slot += 1
    start = w.now - timedelta(hours=12) + timedelta(minutes=2 * w.slot)
    end = start + timedelta(minutes=1)
    csv = (
        "external_id,volunteer_number,project_id,started_at,ended_at,attested_by\n"
        f"imp-{uuid.uuid4().hex},{w.member_number},{project},{start.isoformat()},"
        f"{end.isoformat()},陈站长\n"
    )
    return Call("POST", "/v1/service-records/import?dry_run=true", csv=csv)


async def bulk_approve(w: World) -> Call:
    return Call("POST", "/v1/service-records/approve", {"record_ids": [await _manual(w)]})


def on_record(
    suffix: str = "", body: dict[str, Any] | None = None, approved: bool = False
) -> Builder:
    async def build(w: World) -> Call:
        record = await _manual(w)
        if approved:
            r = await w.api.client.post(f"/v1/service-records/{record}/approve")
            assert r.status_code == 200, r.text
        return Call("POST" if suffix else "GET", f"/v1/service-records/{record}{suffix}", body)

    return build


def on_open_record(suffix: str, advance: bool) -> Builder:
    async def build(w: World) -> Call:
        record = await _open_record(w)
        if advance:
            w.now += timedelta(minutes=31)
        return Call("POST", f"/v1/service-records/{record}{suffix}", {"code": await _code(w)})

    return build


async def owed_write_off(w: World) -> Call:
    """M owes organisation A a minute: a record of A approved, all M holds spent, the record
    corrected with the rest owed (docs/volunteering.md §6.1), and M's hours given back."""
    record = await _manual(w)
    approved = await w.api.client.post(f"/v1/service-records/{record}/approve")
    assert approved.status_code == 200, approved.text
    held = (await w.api.client.get(f"/v1/accounts/{w.member_hours}")).json()["available"]
    if held:
        body = {"member_id": w.member, "amount": held}
        await w.post(f"/v1/books/{w.home}/public-pool/donations", body)
    await w.post(f"/v1/service-records/{record}/reverse", {"reason": "录错", "remainder": "owed"})
    if held:  # M's hours back for the other rows (a transfer settles nothing owed)
        await w.transfer(held)
    path = f"/v1/organisations/{w.org_a}/owed-minutes/{w.member}/write-off"
    return Call("POST", path, {"reason": "无法追回"})


async def answer_dispute(w: World) -> Call:
    record = await _manual(w)
    dispute = await w.api.client.post(
        f"/v1/service-records/{record}/disputes",
        json={"reason": "时长不对"},
        headers={"Authorization": f"Bearer {w.tokens['mini']}", "X-Member-Id": w.member},
    )
    assert dispute.status_code == 201, dispute.text
    body = {"outcome": "dismissed", "answer": "已核实"}
    return Call("POST", f"/v1/service-disputes/{dispute.json()['id']}/answer", body)


async def issued_proof(w: World) -> Call:
    r = await w.api.client.get(f"/v1/members/{w.member}/service-proof")
    assert r.status_code == 200, r.text
    return Call("GET", f"/v1/service-proofs/{r.json()['proof_id']}")


# Exchange (docs/exchange.md): organisation A's POINT pool, funded by a donation, pays a
# standing rule HOUR→POINT (6 minutes a point); member M holds the hours of the world's
# transfer. Each posting row takes a fresh quote, rule, asset or agreement.
async def _market(w: World) -> dict[str, str]:
    if not w.market:
        await w.post(f"/v1/organisations/{w.org_a}/pools", {"asset": "HOUR"})
        pool = await w.post(f"/v1/organisations/{w.org_a}/pools", {"asset": "POINT"})
        donation = await w.post(
            f"/v1/organisations/{w.org_a}/donations",
            {"amount": 10**6, "donor": {"name": "某基金会"}},
        )
        w.market = {
            "pool": pool["account_id"],
            "donation": donation["id"],
            "rule": (await w.post("/v1/exchange-rules", _rule_body(w, _rule_code())))["id"],
            "asset": await _asset_code(w),
        }
    return w.market


def _rule_code() -> str:
    return f"r-{uuid.uuid4().hex[:8]}"


def _rule_body(w: World, code: str) -> dict[str, Any]:
    return {
        "code": code,
        "from_asset": "HOUR",
        "to_asset": "POINT",
        "ratio": {"num": 1, "den": 6},
        "min_amount": 6,
        "pools": [{"book": w.home, "organisation_id": w.org_a}],
    }


async def _asset_code(w: World) -> str:
    call = await new_asset(w)
    assert call.body is not None
    await w.post(call.path, call.body)
    return str(call.body["code"])


def on_market(method: str, path: str) -> Builder:
    async def build(w: World) -> Call:
        return Call(method, path.format(**await _market(w)))

    return build


async def new_asset(w: World) -> Call:
    code = f"F{uuid.uuid4().hex[:8].upper()}"
    body = {"code": code, "name": "基金会积分", "unit": "point", "issuer_organisation_id": w.org_a}
    return Call("POST", "/v1/assets", body)


async def asset_read(w: World) -> Call:
    return Call("GET", f"/v1/assets/{(await _market(w))['asset']}")


async def asset_change(w: World) -> Call:
    return Call("PATCH", f"/v1/assets/{(await _market(w))['asset']}", {"expires_after_years": 2})


async def new_rule(w: World) -> Call:
    await _market(w)
    return Call("POST", "/v1/exchange-rules", _rule_body(w, _rule_code()))


async def rule_read(w: World) -> Call:
    return Call("GET", f"/v1/exchange-rules/{(await _market(w))['rule']}")


async def rule_retire(w: World) -> Call:
    await _market(w)
    rule = await w.post("/v1/exchange-rules", _rule_body(w, _rule_code()))
    return Call("POST", f"/v1/exchange-rules/{rule['id']}/retire", {"reason": "试点结束"})


async def _quote(w: World) -> str:
    body = {"member_id": w.member, "amount": 6, "rule_id": (await _market(w))["rule"]}
    return str((await w.post("/v1/exchange/quotes", body))["id"])


async def new_quote(w: World) -> Call:
    body = {"member_id": w.member, "amount": 6, "rule_id": (await _market(w))["rule"]}
    return Call("POST", "/v1/exchange/quotes", body)


async def quote_read(w: World) -> Call:
    if "quote" not in w.market:
        w.market["quote"] = await _quote(w)
    return Call("GET", f"/v1/exchange/quotes/{w.market['quote']}")


async def exchange(w: World) -> Call:
    return Call("POST", "/v1/exchanges", {"quote_id": await _quote(w)})


async def _agreement(w: World) -> str:
    body = {"from_book": w.home, "to_book": await w.api.book()}
    return str((await w.post("/v1/recognition/agreements", body))["id"])


async def standing_agreement(w: World) -> str:
    if "agreement" not in w.market:
        w.market["agreement"] = await _agreement(w)
    return w.market["agreement"]


async def new_agreement(w: World) -> Call:
    body = {"from_book": w.home, "to_book": await w.api.book()}
    return Call("POST", "/v1/recognition/agreements", body)


async def agreement_read(w: World) -> Call:
    return Call("GET", f"/v1/recognition/agreements/{await standing_agreement(w)}")


async def agreement_end(w: World) -> Call:
    return Call("POST", f"/v1/recognition/agreements/{await _agreement(w)}/end")


async def recognition_transfer(w: World) -> Call:
    body = {"agreement_id": await standing_agreement(w), "member_id": w.member, "amount": 1}
    return Call("POST", "/v1/recognition/transfers", body)


async def transfer_read(w: World) -> Call:
    if "transfer" not in w.market:
        body = {"agreement_id": await standing_agreement(w), "member_id": w.member, "amount": 1}
        w.market["transfer"] = (await w.post("/v1/recognition/transfers", body))["id"]
    return Call("GET", f"/v1/recognition/transfers/{w.market['transfer']}")


async def gift(w: World) -> Call:
    body = {"from_member_id": w.member, "to_member_id": w.member_other, "amount": 1}
    return Call("POST", "/v1/gifts", body)


async def grant(w: World) -> Call:
    if "public_pool" not in w.market:
        body = {"member_id": w.member, "amount": 10}
        await w.post(f"/v1/books/{w.home}/public-pool/donations", body)
        w.market["public_pool"] = "funded"
    body = {"member_id": w.member, "amount": 1, "reason": "困难老人"}
    return Call("POST", f"/v1/books/{w.home}/public-pool/grants", body)


# Kiosk (docs/kiosk.md): an item of unlimited stock at the world's kiosk site, priced in HOUR
# (member M holds hours); each redemption row takes a fresh code from M's mini-program.
async def _kiosk_item(w: World) -> str:
    if "item" not in w.market:
        body = {"name": "大米", "asset": "HOUR", "price": 1, "stock": None}
        w.market["item"] = (await w.post(f"/v1/kiosk/sites/{w.kiosk}/items", body))["id"]
    return w.market["item"]


async def _redeem_code(w: World) -> str:
    r = await w.api.client.post(
        f"/v1/members/{w.member}/redeem-codes",
        headers={
            "Authorization": f"Bearer {w.tokens['mini']}",
            "X-Member-Id": w.member,
            "Idempotency-Key": uuid.uuid4().hex,
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["code"])


async def _redemption(w: World) -> str:
    body = {
        "code": await _redeem_code(w),
        "items": [{"item_id": await _kiosk_item(w), "quantity": 1}],
    }
    return str((await w.post("/v1/kiosk/redemptions", body, w.tokens["kiosk"]))["id"])


async def kiosk_items(w: World) -> Call:
    await _kiosk_item(w)
    return Call("GET", f"/v1/kiosk/sites/{w.kiosk}/items")


async def new_kiosk_item(w: World) -> Call:
    body = {"name": "食用油", "asset": "HOUR", "price": 2, "stock": 5}
    return Call("POST", f"/v1/kiosk/sites/{w.kiosk}/items", body)


async def kiosk_item_change(w: World) -> Call:
    return Call("PATCH", f"/v1/kiosk/items/{await _kiosk_item(w)}", {"price": 1})


async def kiosk_restock(w: World) -> Call:
    item = await w.post(f"/v1/kiosk/sites/{w.kiosk}/items", (await new_kiosk_item(w)).body or {})
    body = {"kind": "restock", "delta": 1, "reason": "到货"}
    return Call("POST", f"/v1/kiosk/items/{item['id']}/stock", body)


async def redeem(w: World) -> Call:
    body = {
        "code": await _redeem_code(w),
        "items": [{"item_id": await _kiosk_item(w), "quantity": 1}],
    }
    return Call("POST", "/v1/kiosk/redemptions", body)


async def new_pairing_code(w: World) -> Call:
    return Call("POST", f"/v1/kiosk/sites/{w.kiosk}/pairing-codes")


async def pairing(w: World) -> Call:
    issued = await w.post(f"/v1/kiosk/sites/{w.kiosk}/pairing-codes", {}, w.tokens["admin"])
    return Call("POST", "/v1/kiosk/pairings", {"code": issued["code"]})


async def console_sign_in(w: World) -> Call:
    return Call("POST", "/v1/console/sessions", {"token": w.tokens["admin"]})


async def code_check(w: World) -> Call:
    return Call("POST", "/v1/kiosk/code-checks", {"code": await _redeem_code(w)})


async def redemption_read(w: World) -> Call:
    if "redemption" not in w.market:
        w.market["redemption"] = await _redemption(w)
    return Call("GET", f"/v1/kiosk/redemptions/{w.market['redemption']}")


def on_redemption(suffix: str) -> Builder:
    async def build(w: World) -> Call:
        return Call("POST", f"/v1/kiosk/redemptions/{await _redemption(w)}{suffix}")

    return build


async def kiosk_report(w: World) -> Call:
    today = datetime.now(UTC).date().isoformat()
    return Call("GET", f"/v1/kiosk/sites/{w.kiosk}/report?date={today}")


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
# What organisation A (a social-work station) does for itself, or an admin names it for.
ORG_A_ACTS = ORG_POSTING
# Organisation A (or an admin) certifying A's record of member M; B does not see it.
CERTIFY_A = (OK, OK, _, OK, H, _, _, _, _, H, _, A)
# Signing member M up: A enrols M; B and the mini-program acting for another do not reach M.
SIGN_UP_M = (OK, OK, _, OK, H, OK, H, _, _, H, _, A)
# What a kiosk site's own credentials (and the book's admins) do to its catalogue.
KIOSK_STAFF = (OK, OK, _, _, _, _, _, OK, _, H, _, A)
# What only the member does, through the mini-program.
MEMBER_ONLY = (_, _, _, _, _, OK, OK, _, _, _, _, A)

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
    # Admins and auditors find the book's members, an organisation its own (B: its own too).
    ("GET", "/v1/members"): (
        fixed("GET", "/v1/members?book={w.home}"),
        (OK, OK, OK, OK, OK, _, _, _, _, H, H, A),
    ),
    ("GET", "/v1/members/{member_id}"): (fixed("GET", "/v1/members/{w.member}"), MEMBER_READ),
    ("PATCH", "/v1/members/{member_id}"): (
        fixed("PATCH", "/v1/members/{w.member}", {"display_name": "王小明"}),
        MEMBER_EDIT,
    ),
    # A fresh member each time, whom the mini-program does not act for (see test_members).
    ("POST", "/v1/members/{member_id}/erase"): (erase, (OK, OK, _, _, _, H, H, _, _, H, _, A)),
    ("POST", "/v1/members/{member_id}/enrolment-codes"): (
        fixed("POST", "/v1/members/{w.member}/enrolment-codes"),
        (OK, OK, _, _, _, OK, H, _, _, H, _, A),
    ),
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
    ("GET", "/v1/books/{code}/witnesses"): (
        fixed("GET", "/v1/books/{w.home}/witnesses"),
        BOOK_READ,
    ),
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
    # Volunteering (docs/volunteering.md): needs and projects are a directory of the book.
    ("GET", "/v1/service-catalog"): (fixed("GET", "/v1/service-catalog"), (OK,) * 11 + (A,)),
    ("POST", "/v1/needs"): (need_create, ORG_A_ACTS),
    ("GET", "/v1/needs"): (fixed("GET", "/v1/needs"), (OK,) * 11 + (A,)),
    ("GET", "/v1/needs/{need_id}"): (need_read, BOOK_READ),
    ("PATCH", "/v1/needs/{need_id}"): (need_update, ORG_A_ACTS),
    ("POST", "/v1/projects"): (project_create, ORG_A_ACTS),
    ("GET", "/v1/projects"): (fixed("GET", "/v1/projects"), (OK,) * 11 + (A,)),
    ("GET", "/v1/projects/{project_id}"): (on_project("GET"), BOOK_READ),
    ("PATCH", "/v1/projects/{project_id}"): (
        on_project("PATCH", "", {"status": "published"}),
        ORG_A_ACTS,
    ),
    ("GET", "/v1/projects/{project_id}/candidates"): (
        on_project("GET", "/candidates"),
        ORG_A_ACTS,
    ),
    ("GET", "/v1/projects/{project_id}/checkin-code"): (
        on_project("GET", "/checkin-code"),
        ORG_A_ACTS,
    ),
    ("POST", "/v1/projects/{project_id}/signups"): (signup, SIGN_UP_M),
    ("GET", "/v1/projects/{project_id}/signups"): (
        on_project("GET", "/signups"),
        (OK, OK, OK, OK, _, _, _, _, _, H, H, A),
    ),
    ("DELETE", "/v1/projects/{project_id}/signups/{member_id}"): (cancel_signup, SIGN_UP_M),
    ("POST", "/v1/projects/{project_id}/checkin"): (checkin, MEMBER_ONLY),
    ("POST", "/v1/service-records"): (manual_record, ORG_A_ACTS),
    ("GET", "/v1/service-records"): (
        fixed("GET", "/v1/service-records"),
        (OK, OK, OK, OK, OK, OK, OK, _, _, OK, OK, A),
    ),
    # Each row of an import is answered in its report: a caller out of reach gets 200 with
    # the row refused (tests/volunteering/test_import.py).
    ("POST", "/v1/service-records/import"): (
        import_records,
        (OK, OK, _, OK, OK, _, _, _, _, OK, _, A),
    ),
    ("POST", "/v1/service-records/approve"): (
        bulk_approve,
        (OK, OK, _, OK, OK, _, _, _, _, OK, _, A),
    ),
    ("GET", "/v1/service-records/{record_id}"): (
        on_record(),
        (OK, OK, OK, OK, H, OK, H, _, _, H, H, A),
    ),
    ("POST", "/v1/service-records/{record_id}/checkout"): (
        on_open_record("/checkout", advance=True),
        (_, _, _, _, _, OK, H, _, _, _, _, A),
    ),
    ("POST", "/v1/service-records/{record_id}/cancel"): (
        on_open_record("/cancel", advance=False),
        (_, _, _, _, _, OK, H, _, _, _, _, A),
    ),
    ("POST", "/v1/service-records/{record_id}/approve"): (on_record("/approve"), CERTIFY_A),
    ("POST", "/v1/service-records/{record_id}/reject"): (
        on_record("/reject", {"reason": "无证明"}),
        CERTIFY_A,
    ),
    ("POST", "/v1/service-records/{record_id}/reverse"): (
        on_record("/reverse", {"reason": "录错"}, approved=True),
        CERTIFY_A,
    ),
    ("POST", "/v1/organisations/{organisation_id}/owed-minutes/{member_id}/write-off"): (
        owed_write_off,
        ORG_POSTING,
    ),
    ("POST", "/v1/service-records/{record_id}/disputes"): (
        on_record("/disputes", {"reason": "时长不对"}),
        (_, _, _, _, _, OK, H, _, _, _, _, A),
    ),
    ("GET", "/v1/service-disputes"): (
        fixed("GET", "/v1/service-disputes"),
        (OK, OK, OK, OK, OK, OK, OK, _, _, OK, OK, A),
    ),
    ("POST", "/v1/service-disputes/{dispute_id}/answer"): (answer_dispute, CERTIFY_A),
    ("GET", "/v1/members/{member_id}/service-proof"): (
        fixed("GET", "/v1/members/{w.member}/service-proof"),
        MEMBER_READ,
    ),
    ("GET", "/v1/service-proofs/{proof_id}"): (issued_proof, PUBLIC),
    ("GET", "/v1/stats/service"): (
        fixed("GET", "/v1/stats/service?book={w.home}"),
        (OK, OK, OK, OK, OK, _, _, _, _, H, H, A),
    ),
    # Organisations see the flows through their own accounts (B: its own, here none).
    ("GET", "/v1/stats/exchange"): (
        fixed("GET", "/v1/stats/exchange?book={w.home}"),
        (OK, OK, OK, OK, OK, _, _, _, _, H, H, A),
    ),
    # Exchange (docs/exchange.md). Assets are one list for the whole platform.
    ("POST", "/v1/assets"): (new_asset, ADMIN_ONLY),
    ("GET", "/v1/assets"): (fixed("GET", "/v1/assets"), (OK,) * 11 + (A,)),
    ("GET", "/v1/assets/{code}"): (asset_read, (OK,) * 11 + (A,)),
    # Another book's admin sees the asset but may not change what A's book issues.
    ("PATCH", "/v1/assets/{code}"): (asset_change, (OK, OK, _, _, _, _, _, _, _, _, _, A)),
    ("POST", "/v1/organisations/{organisation_id}/pools"): (
        fixed("POST", "/v1/organisations/{w.org_a}/pools", {"asset": "POINT"}),
        ORG_A_ACTS,
    ),
    ("GET", "/v1/organisations/{organisation_id}/pools"): (
        fixed("GET", "/v1/organisations/{w.org_a}/pools"),
        (OK, OK, OK, OK, OK, _, _, _, _, H, H, A),
    ),
    ("POST", "/v1/organisations/{organisation_id}/donations"): (
        fixed(
            "POST",
            "/v1/organisations/{w.org_a}/donations",
            {"amount": 5, "donor": {"name": "爱心人士"}},
        ),
        ORG_A_ACTS,
    ),
    ("GET", "/v1/donations/{donation_id}"): (
        on_market("GET", "/v1/donations/{donation}"),
        (OK, OK, OK, OK, OK, _, _, _, _, H, H, A),
    ),
    ("POST", "/v1/exchange-rules"): (new_rule, ADMIN_ONLY),
    ("GET", "/v1/exchange-rules"): (fixed("GET", "/v1/exchange-rules"), (OK,) * 11 + (A,)),
    ("GET", "/v1/exchange-rules/{rule_id}"): (rule_read, BOOK_READ),
    ("POST", "/v1/exchange-rules/{rule_id}/retire"): (rule_retire, ADMIN_ONLY),
    ("POST", "/v1/exchange/quotes"): (new_quote, SIGN_UP_M),
    ("GET", "/v1/exchange/quotes/{quote_id}"): (quote_read, MEMBER_READ),
    ("POST", "/v1/exchanges"): (exchange, SIGN_UP_M),
    # An agreement with a new book the home book's admin does not reach: only the platform.
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
    ("POST", "/v1/recognition/transfers"): (recognition_transfer, MEMBER_EDIT),
    ("GET", "/v1/recognition/transfers/{transfer_id}"): (transfer_read, MEMBER_READ),
    ("GET", "/v1/members/{member_id}/recognition-transfers"): (
        fixed("GET", "/v1/members/{w.member}/recognition-transfers"),
        MEMBER_READ,
    ),
    ("GET", "/v1/recognition/reconciliation"): (
        fixed("GET", "/v1/recognition/reconciliation"),
        (OK, OK, OK, _, _, _, _, _, _, OK, OK, A),
    ),
    ("PUT", "/v1/books/{code}/asset-policies/{asset}"): (
        fixed("PUT", "/v1/books/{w.home}/asset-policies/HOUR", {"gift_yearly_cap": 10**6}),
        ADMIN_ONLY,
    ),
    ("GET", "/v1/books/{code}/asset-policies"): (
        fixed("GET", "/v1/books/{w.home}/asset-policies"),
        BOOK_READ,
    ),
    ("POST", "/v1/gifts"): (gift, MEMBER_EDIT),
    ("GET", "/v1/members/{member_id}/gifts"): (
        fixed("GET", "/v1/members/{w.member}/gifts"),
        MEMBER_READ,
    ),
    ("POST", "/v1/books/{code}/public-pool/donations"): (
        fixed(
            "POST",
            "/v1/books/{w.home}/public-pool/donations",
            {"member_id": "{w.member}", "amount": 1},
        ),
        MEMBER_EDIT,
    ),
    ("POST", "/v1/books/{code}/public-pool/grants"): (grant, CERTIFY_A),
    ("GET", "/v1/books/{code}/public-pool"): (
        fixed("GET", "/v1/books/{w.home}/public-pool"),
        BOOK_READ,
    ),
    # Kiosk (docs/kiosk.md): the site's own credentials and the book's admins.
    ("GET", "/v1/kiosk/site"): (fixed("GET", "/v1/kiosk/site"), (_,) * 7 + (OK, OK, _, _, A)),
    ("GET", "/v1/kiosk/sites/{site_id}/items"): (kiosk_items, BOOK_READ),
    ("POST", "/v1/kiosk/sites/{site_id}/items"): (new_kiosk_item, KIOSK_STAFF),
    ("PATCH", "/v1/kiosk/items/{item_id}"): (kiosk_item_change, KIOSK_STAFF),
    ("POST", "/v1/kiosk/items/{item_id}/stock"): (kiosk_restock, KIOSK_STAFF),
    ("POST", "/v1/members/{member_id}/redeem-codes"): (
        fixed("POST", "/v1/members/{w.member}/redeem-codes"),
        (OK, OK, _, _, _, OK, H, _, _, H, _, A),
    ),
    # Another site's kiosk does not see this site's items.
    ("POST", "/v1/kiosk/redemptions"): (redeem, (_, _, _, _, _, _, _, OK, H, _, _, A)),
    # Pairing a kiosk: its site's admins (the kiosk itself never asks for a code); the code
    # alone pairs, whoever sends it.
    ("POST", "/v1/kiosk/sites/{site_id}/pairing-codes"): (
        new_pairing_code,
        (OK, OK, _, _, _, _, _, _, _, H, _, A),
    ),
    ("POST", "/v1/kiosk/pairings"): (pairing, PUBLIC),
    # The console: a token in the body signs in (whoever calls); with a bearer token the
    # session routes answer the credential itself and have no session to end.
    ("POST", "/v1/console/sessions"): (console_sign_in, PUBLIC),
    ("GET", "/v1/console/session"): (fixed("GET", "/v1/console/session"), (OK,) * 11 + (A,)),
    ("DELETE", "/v1/console/session"): (
        fixed("DELETE", "/v1/console/session"),
        (OK,) * 11 + (A,),
    ),
    # What a scanned code can spend: any kiosk of the member's book (the code is the consent).
    ("POST", "/v1/kiosk/code-checks"): (code_check, (_, _, _, _, _, _, _, OK, OK, _, _, A)),
    ("GET", "/v1/kiosk/redemptions/{redemption_id}"): (
        redemption_read,
        (OK, OK, OK, H, H, OK, H, OK, H, H, H, A),
    ),
    ("POST", "/v1/kiosk/redemptions/{redemption_id}/confirm"): (
        on_redemption("/confirm"),
        (_, _, _, _, _, _, _, OK, H, _, _, A),
    ),
    ("POST", "/v1/kiosk/redemptions/{redemption_id}/cancel"): (
        on_redemption("/cancel"),
        (OK, OK, _, _, _, _, _, OK, H, H, _, A),
    ),
    ("GET", "/v1/kiosk/sites/{site_id}/redemptions"): (
        fixed("GET", "/v1/kiosk/sites/{w.kiosk}/redemptions?status=pending"),
        (OK, OK, OK, _, _, _, _, OK, _, H, H, A),
    ),
    ("GET", "/v1/kiosk/sites/{site_id}/report"): (
        kiosk_report,
        (OK, OK, OK, _, _, _, _, OK, _, H, H, A),
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


@pytest.mark.slow  # every route for every caller: no process, but long
async def test_each_caller_gets_the_documented_status(api: Api, world: World) -> None:
    paths = api.app.openapi()["paths"]
    mismatches, undocumented = [], []
    for (method, template), (build, expected) in MATRIX.items():
        for caller, want in zip(CALLERS, expected, strict=True):
            call = await build(world)
            headers = _headers(world, caller)
            if call.csv is not None:
                r = await api.client.request(
                    call.method,
                    call.path,
                    content=call.csv.encode(),
                    headers=headers | {"Content-Type": "text/csv"},
                )
            else:
                r = await api.client.request(
                    call.method,
                    call.path,
                    json=_fill(call.body, world) if call.body is not None else None,
                    headers=headers,
                )
            # Each caller is its token alone: no console cookie carries over (a sign-in sets one).
            api.client.cookies.clear()
            if str(r.status_code) not in paths[template][method.lower()]["responses"]:
                undocumented.append(f"{method} {template} as {caller}: {r.status_code}")
            got = OK if 200 <= r.status_code < 300 else r.status_code
            if got != want:
                mismatches.append(
                    f"{method} {template} as {caller}: {r.status_code} {r.text[:160]}"
                )
            if r.status_code >= 400:
                assert r.headers["content-type"] == "application/problem+json"
    assert mismatches == []
    assert undocumented == [], "statuses answered but not in the OpenAPI document"
