"""The console's overview in Chromium: charts drawn (an SVG in each chart's box) with their
figures in tables beside them; a service record this test certifies shows in its month's
figure; `reconciled` said plainly; an organisation sees its own figures, an auditor no write
control; no sideways scroll at 375 px; English on request; no serious accessibility
violation (axe-core, pinned in tools/console)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from tests.e2e.console.conftest import (
    BOOK,
    Console,
    open_console,
    screenshot,
    serious_axe_violations,
    sign_in,
)

pytestmark = pytest.mark.slow

CST = timezone(timedelta(hours=8))  # the service's time zone (TIMEBANK_SERVICE_TIMEZONE)
CHARTS = ("month", "category")


def number(text: str) -> float:
    """A figure as the page writes it ("1,234.50") as a number."""
    return float(text.replace(",", "").strip())


async def certify(console: Console, minutes: int) -> tuple[str, dict[str, Any]]:
    """As the station's organisation credential: a new member, a project that ended an hour
    ago, a manual record of `minutes` in it, approved. Its month (YYYY-MM, service time) and
    the approved record."""
    unique = uuid.uuid4().hex[:8]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(hours=3)
    async with console.api("org") as org:

        async def ok(path: str, body: Any = None) -> Any:
            r = await org.post(path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
            assert r.status_code in (200, 201), r.text
            return r.json()

        member = await ok(
            "/v1/members",
            {
                "book": BOOK,
                "display_name": "概览测试",
                "phone": f"139{uuid.uuid4().int % 10**8:08d}",
                "birth_date": "1990-06-01",
                "identity": {"provider": "wechat", "subject": f"o_overview_{unique}"},
            },
        )
        project = await ok(
            "/v1/projects",
            {
                "book": BOOK,
                "title": f"概览测试项目 {unique}",
                "category": "elder_care",
                "place": "街道社工站",
                "starts_at": (start - timedelta(hours=1)).isoformat(),
                "ends_at": (start + timedelta(hours=2)).isoformat(),
                "capacity": 5,
            },
        )
        record = await ok(
            "/v1/service-records",
            {
                "project_id": project["id"],
                "member_id": member["id"],
                "started_at": start.isoformat(),
                "ended_at": (start + timedelta(minutes=minutes)).isoformat(),
                "attested_by": "陈建华",
            },
        )
        assert record["credited_minutes"] == minutes, record
        approved = await ok(f"/v1/service-records/{record['id']}/approve")
        assert approved["status"] == "approved", approved
    return start.astimezone(CST).strftime("%Y-%m"), approved


async def stats(console: Console, role: str, group_by: str) -> Any:
    async with console.api(role) as client:
        r = await client.get("/v1/stats/service", params={"book": BOOK, "group_by": group_by})
        assert r.status_code == 200, r.text
        return r.json()


async def cell(page: Any, table: str, key: str, column: str) -> str | None:
    found = page.locator(f"table[data-table={table}] tr[data-key='{key}'] [data-col={column}]")
    return await found.inner_text() if await found.count() else None


async def month_minutes(page: Any, month: str) -> int:
    """The month's certified minutes as its table shows them (0: the month has no row)."""
    text = await cell(page, "month", month, "minutes")
    return 0 if text is None else int(number(text))


async def figure(page: Any, name: str) -> float:
    return number(await page.inner_text(f"[data-figure={name}] b"))


async def charts_drawn(page: Any) -> None:
    """Each chart's box holds the SVG ECharts drew, and an accessible description of it."""
    for name in CHARTS:
        await page.wait_for_selector(f"[data-chart={name}] svg")
        label = await page.get_attribute(f"[data-chart={name}]", "aria-label")
        assert label, f"chart {name} has no description"


async def figures_match(page: Any, answer: dict[str, Any]) -> None:
    """The figures above the charts are the API's totals."""
    totals = answer["totals"]
    assert await figure(page, "hours") == float(totals["hours"])
    assert await figure(page, "volunteers") == totals["volunteers"]
    assert await figure(page, "records") == totals["records"]
    assert await figure(page, "projects") == totals["projects"]
    assert await figure(page, "checkin") == round(totals["checkin_minutes"] / 60, 2)
    assert await figure(page, "manual") == round(totals["manual_minutes"] / 60, 2)
    shown = await cell(page, "month", "total", "minutes")
    assert shown is not None and number(shown) == totals["minutes"]


async def no_serious_axe_violation(page: Any) -> None:
    found = await serious_axe_violations(page, "#screen")
    assert found == [], json.dumps(found, ensure_ascii=False)


async def gifts_this_month(console: Console, month: str) -> int:
    """Gifts the book's journal counts in `month`, as GET /v1/stats/exchange answers."""
    async with console.api("admin") as client:
        r = await client.get("/v1/stats/exchange", params={"book": BOOK})
        assert r.status_code == 200, r.text
    periods = {p["period"]: p["flows"]["gift"]["count"] for p in r.json()["periods"]}
    return int(periods.get(month, 0))


async def give(console: Console, giver: str, minutes: int) -> None:
    """A gift of `minutes` from `giver` to a new member, by a mini-program acting for the giver."""
    token = console.token("miniprogram", name=f"小程序 {uuid.uuid4().hex[:6]}")
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=console.base, headers=headers, timeout=30) as mini:
        receiver = await mini.post(
            "/v1/members",
            json={
                "book": BOOK,
                "display_name": "受赠人",
                "phone": f"139{uuid.uuid4().int % 10**8:08d}",
                "birth_date": "1950-01-01",
                "identity": {"provider": "wechat", "subject": f"o_gift_{uuid.uuid4().hex}"},
            },
        )
        assert receiver.status_code == 201, receiver.text
        r = await mini.post(
            "/v1/gifts",
            json={"to_member_id": receiver.json()["id"], "amount": minutes},
            headers={"X-Member-Id": giver, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == 201, r.text


async def test_admin_sees_charts_figures_and_a_new_record_in_its_month(
    browser: Any, console: Console
) -> None:
    page = await open_console(browser, console)
    await sign_in(page, console.tokens["admin"])
    await page.wait_for_selector("#screen[data-ready=overview]")
    await charts_drawn(page)
    month = (datetime.now(UTC) - timedelta(hours=3)).astimezone(CST).strftime("%Y-%m")
    before = await month_minutes(page, month)

    minutes = 47
    record_month, record = await certify(console, minutes)
    assert record_month == month
    gifts_before = await gifts_this_month(console, month)
    await give(console, record["member_id"], 5)
    await page.reload()
    await page.wait_for_selector("#screen[data-ready=overview]")
    await charts_drawn(page)
    assert await month_minutes(page, month) - before == minutes

    # The figures and tables are what the API answers, and `reconciled` is said plainly.
    by_month = await stats(console, "admin", "month")
    by_category = await stats(console, "admin", "category")
    await figures_match(page, by_month)
    for group in by_category["groups"]:
        shown = await cell(page, "category", group["key"], "minutes")
        assert shown is not None and number(shown) == group["minutes"], group
    assert by_month["ledger"]["reconciled"]
    reconcile = page.locator("p.reconcile").first
    assert await reconcile.get_attribute("data-reconciled") == "true"
    said = await reconcile.inner_text()
    assert "已与账本核对一致" in said
    assert f"{by_month['ledger']['net_minutes']:,}" in said

    # The most urgent unmet needs, as the API lists them, with one this test registered.
    async with console.api("org") as org:
        wanted = f"概览测试：社区活动室需要周末值守志愿者 {uuid.uuid4().hex[:6]}"
        body = {
            "book": BOOK,
            "category": "community_governance",
            "target_group": "other",
            "description": wanted,
            "urgency": "urgent",
        }
        r = await org.post("/v1/needs", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 201, r.text
        need = r.json()
    async with console.api("admin") as client:
        r = await client.get(
            "/v1/needs", params={"book": BOOK, "status": "open", "unmet": "true", "limit": 10}
        )
        assert r.status_code == 200, r.text
        needs = [n["id"] for n in r.json()["items"]]
        exchange = await client.get("/v1/stats/exchange", params={"book": BOOK})
    assert need["id"] in needs
    await page.reload()
    await page.wait_for_selector("#screen[data-ready=overview]")
    rows = page.locator("table[data-table=needs] tbody tr")
    assert [await row.get_attribute("data-key") for row in await rows.all()] == needs
    mine = page.locator(f"table[data-table=needs] tr[data-key='{need['id']}']")
    assert await mine.locator("[data-col=description]").inner_text() == wanted
    assert await mine.locator("[data-col=urgency]").inner_text() == "紧急"
    # Exchanges, redemptions and gifts over time: the table is the API's, the month holds the
    # gift this test made, and the reconciliation with the features' records is said plainly.
    assert exchange.status_code == 200, exchange.text
    flows = exchange.json()
    assert await gifts_this_month(console, month) == gifts_before + 1
    for period in flows["periods"]:
        row = page.locator(f"table[data-table=exchange] tr[data-key='{period['period']}']")
        assert (
            number(await row.locator("[data-col=gifts]").inner_text())
            == period["flows"]["gift"]["count"]
        )
        assert (
            number(await row.locator("[data-col=exchanges]").inner_text())
            == period["flows"]["exchange"]["count"]
        )
    total = page.locator("table[data-table=exchange] tfoot tr")
    assert (
        number(await total.locator("[data-col=gifts]").inner_text())
        == flows["totals"]["gift"]["count"]
    )
    line = page.locator("[data-card=exchange] p.reconcile")
    assert (
        await line.get_attribute("data-reconciled")
        == str(flows["reconciliation"]["reconciled"]).lower()
    )
    assert "已与业务记录核对一致" in await line.inner_text()
    await charts_drawn(page)

    await screenshot(page, "overview-admin")
    await no_serious_axe_violation(page)
    assert page.errors == []
    await page.context.close()


async def test_an_organisation_sees_its_own_figures(browser: Any, console: Console) -> None:
    month, _ = await certify(console, 53)
    mine = await stats(console, "org", "month")
    everyone = await stats(console, "admin", "month")
    assert mine["totals"]["minutes"] < everyone["totals"]["minutes"]

    page = await open_console(browser, console)
    await sign_in(page, console.tokens["org"])
    await page.wait_for_selector("#screen[data-ready=overview]")
    await charts_drawn(page)
    assert console.station["name"] in await page.inner_text("[data-scope=org]")
    await figures_match(page, mine)
    (group,) = [g for g in mine["groups"] if g["key"] == month]
    assert await month_minutes(page, month) == group["minutes"] >= 53
    assert await page.get_attribute("p.reconcile", "data-reconciled") == "true"
    assert page.errors == []
    await page.context.close()


async def test_an_auditor_sees_the_overview_and_no_write_control(
    browser: Any, console: Console
) -> None:
    page = await open_console(browser, console)
    await sign_in(page, console.tokens["auditor"])
    await page.wait_for_selector("#screen[data-ready=overview]")
    await charts_drawn(page)
    await figures_match(page, await stats(console, "auditor", "month"))
    # The shell's own buttons (sign out, language) are outside the screen; the screen has none.
    controls = page.locator("#screen").locator("button, input, select, textarea, form")
    assert await controls.count() == 0
    assert page.errors == []
    await page.context.close()


async def test_at_375_px_nothing_scrolls_sideways(browser: Any, console: Console) -> None:
    page = await open_console(browser, console, width=375)
    await sign_in(page, console.tokens["admin"])
    await page.wait_for_selector("#screen[data-ready=overview]")
    await charts_drawn(page)
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= 375
    for name in CHARTS:
        box = await page.locator(f"[data-chart={name}]").bounding_box()
        drawn = await page.locator(f"[data-chart={name}] svg").bounding_box()
        assert box and drawn and drawn["width"] <= box["width"] <= 375
    await screenshot(page, "overview-375")
    await no_serious_axe_violation(page)
    # Wider again: the charts follow their boxes.
    await page.set_viewport_size({"width": 1280, "height": 900})
    await page.wait_for_function(
        """() => [...document.querySelectorAll('[data-chart]')].every((box) => {
            const drawn = box.querySelector('svg').getBoundingClientRect().width;
            return box.clientWidth > 375 && Math.abs(drawn - box.clientWidth) < 1;
        })"""
    )
    assert page.errors == []
    await page.context.close()


async def test_english_labels(browser: Any, console: Console) -> None:
    page = await open_console(browser, console)
    await sign_in(page, console.tokens["admin"])
    await page.wait_for_selector("#screen[data-ready=overview]")
    await page.click("#lang")
    await page.wait_for_selector("#screen[data-ready=overview]")
    await charts_drawn(page)
    assert (await page.inner_text("#screen h2")).startswith("Overview")
    assert await page.inner_text("#overview-by-month") == "Certified hours by month"
    assert await page.inner_text("[data-figure=volunteers] span") == "Active volunteers"
    assert "Reconciled with the ledger" in await page.inner_text("p.reconcile")
    async with console.api("admin") as client:
        r = await client.get("/v1/service-catalog")
        assert r.status_code == 200, r.text
        english = {c["code"]: c["name_en"] for c in r.json()["categories"]}
    assert await cell(page, "category", "elder_care", "category") == english["elder_care"]
    # ECharts' own words (its description of the chart) are English too.
    label = await page.get_attribute("[data-chart=month]", "aria-label")
    assert label and "chart" in label.lower()
    assert page.errors == []
    await page.context.close()
