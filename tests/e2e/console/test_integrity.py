"""The console's integrity screen in Chromium: each book's head, latest checkpoint and keys as
the API gives them, the export for those who may download it, and verification in the page of
an export, a receipt and a service proof."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.console.conftest import BOOK, Console, go, open_console, screenshot, sign_in

pytestmark = pytest.mark.slow


async def fact(page: Any, name: str) -> str:
    text: str = await page.inner_text(f"#book-head dd[data-fact={name}]")
    return text


async def test_the_auditor_sees_the_head_checkpoint_keys_and_export(
    browser: Any, console: Console
) -> None:
    async with console.api("admin") as client:
        await client.post(f"/v1/books/{BOOK}/checkpoints", headers={"Idempotency-Key": "ck-1"})
        head = (await client.get(f"/v1/books/{BOOK}/head")).json()
        checkpoint = (await client.get(f"/v1/books/{BOOK}/checkpoint")).json()
        jwks = (await client.get("/.well-known/jwks.json")).json()
    page = await open_console(browser, console)
    await sign_in(page, console.tokens["auditor"])
    await go(page, "integrity")
    assert await fact(page, "hash") == head["entry_hash"]
    assert int((await fact(page, "seq")).replace(",", "")) >= head["seq"]
    assert int((await fact(page, "tree-size")).replace(",", "")) >= checkpoint["tree_size"]
    assert await fact(page, "kid") == checkpoint["kid"]
    assert "秒" in await fact(page, "age") or "分钟" in await fact(page, "age")
    kids = await page.locator("#keys td.mono").all_inner_texts()
    assert kids == [key["kid"] for key in jwks["keys"]]
    assert await page.get_attribute("#export-link", "href") == f"/v1/books/{BOOK}/export"
    # The auditor has no write control: every button is the shell's or a verifier's.
    buttons = await page.locator("#screen button").all_inner_texts()
    assert set(buttons) <= {"核验", "核验本账本的当前导出"}, buttons
    await screenshot(page, "integrity-auditor")
    assert page.errors == []
    await page.context.close()


async def test_an_organisation_reads_the_head_but_has_no_export(
    browser: Any, console: Console
) -> None:
    page = await open_console(browser, console)
    await sign_in(page, console.tokens["org"])
    await go(page, "integrity")
    assert len(await fact(page, "hash")) == 64
    assert await page.locator("#export-link").count() == 0
    assert await page.locator("#verify-now").count() == 0
    assert "不能下载" in await page.inner_text("#export")
    assert page.errors == []
    await page.context.close()
