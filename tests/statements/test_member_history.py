"""A member's history names what each line came from: the project served, the rule of an
exchange, the kiosk's items and site, the gift, the other book of a transfer, what a reversal
undid; read by the mini-program bound to the member's home book, in both books."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from tests.conftest import Api
from tests.exchange.market import Market, build_market
from tests.volunteering.district import MORNING


async def history(m: Market, member: dict[str, Any], book: str | None = None) -> list[Any]:
    """The member's whole history in one book, as their mini-program reads it, oldest first."""
    path = f"/v1/members/{member['id']}/entries?limit=500" + (f"&book={book}" if book else "")
    page = await m.ok("GET", path, "mini", member=member["id"])
    assert page["next_before_seq"] is None
    return list(reversed(page["items"]))


async def approved_record(
    m: Market, project: dict[str, Any], member: dict[str, Any], minutes: int, after: int = 0
) -> str:
    """A manual record of `minutes` starting `after` minutes into the morning, approved."""
    r = await m.manual(project["id"], member["id"], MORNING + timedelta(minutes=after), minutes)
    assert r.status_code == 201, r.text
    await m.ok("POST", f"/v1/service-records/{r.json()['id']}/approve", "team")
    return str(r.json()["id"])


async def kiosk(m: Market) -> tuple[str, dict[str, Any]]:
    """A kiosk site selling rice for 5 points, and its kiosk's credential (as `kiosk`)."""
    site = await m.organisation("kiosk_site")
    body = {"role": "kiosk", "book": m.book, "organisation_id": site["id"]}
    m.tokens["kiosk"] = (await m.ok("POST", "/v1/credentials", body=body))["token"]
    item = {"name": "大米", "asset": "POINT", "price": 5, "stock": 10}
    rice = await m.ok("POST", f"/v1/kiosk/sites/{site['id']}/items", body=item)
    return site["name"], rice


async def redeem(m: Market, member: dict[str, Any], rice: dict[str, Any], n: int) -> str:
    code = await m.ok("POST", f"/v1/members/{member['id']}/redeem-codes", "mini")
    body = {"code": code["code"], "items": [{"item_id": rice["id"], "quantity": n}]}
    return str((await m.ok("POST", "/v1/kiosk/redemptions", "kiosk", body=body))["id"])


async def test_each_line_names_what_it_came_from_in_both_books(api: Api) -> None:
    m = await build_market(api)
    member, friend = await m.member(), await m.member()
    team_name = (await m.ok("GET", f"/v1/organisations/{m.team}"))["name"]

    # Service in a project; a second record, approved and then reversed.
    project = await m.project(title="陪伴空巢老人")
    record = await approved_record(m, project, member, 150)
    wrong = await approved_record(m, project, member, 30, after=150)
    await m.ok("POST", f"/v1/service-records/{wrong}/reverse", "team", body={"reason": "录错了"})

    # An exchange under a rule, and points spent at a kiosk: one redemption confirmed, one
    # cancelled.
    rule = await m.rule(ratio={"num": 1, "den": 6})
    quote = (await m.quote(member, 120)).json()
    assert (await m.exchange(quote["id"])).status_code == 201
    site_name, rice = await kiosk(m)
    confirmed = await redeem(m, member, rice, 2)
    await m.ok("POST", f"/v1/kiosk/redemptions/{confirmed}/confirm", "kiosk")
    cancelled = await redeem(m, member, rice, 1)
    await m.ok("POST", f"/v1/kiosk/redemptions/{cancelled}/cancel", "kiosk")

    # A gift to a friend, and a move of ten minutes to book B.
    gift = await m.ok(
        "POST",
        "/v1/gifts",
        "mini",
        body={"to_member_id": friend["id"], "amount": 15},
        member=member["id"],
    )
    b = await api.book()
    agreement = await m.ok(
        "POST",
        "/v1/recognition/agreements",
        "platform",
        body={"from_book": m.book, "to_book": b, "ratio_num": 1, "ratio_den": 1},
    )
    await m.ok(
        "POST",
        "/v1/recognition/transfers",
        "mini",
        body={"agreement_id": agreement["id"], "amount": 10},
        member=member["id"],
    )

    lines = await history(m, member)
    about = [(line["kind"], line["amount"], line["about"]["label"]) for line in lines]
    served = f"志愿服务：陪伴空巢老人（{team_name}）"
    rice_line = f"大米 ×2（{site_name}）"
    assert about == [
        ("service_credit", 150, served),
        ("service_credit", 30, served),
        ("reversal", -30, f"冲正：{served}"),
        ("exchange", -120, "兑换：规则 hour-point 第 1 版"),
        ("exchange", 20, "兑换：规则 hour-point 第 1 版"),
        ("hold", -10, f"爱心超市兑换待确认：{rice_line}"),
        ("hold.post", -10, f"爱心超市兑换：{rice_line}"),
        ("hold", -5, f"爱心超市兑换待确认：大米 ×1（{site_name}）"),
        ("hold.void", -5, f"爱心超市兑换取消：大米 ×1（{site_name}）"),
        ("gift", -15, "赠出"),
        ("recognition.out", -10, f"通存通兑：转出到账本 {b}"),
    ]
    by_kind = {line["kind"]: line["about"] for line in lines}
    assert lines[0]["about"]["topic"] == "service"
    assert lines[0]["about"]["record_id"] == record
    assert lines[0]["about"]["project"] == {
        "id": project["id"],
        "title": "陪伴空巢老人",
        "organisation": {"id": m.team, "name": team_name},
    }
    assert lines[2]["about"]["topic"] == "reversal"
    assert lines[2]["about"]["record_id"] == wrong
    assert lines[2]["about"]["reverses"] == lines[1]["tx_id"]
    assert by_kind["exchange"]["rule"] == {"id": rule["id"], "code": "hour-point", "version": 1}
    assert by_kind["hold.post"]["redemption"] == {
        "id": confirmed,
        "status": "confirmed",
        "site": {"id": rice["site_id"], "name": site_name},
        "items": [{"name": "大米", "quantity": 2}],
    }
    assert by_kind["hold.void"]["redemption"]["status"] == "cancelled"
    assert by_kind["hold.void"]["reason"] == "voided"
    assert by_kind["gift"]["gift_id"] == gift["gift"]["id"]
    assert by_kind["recognition.out"]["counterpart_book"] == b

    # The friend's side of the gift, and the member's line in book B, read by the same
    # mini-program bound to book A.
    (received,) = [line for line in await history(m, friend) if line["kind"] == "gift"]
    assert received["about"]["label"] == "受赠" and received["amount"] == 15
    (arrived,) = await history(m, member, book=b)
    assert (arrived["kind"], arrived["amount"]) == ("recognition.in", 10)
    assert arrived["about"] == {
        **arrived["about"],
        "topic": "recognition",
        "label": f"通存通兑：从账本 {m.book} 转入",
        "counterpart_book": m.book,
    }


async def test_a_page_of_history_names_its_lines_whatever_page_they_fall_on(api: Api) -> None:
    """A reversal on one page names what it undid although that entry is on a later page."""
    m = await build_market(api)
    member = await m.member()
    project = await m.project(title="社区环境清洁")
    record = await approved_record(m, project, member, 45)
    for _ in range(3):
        await m.earn(member, 1)
    await m.ok("POST", f"/v1/service-records/{record}/reverse", "team", body={"reason": "重复"})
    page = await m.ok(
        "GET", f"/v1/members/{member['id']}/entries?limit=1", "mini", member=member["id"]
    )
    (line,) = page["items"]
    assert line["kind"] == "reversal"
    assert line["about"]["label"].startswith("冲正：志愿服务：社区环境清洁")
    older = await m.ok(
        "GET",
        f"/v1/members/{member['id']}/entries?limit=1&before_seq={page['next_before_seq']}",
        "mini",
        member=member["id"],
    )
    (transfer,) = older["items"]
    assert transfer["kind"] == "transfer" and transfer["about"]["topic"] == "other"
    assert str(uuid.UUID(transfer["tx_id"])) == transfer["tx_id"]
