"""Every screen of the console, as each role that has it, passes axe-core with no serious or
critical violation (the shell included) and is usable on a 375 px phone: nothing makes the
page scroll sideways."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.console.conftest import (
    Console,
    go,
    open_console,
    serious_axe_violations,
    sign_in,
)

pytestmark = pytest.mark.slow

SCREENS = {
    "admin": ["overview", "queues", "members", "exchange", "kiosk", "integrity"],
    "org": ["overview", "queues", "members", "kiosk", "integrity"],
    "auditor": ["overview", "integrity"],
}


# Every screen at both widths as the admin (who has them all); the others' menus at a phone's.
@pytest.mark.parametrize(
    ("role", "width"), [("admin", 1280), ("admin", 375), ("org", 375), ("auditor", 375)]
)
async def test_every_screen_passes_axe_and_fits_the_width(
    browser: Any, console: Console, role: str, width: int
) -> None:
    page = await open_console(browser, console, width=width)
    found = await serious_axe_violations(page)
    assert found == [], f"sign-in: {json.dumps(found, ensure_ascii=False)}"
    await sign_in(page, console.tokens[role])
    problems = {}
    for screen in SCREENS[role]:
        await go(page, screen)
        found = await serious_axe_violations(page)
        if found:
            problems[screen] = found
        scroll = await page.evaluate("() => document.documentElement.scrollWidth")
        assert scroll <= width, f"{screen} at {width} px scrolls sideways ({scroll} px)"
    assert problems == {}, json.dumps(problems, ensure_ascii=False)
    assert page.errors == []
    await page.context.close()
