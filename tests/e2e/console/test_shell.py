"""The console's shell in Chromium: a token typed once signs in (and is not kept), each role
sees its own menu, the language switches, and sign-out or a revoked credential ends the
session."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.console.conftest import Console, open_console, screenshot, sign_in

pytestmark = pytest.mark.slow

MENUS = {
    "admin": ["overview", "queues", "members", "exchange", "kiosk", "integrity"],
    "org": ["overview", "queues", "members", "kiosk", "integrity"],
    "auditor": ["overview", "integrity"],
}


async def menu(page: Any) -> list[str]:
    return [await a.get_attribute("data-screen") for a in await page.query_selector_all("#nav a")]


@pytest.mark.parametrize("role", ["admin", "org", "auditor"])
async def test_each_role_signs_in_once_and_sees_its_menu(
    browser: Any, console: Console, role: str
) -> None:
    page = await open_console(browser, console)
    await sign_in(page, console.tokens[role])
    assert await menu(page) == MENUS[role]
    # The token is gone from the page and from storage; the session is an HttpOnly cookie.
    assert await page.input_value("#token") == ""
    stored = await page.evaluate("() => JSON.stringify({...localStorage, ...sessionStorage})")
    assert console.tokens[role] not in stored
    assert "tb_console" not in await page.evaluate("() => document.cookie")
    cookies = await page.context.cookies()
    (cookie,) = [c for c in cookies if c["name"] == "tb_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # A reload keeps the session.
    await page.reload()
    await page.wait_for_selector("#screen[data-ready]")
    assert await menu(page) == MENUS[role]
    assert page.errors == []
    await page.context.close()


async def test_the_language_switches_and_is_remembered(browser: Any, console: Console) -> None:
    page = await open_console(browser, console)
    await sign_in(page, console.tokens["admin"])
    assert await page.inner_text("#nav a[data-screen=integrity]") == "完整性"
    await page.click("#lang")
    await page.wait_for_selector("#screen[data-ready]")
    assert await page.inner_text("#nav a[data-screen=integrity]") == "Integrity"
    assert await page.inner_text("#sign-out") == "Sign out"
    await page.reload()
    await page.wait_for_selector("#screen[data-ready]")
    assert await page.get_attribute("html", "lang") in ("en", "zh-CN")
    assert await page.inner_text("#nav a[data-screen=integrity]") == "Integrity"
    assert page.errors == []
    await page.context.close()


async def test_sign_out_and_revocation_each_end_the_session(browser: Any, console: Console) -> None:
    page = await open_console(browser, console)
    await sign_in(page, console.tokens["admin"])
    await page.click("#sign-out")
    await page.wait_for_selector("#sign-in:not([hidden])")
    await page.reload()
    await page.wait_for_selector("#sign-in:not([hidden])")

    # A credential revoked while its session is open: the next screen says the session ended.
    token = console.token("org", console.station["id"], name="临时值班")
    await sign_in(page, token)
    async with console.api("admin") as client:
        me = await page.evaluate("async () => (await fetch('/v1/console/session')).json()")
        r = await client.post(
            f"/v1/credentials/{me['credential']['id']}/revoke",
            headers={"Idempotency-Key": me["credential"]["id"]},
        )
        assert r.status_code == 200, r.text
    await page.click("#nav a[data-screen=members]")
    await page.wait_for_selector("#sign-in:not([hidden])")
    assert "会话已结束" in await page.inner_text("#sign-in-error")
    await screenshot(page, "signed-out-after-revocation")
    assert page.errors == []
    await page.context.close()


async def test_a_wrong_token_or_a_kiosk_token_does_not_sign_in(
    browser: Any, console: Console
) -> None:
    page = await open_console(browser, console)
    await page.fill("#token", "tbk_wrong")
    await page.click("#sign-in-form button[type=submit]")
    await page.wait_for_selector("#sign-in-error:not(:empty)")
    assert "未登录" in await page.inner_text("#sign-in-error")
    assert await page.is_hidden("#nav")
    assert page.errors == []
    await page.context.close()


async def test_a_platform_admin_chooses_the_book_to_work_in(browser: Any, console: Console) -> None:
    page = await open_console(browser, console)
    await sign_in(page, console.tokens["platform"])
    assert "账本代码" in await page.inner_text("#screen")
    assert await page.is_visible("#book-pick")
    await page.fill("#book-code", "demo")
    await page.press("#book-code", "Enter")
    await page.wait_for_selector("#screen[data-ready=overview] [data-figure=hours]")
    await page.click("#nav a[data-screen=integrity]")
    await page.wait_for_selector("#screen[data-ready=integrity] #book-head")
    assert "demo" in await page.inner_text("#book-head h3")
    assert page.errors == []
    await page.context.close()
