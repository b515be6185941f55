"""The console's Work queues and Members & organisations screens in Chromium, against the
demo district: an organisation approves records in bulk and rejects one (the members' HOUR
balances move by exactly the approved minutes), answers a dispute and enrols a member by
their consent code; an admin issues, rotates and revokes a credential (its token shown once),
asks for a kiosk pairing code and opens a member's balances and history; an auditor can reach
none of it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.console.conftest import (
    BOOK,
    Console,
    go,
    open_console,
    screenshot,
    serious_axe_violations,
    sign_in,
)

pytestmark = pytest.mark.slow

# Demo members the tests of this module take, one each, so that their records never meet.
_taken: set[str] = set()


def ok(response: httpx.Response, *statuses: int) -> Any:
    assert response.status_code in (statuses or (200, 201)), response.text
    return response.json()


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def demo_members(console: Console, count: int) -> list[str]:
    """Members of the demo district with service to their name that no test of this module
    has used yet and that the station does not reach yet (not its members)."""
    async with console.api("admin") as admin, console.api("org") as org:
        page = ok(
            await admin.get(
                "/v1/service-records", params={"book": BOOK, "status": "approved", "limit": 500}
            )
        )
        chosen: list[str] = []
        for record in reversed(page["items"]):
            member_id = record["member_id"]
            if member_id in _taken:
                continue
            _taken.add(member_id)
            if (await org.get(f"/v1/members/{member_id}")).status_code == 404:
                chosen.append(member_id)
            if len(chosen) == count:
                return chosen
    raise AssertionError(f"fewer than {count} demo members are left")


async def enrol_in_station(console: Console, member_id: str) -> None:
    """The member's consent code (asked by an admin of the book), given to the station."""
    async with console.api("admin") as admin, console.api("org") as org:
        code = ok(await admin.post(f"/v1/members/{member_id}/enrolment-codes", headers=key()))
        ok(
            await org.post(
                f"/v1/organisations/{console.station['id']}/members",
                json={"enrolment_code": code["code"]},
                headers=key(),
            )
        )


async def project_of_today(console: Console, title: str) -> dict[str, Any]:
    """A project of the station that runs now (so it is today's wherever the day starts)."""
    now = datetime.now(UTC).replace(microsecond=0)
    async with console.api("org") as org:
        return ok(
            await org.post(
                "/v1/projects",
                json={
                    "book": BOOK,
                    "title": title,
                    "category": "elder_care",
                    "place": "街道社工站活动室",
                    "starts_at": (now - timedelta(hours=3)).isoformat(),
                    "ends_at": (now + timedelta(hours=2)).isoformat(),
                    "capacity": 10,
                },
                headers=key(),
            )
        )


async def manual_record(
    console: Console, project: dict[str, Any], member_id: str, minutes: int
) -> dict[str, Any]:
    """The member signed up, then a record of `minutes` entered by hand (pending)."""
    start = datetime.fromisoformat(project["starts_at"]) + timedelta(minutes=10)
    async with console.api("org") as org:
        ok(
            await org.post(
                f"/v1/projects/{project['id']}/signups",
                json={"member_id": member_id},
                headers=key(),
            )
        )
        record = ok(
            await org.post(
                "/v1/service-records",
                json={
                    "project_id": project["id"],
                    "member_id": member_id,
                    "started_at": start.isoformat(),
                    "ended_at": (start + timedelta(minutes=minutes)).isoformat(),
                    "attested_by": "陈建华",
                },
                headers=key(),
            )
        )
    assert record["status"] == "pending" and record["credited_minutes"] == minutes
    return record


async def hour_balance(console: Console, member_id: str) -> int:
    async with console.api("admin") as admin:
        answer = ok(await admin.get(f"/v1/members/{member_id}/balances"))
    (hour,) = [b for b in answer["balances"] if b["asset"] == "HOUR" and b["book"] == BOOK]
    return hour["posted"]


async def as_station(console: Console, member_id: str) -> dict[str, Any]:
    """The member as the station reads them (masked)."""
    async with console.api("org") as org:
        return ok(await org.get(f"/v1/members/{member_id}"))


async def test_org_approves_two_in_bulk_and_rejects_one(browser: Any, console: Console) -> None:
    members = await demo_members(console, 4)
    for member_id in members:
        await enrol_in_station(console, member_id)
    title = f"上门陪伴 {uuid.uuid4().hex[:6]}"
    project = await project_of_today(console, title)
    minutes = [41, 53, 67, 29]
    records = [
        await manual_record(console, project, m, n) for m, n in zip(members, minutes, strict=True)
    ]
    before = [await hour_balance(console, m) for m in members]

    page = await open_console(browser, console)
    await sign_in(page, console.tokens["org"])
    await go(page, "queues")
    for record, member_id, n in zip(records, members, minutes, strict=True):
        row = page.locator(f"#q-pending-table tr[data-record='{record['id']}']")
        text = await row.inner_text()
        seen = await as_station(console, member_id)
        assert seen["masked"] and seen["display_name"].endswith("*")
        assert seen["volunteer_number"] in text and seen["display_name"] in text
        assert title in text and str(n) in text and "手工录入" in text and "陈建华" in text

    # Today's project: four sign-ups of ten places, nobody checked in; opened, the names.
    summary = page.locator(f"details[data-project='{project['id']}'] summary")
    assert "报名 4/10" in await summary.inner_text()
    assert "签到中 0" in await summary.inner_text()
    await summary.click()
    await page.wait_for_selector(f"details[data-project='{project['id']}'][data-filled]")
    listed = await page.inner_text(f"details[data-project='{project['id']}']")
    for member_id in members:
        assert (await as_station(console, member_id))["volunteer_number"] in listed
    await screenshot(page, "queues-org")

    # Three ticked for bulk approval; the third is rejected behind the page's back, so the
    # answer approves two and says why the third was refused.
    for record in records[:3]:
        await page.check(f"#q-pending-table tr[data-record='{record['id']}'] input[type=checkbox]")
    assert await page.inner_text("#q-bulk") == "批准所选（3）"
    async with console.api("org") as org:
        ok(
            await org.post(
                f"/v1/service-records/{records[2]['id']}/reject",
                json={"reason": "重复录入"},
                headers=key(),
            )
        )
    await page.click("#q-bulk")
    report = page.locator("#q-pending .q-report")
    await report.wait_for()
    assert "成功 2 条，未批准 1 条" in await report.inner_text()
    refused = await page.inner_text(f"li[data-refused='{records[2]['id']}']")
    assert (await as_station(console, members[2]))["volunteer_number"] in refused
    assert "409" in refused
    for record in records[:3]:
        await page.wait_for_selector(
            f"#q-pending-table tr[data-record='{record['id']}']", state="detached"
        )

    # The fourth is rejected in the page, with a reason.
    fourth = f"#q-pending-table tr[data-record='{records[3]['id']}']"
    await page.click(f"{fourth} button[data-action=reject]")
    await page.fill(f"#q-reason-{records[3]['id']}", "当天未到场")
    await page.click(f"tr[data-reject='{records[3]['id']}'] button[type=submit]")
    await page.wait_for_selector(fourth, state="detached")

    after = [await hour_balance(console, m) for m in members]
    assert [a - b for a, b in zip(after, before, strict=True)] == [41, 53, 0, 0]
    async with console.api("org") as org:
        statuses = [ok(await org.get(f"/v1/service-records/{r['id']}"))["status"] for r in records]
        fourth_record = ok(await org.get(f"/v1/service-records/{records[3]['id']}"))
        queue = ok(await org.get("/v1/service-records", params={"status": "pending", "limit": 500}))
    assert statuses == ["approved", "approved", "rejected", "rejected"]
    assert fourth_record["reject_reason"] == "当天未到场"
    assert not {r["id"] for r in records} & {r["id"] for r in queue["items"]}
    assert page.errors == []
    await page.context.close()


async def test_org_answers_a_dispute(browser: Any, console: Console) -> None:
    (member_id,) = await demo_members(console, 1)
    await enrol_in_station(console, member_id)
    project = await project_of_today(console, f"助老送餐 {uuid.uuid4().hex[:6]}")
    record = await manual_record(console, project, member_id, 37)
    async with console.api("org") as org:
        ok(await org.post(f"/v1/service-records/{record['id']}/approve", headers=key()))
    mini = console.token("miniprogram", name=f"小程序 {uuid.uuid4().hex[:6]}")
    async with httpx.AsyncClient(
        base_url=console.base,
        headers={"Authorization": f"Bearer {mini}", "X-Member-Id": member_id},
        timeout=30,
    ) as client:
        dispute = ok(
            await client.post(
                f"/v1/service-records/{record['id']}/disputes",
                json={"reason": "我服务了一个小时，只记了37分钟"},
                headers=key(),
            )
        )

    page = await open_console(browser, console)
    await sign_in(page, console.tokens["org"])
    await go(page, "queues")
    item = f"article[data-dispute='{dispute['id']}']"
    text = await page.inner_text(item)
    assert "我服务了一个小时，只记了37分钟" in text and project["title"] in text
    assert (await as_station(console, member_id))["volunteer_number"] in text
    await page.check(f"{item} input[value=dismissed]")
    await page.fill(f"#q-d-{dispute['id']}-answer", "已核对签到表，记录无误")
    await page.click(f"{item} button[type=submit]")
    await page.wait_for_selector(item, state="detached")
    async with console.api("org") as org:
        answered = ok(await org.get("/v1/service-disputes", params={"limit": 500}))
    (mine,) = [d for d in answered["items"] if d["id"] == dispute["id"]]
    assert mine["status"] == "dismissed" and mine["answer"] == "已核对签到表，记录无误"
    assert page.errors == []
    await page.context.close()


async def test_org_enrols_a_member_by_consent_code(browser: Any, console: Console) -> None:
    (member_id,) = await demo_members(console, 1)
    async with console.api("org") as org:
        assert (await org.get(f"/v1/members/{member_id}")).status_code == 404
    async with console.api("admin") as admin:
        code = ok(await admin.post(f"/v1/members/{member_id}/enrolment-codes", headers=key()))
        number = ok(await admin.get(f"/v1/members/{member_id}"))["volunteer_number"]

    page = await open_console(browser, console)
    await sign_in(page, console.tokens["org"])
    await go(page, "members")
    await page.fill("#m-code", code["code"].lower())
    await page.fill("#m-number", number)
    await page.click("#m-enrol-form button[type=submit]")
    await page.wait_for_selector("#m-enrol-result.ok")
    assert number in await page.inner_text("#m-enrol-result")
    seen = await as_station(console, member_id)
    assert console.station["id"] in seen["organisations"]

    # The station opens its new member: masked, with balances.
    await page.fill("#m-id", member_id)
    await page.click("#m-open-form button[type=submit]")
    await page.wait_for_selector(f"#m-member-body[data-member='{member_id}']")
    shown = await page.inner_text("#m-member")
    assert seen["display_name"] in shown and "已按权限遮蔽" in shown
    assert seen["phone"] in shown
    assert page.errors == []
    await page.context.close()


async def test_admin_opens_a_member_by_id(browser: Any, console: Console) -> None:
    (member_id,) = await demo_members(console, 1)
    async with console.api("admin") as admin:
        member = ok(await admin.get(f"/v1/members/{member_id}"))
        balances = ok(await admin.get(f"/v1/members/{member_id}/balances"))["balances"]
        entries = ok(
            await admin.get(f"/v1/members/{member_id}/entries", params={"book": BOOK, "limit": 20})
        )["items"]
    assert entries, "a demo member with approved service has history"

    page = await open_console(browser, console)
    await sign_in(page, console.tokens["admin"])
    await go(page, "members")
    await page.fill("#m-id", f"  {member_id} ")
    await page.click("#m-open-form button[type=submit]")
    await page.wait_for_selector(f"#m-member-body[data-member='{member_id}']")
    shown = await page.inner_text("#m-member")
    assert member["volunteer_number"] in shown, shown
    assert member["display_name"] in shown and member["phone"] in shown, (member, shown)
    assert "遮蔽" not in shown
    for balance in balances:
        cell = page.locator(
            f"#m-balances tr[data-account='{balance['account_id']}'] td[data-available]"
        )
        assert await cell.get_attribute("data-available") == str(balance["available"])
    hour = next(b for b in balances if b["asset"] == "HOUR")
    cell = page.locator(f"#m-balances tr[data-account='{hour['account_id']}'] td[data-available]")
    assert f"{hour['available']:,} 分钟" in await cell.inner_text()
    for entry in entries:
        line = page.locator(
            f"#m-history-table tr[data-seq='{entry['seq']}'][data-leg='{entry['leg_index']}']"
        )
        assert entry["about"]["label"] in await line.inner_text()
    proof = await page.get_attribute("#m-proof", "href")
    assert proof == f"/v1/members/{member_id}/service-proof?format=html"
    answer = await page.evaluate("async (href) => (await fetch(href)).status", proof)
    assert answer == 200
    await screenshot(page, "member-admin")
    assert page.errors == []
    await page.context.close()


async def test_member_search_answers_or_says_it_is_unavailable(
    browser: Any, console: Console
) -> None:
    (member_id,) = await demo_members(console, 1)
    async with console.api("admin") as admin:
        member = ok(await admin.get(f"/v1/members/{member_id}"))
        served = await admin.get(
            "/v1/members", params={"book": BOOK, "q": member["volunteer_number"]}
        )
    page = await open_console(browser, console)
    await sign_in(page, console.tokens["admin"])
    await go(page, "members")
    await page.fill("#m-q", member["volunteer_number"])
    await page.click("#m-search-form button[type=submit]")
    await page.wait_for_selector("#m-results[data-searched='1']")
    if served.status_code in (404, 405):
        # The search route is not served yet: the page says so, and opening by id still works.
        assert "搜索暂不可用" in await page.inner_text("#m-results")
    else:
        assert served.status_code == 200, served.text
        row = f"#m-results-table tr[data-member='{member_id}']"
        assert member["volunteer_number"] in await page.inner_text(row)
        await page.click(f"{row} button")
        await page.wait_for_selector(f"#m-member-body[data-member='{member_id}']")
    assert page.errors == []
    await page.context.close()


async def test_admin_issues_rotates_and_revokes_a_credential(
    browser: Any, console: Console
) -> None:
    page = await open_console(browser, console)
    await sign_in(page, console.tokens["admin"])
    await go(page, "members")
    name = f"临时值班 {uuid.uuid4().hex[:6]}"
    await page.select_option("#m-issue-role", "org")
    await page.select_option("#m-issue-org", console.station["id"])
    await page.fill("#m-issue-name", name)
    await page.click("#m-issue-form button[type=submit]")
    await page.wait_for_selector("#m-token")
    assert "只显示这一次" in await page.inner_text("#m-token")
    token = await page.input_value("#m-token-value")

    async def session_of(bearer: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=console.base, timeout=30) as client:
            return await client.get(
                "/v1/console/session", headers={"Authorization": f"Bearer {bearer}"}
            )

    me = ok(await session_of(token))["credential"]
    assert me["name"] == name and me["role"] == "org"
    assert me["organisation_id"] == console.station["id"]
    row = f"#m-creds-table tr[data-credential='{me['id']}']"
    await page.wait_for_selector(row)
    await page.click("#m-token button.secondary")  # "I have saved it"
    assert await page.locator("#m-token").count() == 0

    # Rotated: the new token is shown once; the old one is refused.
    await page.click(f"{row} button[data-action=rotate]")
    await page.click(f"{row} button[data-action=confirm]")
    await page.wait_for_selector("#m-token")
    rotated = await page.input_value("#m-token-value")
    assert rotated != token
    assert (await session_of(token)).status_code == 401
    assert ok(await session_of(rotated))["credential"]["id"] == me["id"]

    # Revoked: refused.
    await page.click(f"{row} button[data-action=revoke]")
    await page.click(f"{row} button[data-action=confirm]")
    await page.wait_for_selector(f"{row}[data-status=revoked]")
    assert (await session_of(rotated)).status_code == 401
    assert page.errors == []
    await page.context.close()


async def test_admin_asks_for_a_kiosk_pairing_code(browser: Any, console: Console) -> None:
    async with console.api("admin") as admin:
        orgs = ok(await admin.get("/v1/organisations", params={"book": BOOK, "limit": 200}))
    site = next(o for o in orgs["items"] if o["kind"] == "kiosk_site")
    page = await open_console(browser, console)
    await sign_in(page, console.tokens["admin"])
    await go(page, "members")
    await page.click(f"#m-orgs-table tr[data-organisation='{site['id']}'] button[data-action=pair]")
    await page.wait_for_selector("#m-pairing-code")
    code = (await page.inner_text("#m-pairing-code")).strip()
    assert len(code) == 8
    async with httpx.AsyncClient(base_url=console.base, timeout=30) as client:
        paired = ok(
            await client.post("/v1/kiosk/pairings", json={"code": code, "name": "收银台 测试"}),
            201,
        )
    assert paired["role"] == "kiosk" and paired["organisation_id"] == site["id"]
    assert paired["token"]
    assert page.errors == []
    await page.context.close()


async def test_an_auditor_has_no_work_screens_and_cannot_force_a_write(
    browser: Any, console: Console
) -> None:
    page = await open_console(browser, console)
    await sign_in(page, console.tokens["auditor"])
    menu = [await a.get_attribute("data-screen") for a in await page.query_selector_all("#nav a")]
    assert "queues" not in menu and "members" not in menu
    # Asked for by its address, the queue is not shown: the first screen of the role is.
    await page.evaluate("() => { location.hash = '#/queues'; }")
    await page.reload()
    await page.wait_for_selector("#screen[data-ready]")
    assert await page.get_attribute("#screen", "data-ready") != "queues"
    answer = await page.evaluate(
        """async () => {
            const session = await (await fetch('/v1/console/session')).json();
            const response = await fetch('/v1/service-records/approve', {
                method: 'POST',
                headers: {'Content-Type': 'application/json', 'X-CSRF-Token': session.csrf_token,
                          'Idempotency-Key': crypto.randomUUID()},
                body: JSON.stringify({record_ids: [crypto.randomUUID()]}),
            });
            return {status: response.status, body: await response.json(),
                    csrf: session.csrf_token !== null};
        }"""
    )
    assert answer["csrf"]
    assert answer["status"] == 403, answer
    assert answer["body"]["type"] != "urn:timebank:problem:csrf-token-invalid"
    assert page.errors == []
    await page.context.close()


async def test_the_queue_is_usable_at_375_px(browser: Any, console: Console) -> None:
    (member_id,) = await demo_members(console, 1)
    await enrol_in_station(console, member_id)
    project = await project_of_today(console, f"手机课 {uuid.uuid4().hex[:6]}")
    record = await manual_record(console, project, member_id, 45)
    page = await open_console(browser, console, width=375)
    await sign_in(page, console.tokens["org"])
    await go(page, "queues")
    row = f"#q-pending-table tr[data-record='{record['id']}']"
    await page.wait_for_selector(row)
    wide = await page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert wide[0] <= wide[1] == 375, wide
    # The row's own approve button is reached by scrolling its table, and works.
    await page.click(f"{row} button[data-action=approve]")
    await page.wait_for_selector(row, state="detached")
    async with console.api("org") as org:
        assert ok(await org.get(f"/v1/service-records/{record['id']}"))["status"] == "approved"
    await screenshot(page, "queues-org-375")
    assert page.errors == []
    await page.context.close()


async def no_serious_axe_violation(page: Any) -> None:
    found = await serious_axe_violations(page, "#screen")
    assert found == [], json.dumps(found, ensure_ascii=False)


async def test_the_work_screens_pass_axe(browser: Any, console: Console) -> None:
    """Both screens with their controls showing, at a phone's width (rows stacked and labelled;
    test_accessibility.py walks every screen at both widths): a pending record with its reject
    form, an open dispute's answer form, today's project opened; a member opened, a new token's
    box and a pairing code."""
    width = 375
    (member_id,) = await demo_members(console, 1)
    await enrol_in_station(console, member_id)
    project = await project_of_today(console, f"读报 {uuid.uuid4().hex[:6]}")
    record = await manual_record(console, project, member_id, 33)
    page = await open_console(browser, console, width=width)
    await sign_in(page, console.tokens["org"])
    await go(page, "queues")
    await page.click(
        f"#q-pending-table tr[data-record='{record['id']}'] button[data-action=reject]"
    )
    await page.click(f"details[data-project='{project['id']}'] summary")
    await page.wait_for_selector(f"details[data-project='{project['id']}'][data-filled]")
    await no_serious_axe_violation(page)
    assert page.errors == []
    await page.context.close()

    page = await open_console(browser, console, width=width)
    await sign_in(page, console.tokens["admin"])
    await go(page, "members")
    await page.fill("#m-id", member_id)
    await page.click("#m-open-form button[type=submit]")
    await page.wait_for_selector(f"#m-member-body[data-member='{member_id}']")
    await page.select_option("#m-issue-role", "auditor")
    await page.fill("#m-issue-name", f"审计 {uuid.uuid4().hex[:6]}")
    await page.click("#m-issue-form button[type=submit]")
    await page.wait_for_selector("#m-token")
    await page.click("#m-orgs-table button[data-action=pair]")
    await page.wait_for_selector("#m-pairing-code")
    await no_serious_axe_violation(page)
    assert page.errors == []
    await page.context.close()
