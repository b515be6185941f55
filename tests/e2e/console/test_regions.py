"""The console's Exchange & regions and Kiosk sites screens in Chromium, against the demo
service. The data is made through the API first (a second book and an agreement with it, a
transfer between the books, a charity with pools and a donation, an exchange rule, a donation
to the public time pool, a kiosk item and a confirmed redemption); the page must show exactly
that, and what a person does in it (a new version of the rule, a grant, a restock, a new item,
the day's CSV) must be what the API then reports."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.e2e.console.conftest import BOOK, Console, go, open_console, screenshot, sign_in

pytestmark = pytest.mark.slow

# The service's time zone (TIMEBANK_SERVICE_TIMEZONE's default; the tests' service keeps it).
ZONE = ZoneInfo("Asia/Shanghai")
BOM = b"\xef\xbb\xbf"


@dataclass
class World:
    """What the tests made through the API, each name tagged so that it is theirs."""

    tag: str
    other_book: str
    charity: dict[str, Any]
    rule: dict[str, Any]
    agreement: dict[str, Any]
    transferred: int
    members: dict[str, dict[str, Any]]
    site: dict[str, Any]
    item: dict[str, Any]
    redemption: dict[str, Any]
    day: str


async def call(client: httpx.AsyncClient, method: str, path: str, body: Any = None) -> Any:
    headers = {} if method == "GET" else {"Idempotency-Key": uuid.uuid4().hex}
    r = await client.request(method, path, json=body, headers=headers)
    assert r.status_code in (200, 201), f"{method} {path}: {r.status_code} {r.text}"
    return r.json()


def account(owner: dict[str, Any], asset: str, purpose: str | None = None) -> str:
    return str(
        next(
            a.get("account_id", a.get("id"))
            for a in owner["accounts"]
            if a["asset"] == asset and (purpose is None or a.get("purpose") == purpose)
        )
    )


async def move(client: httpx.AsyncClient, source: str, target: str, amount: int) -> None:
    legs = [{"account_id": source, "amount": -amount}, {"account_id": target, "amount": amount}]
    await call(client, "POST", f"/v1/books/{BOOK}/transactions", {"kind": "transfer", "legs": legs})


@pytest.fixture(scope="module")
async def world(console: Console) -> World:
    tag = secrets.token_hex(3)
    platform_client = console.api("platform")
    async with console.api("admin") as admin, platform_client as platform_admin:
        other_book = f"rg{tag}"
        await call(platform_admin, "POST", "/v1/books", {"code": other_book, "name": f"新区 {tag}"})

        members = {}
        for name in ("giver", "receiver"):
            body = {
                "book": BOOK,
                "display_name": f"区域{name}",
                "phone": f"139{secrets.randbelow(10**8):08d}",
                "birth_date": "1956-03-08",
                "identity": {"provider": "wechat", "subject": f"o-regions-{tag}-{name}"},
            }
            members[name] = await call(admin, "POST", "/v1/members", body)

        issuance = [
            {"asset": asset, "purpose": "issuance", "overdraft_limit": 10**9}
            for asset in ("HOUR", "POINT")
        ]
        body = {"book": BOOK, "kind": "charity", "name": f"互兑慈善会 {tag}", "accounts": issuance}
        charity = await call(admin, "POST", "/v1/organisations", body)
        for asset in ("HOUR", "POINT"):
            await call(admin, "POST", f"/v1/organisations/{charity['id']}/pools", {"asset": asset})
        donation = {"asset": "POINT", "amount": 5000, "donor": {"name": "王善人"}}
        await call(admin, "POST", f"/v1/organisations/{charity['id']}/donations", donation)
        rule = await call(
            admin,
            "POST",
            "/v1/exchange-rules",
            {
                "code": f"rg-{tag}",
                "from_asset": "HOUR",
                "to_asset": "POINT",
                "ratio": {"num": 1, "den": 6},
                "min_amount": 30,
                "pools": [{"book": BOOK, "organisation_id": charity["id"]}],
            },
        )

        giver = members["giver"]
        await move(admin, account(charity, "HOUR", "issuance"), account(giver, "HOUR"), 600)
        await move(admin, account(charity, "POINT", "issuance"), account(giver, "POINT"), 200)

        # 通存通兑: the platform admin reaches both books; the demo's admin moves the units.
        body = {"from_book": BOOK, "to_book": other_book, "from_asset": "HOUR", "to_asset": "HOUR"}
        agreement = await call(platform_admin, "POST", "/v1/recognition/agreements", body)
        body = {"agreement_id": agreement["id"], "member_id": giver["id"], "amount": 90}
        await call(admin, "POST", "/v1/recognition/transfers", body)
        body = {"member_id": giver["id"], "asset": "HOUR", "amount": 60}
        await call(admin, "POST", f"/v1/books/{BOOK}/public-pool/donations", body)

        # The demo's charity supermarket: an item, and two of it redeemed by its kiosk.
        organisations = await call(admin, "GET", f"/v1/organisations?book={BOOK}&limit=500")
        site = next(o for o in organisations["items"] if o["kind"] == "kiosk_site")
        body = {"name": f"大米 5kg {tag}", "price": 30, "stock": 10}
        item = await call(admin, "POST", f"/v1/kiosk/sites/{site['id']}/items", body)
        code = await call(admin, "POST", f"/v1/members/{giver['id']}/redeem-codes")
        kiosk_token = console.token("kiosk", site["id"], f"收银台 {tag}")
        kiosk = httpx.AsyncClient(
            base_url=console.base, headers={"Authorization": f"Bearer {kiosk_token}"}, timeout=30
        )
        async with kiosk:
            basket = {"code": code["code"], "items": [{"item_id": item["id"], "quantity": 2}]}
            pending = await call(kiosk, "POST", "/v1/kiosk/redemptions", basket)
            done = await call(kiosk, "POST", f"/v1/kiosk/redemptions/{pending['id']}/confirm")
        tx = await call(admin, "GET", f"/v1/transactions/{done['tx_id']}")
        posted = datetime.fromisoformat(tx["entry"]["posted_at"].replace("Z", "+00:00"))
    return World(
        tag=tag,
        other_book=other_book,
        charity=charity,
        rule=rule,
        agreement=agreement,
        transferred=90,
        members=members,
        site=site,
        item=item,
        redemption=done["redemption"],
        day=posted.astimezone(ZONE).date().isoformat(),
    )


async def text(page: Any, selector: str) -> str:
    return str(await page.inner_text(selector)).strip()


async def picture(page: Any, name: str) -> None:
    """A screenshot of the screen itself (the last toast, which floats over it, dismissed)."""
    await page.evaluate("() => { document.querySelector('#toast').textContent = ''; }")
    await screenshot(page, name)


async def no_sideways_scroll(page: Any) -> None:
    """The page itself never scrolls sideways (wide tables scroll inside their .table-wrap)."""
    width = await page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= await page.evaluate("() => window.innerWidth"), width


async def test_exchange_rules_agreements_reconciliation_and_pool_as_admin(
    browser: Any, console: Console, world: World
) -> None:
    page = await open_console(browser, console)
    await sign_in(page, console.tokens["admin"])
    await go(page, "exchange")
    code = world.rule["code"]
    group = f'.rule-group[data-code="{code}"]'
    v1 = f'{group} tr[data-rule-id="{world.rule["id"]}"]'

    # The rule and its version, with its ratio, status and hash.
    assert await text(page, f"{v1} td.version") == "v1"
    assert await text(page, f"{v1} td.ratio") == "1/6（6 分钟 → 1 积分）"
    assert "已发布" in await text(page, f"{v1} td.status")
    assert "生效中" in await text(page, f"{v1} td.status")
    assert await text(page, f"{v1} td.hash") == world.rule["rule_hash"]
    # Its text, read from GET /v1/exchange-rules/{id} when opened.
    await page.click(f'details[data-rule-text="{world.rule["id"]}"] summary')
    shown = f'details[data-rule-text="{world.rule["id"]}"] pre'
    await page.wait_for_function(
        "(s) => document.querySelector(s).textContent.startsWith('SHA-256')", arg=shown
    )
    assert world.rule["rule_hash"] in await text(page, shown)
    assert f'"code": "{code}"' in await text(page, shown)

    # A new version, published in the page from the current one: the first is retired.
    await page.click(f'{group} button[aria-label="发布新版本: {code}"]')
    publish = "form[data-form=publish]"
    assert await page.input_value(f"{publish} input[name=code]") == code
    assert await page.input_value(f"{publish} select[name=pool]") == world.charity["id"]
    await page.fill(f"{publish} input[name=den]", "5")
    await page.click(f"{publish} button[type=submit]")
    v2 = f"{group} tr[data-version='2']"
    await page.wait_for_selector(v2)
    await page.wait_for_selector(f"{v1}[data-status=retired]")
    assert await text(page, f"{v2} td.ratio") == "1/5（5 分钟 → 1 积分）"
    assert "已发布" in await text(page, f"{v2} td.status")
    assert "已停用" in await text(page, f"{v1} td.status")
    assert "被第 2 版取代" in await text(page, f"{v1} td.status")
    async with console.api("admin") as admin:
        versions = await call(admin, "GET", f"/v1/exchange-rules?code={code}")
    assert [(v["version"], v["status"]) for v in versions] == [(2, "published"), (1, "retired")]
    assert versions[0]["rule"]["ratio"] == {"num": 1, "den": 5}
    assert versions[0]["rule"]["replaces"] == world.rule["id"]
    assert await text(page, f"{v2} td.hash") == versions[0]["rule_hash"]

    # The agreement with the other book, and the reconciliation of the clearing accounts.
    agreement = f'tr[data-agreement-id="{world.agreement["id"]}"]'
    row = await text(page, agreement)
    assert f"{BOOK} → {world.other_book}" in row and "HOUR → HOUR" in row and "生效" in row
    pair = f'[data-pair="{BOOK}|{world.other_book}"]'
    assert await page.get_attribute(pair, "data-mirrored") == "true"
    assert "✓ 镜像一致" in await text(page, f"{pair} h4")
    assert "✓ 转账记录与日记账相符" in await text(page, f"{pair} h4")
    async with console.api("admin") as admin:
        found = await call(admin, "GET", f"/v1/recognition/reconciliation?book={BOOK}")
    (mine,) = [p for p in found["pairs"] if p["books"] == [BOOK, world.other_book]]
    (hours,) = mine["assets"]
    assert hours["a_clearing"]["posted"] == world.transferred
    for side in ("a_clearing", "b_clearing"):
        clearing = hours[side]
        cell = f'{pair} tr[data-clearing="{clearing["book"]}|HOUR"]'
        assert await text(page, f"{cell} td.posted") == f"{clearing['posted']} 分钟"
        assert await text(page, f"{cell} td.implied") == f"{clearing['implied']} 分钟"
    flow = await text(page, f'{pair} tr[data-flow="{BOOK}>{world.other_book}"]')
    # Journal and records alike: one transfer, 90 minutes out and 90 in.
    assert flow.split() == [
        f"{BOOK}",
        "→",
        world.other_book,
        *["1", "90", "分钟", "90", "分钟"] * 2,
    ]

    # The public time pool, and a grant made in the page.
    receiver = world.members["receiver"]
    async with console.api("admin") as admin:
        before = await call(admin, "GET", f"/v1/books/{BOOK}/public-pool")
    (pool,) = [p for p in before["pools"] if p["asset"] == "HOUR"]
    assert await text(page, ".figure[data-pool=HOUR] .posted") == f"{pool['posted']:,} 分钟"
    grant = "form[data-form=grant]"
    await page.fill(f"{grant} input[name=member_id]", receiver["id"])
    await page.select_option(f"{grant} select[name=asset]", "HOUR")
    await page.fill(f"{grant} input[name=amount]", "30")
    await page.fill(f"{grant} input[name=reason]", "独居老人冬季助餐")
    await page.click(f"{grant} button[type=submit]")
    await page.wait_for_selector("#toast:has-text('已发放')")
    await page.wait_for_selector(
        f".figure[data-pool=HOUR] .posted:text-is('{pool['posted'] - 30:,} 分钟')"
    )
    async with console.api("admin") as admin:
        after = await call(admin, "GET", f"/v1/books/{BOOK}/public-pool")
        balance = await call(admin, "GET", f"/v1/accounts/{account(receiver, 'HOUR')}")
    (pool_after,) = [p for p in after["pools"] if p["asset"] == "HOUR"]
    assert pool_after["posted"] == pool["posted"] - 30
    assert balance["posted"] == 30

    # Assets and the book's policies.
    async with console.api("admin") as admin:
        assets = {a["code"]: a for a in (await call(admin, "GET", "/v1/assets"))["items"]}
    for code_ in ("HOUR", "POINT"):
        assert assets[code_]["name"] in await text(page, f"tr[data-asset={code_}]")
    await picture(page, "exchange-admin")
    assert page.errors == []
    await page.context.close()


async def test_a_rule_retired_and_an_agreement_ended_in_the_page(
    browser: Any, console: Console, world: World
) -> None:
    code = f"rg-retire-{world.tag}"
    async with console.api("admin") as admin:
        body = {
            "code": code,
            "from_asset": "HOUR",
            "to_asset": "POINT",
            "ratio": {"num": 1, "den": 10},
            "pools": [{"book": BOOK, "organisation_id": world.charity["id"]}],
        }
        rule = await call(admin, "POST", "/v1/exchange-rules", body)
    async with console.api("platform") as platform_admin:
        body = {"from_book": world.other_book, "to_book": BOOK, "ratio_num": 4, "ratio_den": 5}
        back = await call(platform_admin, "POST", "/v1/recognition/agreements", body)

    page = await open_console(browser, console)
    await sign_in(page, console.tokens["admin"])
    await go(page, "exchange")
    row = f'tr[data-rule-id="{rule["id"]}"]'
    await page.click(f"{row} button[aria-label='停用 {code} v1']")
    await page.fill(f"{row} input[name=reason]", "试点结束")
    await page.click(f"{row} button[type=submit]")
    await page.wait_for_selector(f"{row}[data-status=retired]")
    assert "停用原因：试点结束" in await text(page, f"{row} td.status")
    # Nothing left to retire; a next version may still be published from it.
    assert await page.locator(f"{row} td.actions button").all_inner_texts() == ["发布新版本"]

    agreement = f'tr[data-agreement-id="{back["id"]}"]'
    assert await text(page, f"{agreement} td.ratio") == "4/5"
    await page.click(f"{agreement} button[aria-label='结束协议 {world.other_book} → {BOOK}']")
    await page.click(f"{agreement} button[type=submit]")
    await page.wait_for_selector(f"{agreement}[data-status=ended]")
    assert "已结束" in await text(page, agreement)
    async with console.api("admin") as admin:
        retired = await call(admin, "GET", f"/v1/exchange-rules/{rule['id']}")
        ended = await call(admin, "GET", f"/v1/recognition/agreements/{back['id']}")
    assert (retired["status"], retired["retired_reason"]) == ("retired", "试点结束")
    assert ended["status"] == "ended"
    # The agreement the other tests use is untouched.
    assert (
        await page.get_attribute(f'tr[data-agreement-id="{world.agreement["id"]}"]', "data-status")
        == "active"
    )
    assert page.errors == []
    await page.context.close()


async def test_kiosk_stock_redemptions_and_the_days_report_as_admin(
    browser: Any, console: Console, world: World, tmp_path: Path
) -> None:
    page = await open_console(browser, console)
    await sign_in(page, console.tokens["admin"])
    await go(page, "kiosk")
    site = f'[data-site-id="{world.site["id"]}"]'
    item = f'{site} tr[data-item-id="{world.item["id"]}"]'

    async def stock_now() -> dict[str, Any]:
        async with console.api("admin") as admin:
            items = await call(admin, "GET", f"/v1/kiosk/sites/{world.site['id']}/items")
        found: dict[str, Any] = next(i for i in items["items"] if i["id"] == world.item["id"])
        return found

    # The item's stock after two were redeemed, and the redemption.
    listed = await stock_now()
    assert (listed["stock"], listed["reserved"], listed["available"]) == (8, 0, 8)
    assert await text(page, f"{item} td.stock") == "8"
    assert await text(page, f"{item} td.reserved") == "0"
    assert await text(page, f"{item} td.available") == "8"
    assert await text(page, f"{item} td.price") == "30 积分"
    redemption = f'{site} tr[data-redemption-id="{world.redemption["id"]}"]'
    assert await page.get_attribute(redemption, "data-status") == "confirmed"
    assert await text(page, f"{redemption} td.lines") == f"{world.item['name']} × 2"
    assert await text(page, f"{redemption} td.total") == "60 积分"
    assert "已兑换" in await text(page, redemption)

    # A restock in the page moves the stock the API reports by exactly its delta.
    form = f"{site} form[data-form=stock]"
    await page.select_option(f"{form} select[name=item_id]", world.item["id"])
    await page.select_option(f"{form} select[name=kind]", "restock")
    await page.fill(f"{form} input[name=delta]", "5")
    await page.fill(f"{form} input[name=reason]", "社区捐赠补货")
    await page.click(f"{form} button[type=submit]")
    await page.wait_for_selector(f"{item} td.stock:text-is('13')")
    assert (await stock_now())["stock"] == listed["stock"] + 5

    # The day's report: books and goods agree, as the API says; its CSV downloads with a BOM.
    async with console.api("admin") as admin:
        report = await call(
            admin, "GET", f"/v1/kiosk/sites/{world.site['id']}/report?date={world.day}"
        )
    report_form = f"{site} form[data-form=report]"
    await page.fill(f"{report_form} input[name=date]", world.day)
    await page.click(f"{report_form} button[type=submit]")
    shown = f'{site} .report[data-day="{world.day}"]'
    await page.wait_for_selector(shown)
    assert report["reconciled"] is True, report["differences"]
    assert await text(page, f"{shown} .verdict") == "✓ 账物相符"
    assert await text(page, f"{shown} .count") == str(report["redemptions"])
    line = f'{shown} tr[data-item-id="{world.item["id"]}"]'
    assert await text(page, f"{line} td.out") == "2"
    assert await text(page, f"{line} td.stock-left") == "13"

    link = f"{shown} a.csv"
    href = await page.get_attribute(link, "href")
    assert href == f"/v1/kiosk/sites/{world.site['id']}/report?date={world.day}&format=csv"
    name = f"{BOOK}-kiosk-{world.site['id']}-{world.day}.csv"
    # The same-origin route answers the session's cookie, as a named attachment.
    answer = await page.evaluate(
        """async (href) => {
            const r = await fetch(href);
            return {status: r.status, type: r.headers.get("content-type"),
                    disposition: r.headers.get("content-disposition")};
        }""",
        href,
    )
    assert answer == {
        "status": 200,
        "type": "text/csv; charset=utf-8",
        "disposition": f'attachment; filename="{name}"',
    }
    async with page.expect_download() as started:
        await page.click(link)
    download = await started.value
    assert download.suggested_filename == name
    saved = tmp_path / name
    await download.save_as(saved)
    content = saved.read_bytes()
    assert content.startswith(BOM + b"date,item_id,name,asset,price,out,stock_left,reserved\n")
    rows = content[len(BOM) :].decode("utf-8")
    assert f"{world.day},{world.item['id']},{world.item['name']},POINT,30,2,13,0" in rows
    assert f"{world.day},{report['redemptions']},POINT," in rows

    await picture(page, "kiosk-admin")
    assert page.errors == []
    await page.context.close()


async def test_a_sites_own_organisation_manages_only_its_site(
    browser: Any, console: Console, world: World
) -> None:
    token = console.token("org", world.site["id"], name=f"超市店长 {world.tag}")
    page = await open_console(browser, console)
    await sign_in(page, token)
    menu = [await a.get_attribute("data-screen") for a in await page.query_selector_all("#nav a")]
    assert "kiosk" in menu and "exchange" not in menu
    await go(page, "kiosk")
    assert await page.locator("section.site").count() == 1
    site = f'[data-site-id="{world.site["id"]}"]'
    assert await page.is_visible(f"{site} form[data-form=report]")
    # An item listed in the page, as the site's staff.
    name = f"食用油 1.8L {world.tag}"
    form = f"{site} form[data-form=item]"
    await page.fill(f"{form} input[name=name]", name)
    await page.fill(f"{form} input[name=price]", "20")
    await page.fill(f"{form} input[name=stock]", "3")
    await page.click(f"{form} button[type=submit]")
    await page.wait_for_selector(f"{site} td.name:text-is('{name}')")
    async with console.api("admin") as admin:
        items = await call(admin, "GET", f"/v1/kiosk/sites/{world.site['id']}/items")
    (listed,) = [i for i in items["items"] if i["name"] == name]
    assert (listed["price"], listed["stock"], listed["asset"]) == (20, 3, "POINT")
    assert page.errors == []
    await page.context.close()


async def test_the_station_has_no_exchange_screen_and_reads_kiosk_stock_only(
    browser: Any, console: Console, world: World
) -> None:
    page = await open_console(browser, console)
    await sign_in(page, console.tokens["org"])
    menu = [await a.get_attribute("data-screen") for a in await page.query_selector_all("#nav a")]
    assert "exchange" not in menu
    # Asking for it by address gets the first screen of the menu instead.
    await page.goto("/console/#/exchange")
    await page.wait_for_selector("#screen[data-ready]")
    assert await page.get_attribute("#screen", "data-ready") == menu[0]

    await go(page, "kiosk")
    site = f'[data-site-id="{world.site["id"]}"]'
    assert "不是爱心超市" in await text(page, "#screen")
    assert await page.is_visible(f'{site} tr[data-item-id="{world.item["id"]}"]')
    for write in ("form[data-form=stock]", "form[data-form=item]", "form[data-form=report]"):
        assert await page.locator(f"{site} {write}").count() == 0
    # The same in English.
    await page.click("#lang")
    await page.wait_for_selector("#screen[data-ready=kiosk]")
    assert "is not a kiosk site" in await text(page, "#screen")
    assert await text(page, f"{site} h4") == "Stock"
    assert page.errors == []
    await page.context.close()


async def test_both_screens_are_usable_at_375_px(
    browser: Any, console: Console, world: World
) -> None:
    page = await open_console(browser, console, width=375)
    await sign_in(page, console.tokens["admin"])
    await go(page, "exchange")
    await no_sideways_scroll(page)
    for control in (
        "form[data-form=publish] button[type=submit]",
        "form[data-form=grant] input[name=reason]",
    ):
        box = await page.locator(control).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, control
    await picture(page, "exchange-admin-375")

    await go(page, "kiosk")
    await no_sideways_scroll(page)
    site = f'[data-site-id="{world.site["id"]}"]'
    # A correction typed at phone width is recorded like any other.
    form = f"{site} form[data-form=stock]"
    async with console.api("admin") as admin:
        items = await call(admin, "GET", f"/v1/kiosk/sites/{world.site['id']}/items")
    before = next(i for i in items["items"] if i["id"] == world.item["id"])["stock"]
    await page.select_option(f"{form} select[name=item_id]", world.item["id"])
    await page.select_option(f"{form} select[name=kind]", "correction")
    await page.fill(f"{form} input[name=delta]", "-1")
    await page.fill(f"{form} input[name=reason]", "盘点破损 1 袋")
    await page.click(f"{form} button[type=submit]")
    item = f'{site} tr[data-item-id="{world.item["id"]}"]'
    await page.wait_for_selector(f"{item} td.stock:text-is('{before - 1}')")
    await no_sideways_scroll(page)
    await picture(page, "kiosk-admin-375")
    assert page.errors == []
    await page.context.close()
