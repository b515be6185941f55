"""The console's browser tests: one `timebank serve` per test process, seeded by
`timebank demo` (the same district a newcomer sees), Chromium driven by Playwright, and a
page signed in as each kind of user."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.browser import TIMEOUT_MS, launched
from tests.e2e.test_outages import Served, start_serve, stop_serve
from tests.e2e.test_two_servers import TIMEBANK
from tests.volunteering.test_service_proof import region  # noqa: F401 - a fixture (certified service)

BOOK = "demo"
ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = ROOT / "var" / "screenshots" / "console"
# axe-core, pinned in tools/console (scripts/test runs npm ci there).
AXE = ROOT / "tools" / "console" / "node_modules" / "axe-core" / "axe.min.js"


@dataclass
class Console:
    """The seeded service, and a token of each kind of console user."""

    served: Served
    tokens: dict[str, str] = field(default_factory=dict)
    station: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.served.base

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [TIMEBANK, *args],
            env=self.served.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def token(self, role: str, organisation: str | None = None, name: str = "") -> str:
        """A new credential of the demo book, made through the API by the platform's admin
        (faster than the command line); its token."""
        body = {"role": role, "book": BOOK, "name": name, "organisation_id": organisation}
        headers = {
            "Authorization": f"Bearer {self.tokens['platform']}",
            "Idempotency-Key": secrets.token_hex(16),
        }
        made = httpx.post(f"{self.base}/v1/credentials", json=body, headers=headers, timeout=30)
        assert made.status_code == 201, made.text
        token: str = made.json()["token"]
        return token

    def api(self, role: str = "admin") -> httpx.AsyncClient:
        """A bearer-token client of the service, as `role`."""
        return httpx.AsyncClient(
            base_url=self.base,
            headers={"Authorization": f"Bearer {self.tokens[role]}"},
            timeout=30,
        )


@pytest.fixture(scope="session")
async def console(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Console]:
    """`timebank serve` on its own embedded PostgreSQL, seeded by `timebank demo`."""
    work = tmp_path_factory.mktemp("console")
    served = await start_serve(work / "data", work / "serve.log")
    try:
        found = Console(served)
        await asyncio.to_thread(found.cli, "demo", "--yes", "--members", "30", "--days", "10")
        # The platform's admin from the command line; the rest through the API, which is faster.
        found.tokens["platform"] = (
            found.cli("credentials", "create", "--role", "admin", "--name", "平台管理员")
            .strip()
            .splitlines()[-1]
        )
        async with found.api("platform") as client:
            r = await client.get("/v1/organisations", params={"book": BOOK, "limit": 200})
            assert r.status_code == 200, r.text
        found.station = next(o for o in r.json()["items"] if o["kind"] == "social_work_station")
        found.tokens["admin"] = found.token("admin", name="街道管理员")
        found.tokens["auditor"] = found.token("auditor", name="区审计员")
        found.tokens["org"] = found.token("org", found.station["id"], name="社工站值班")
        yield found
    finally:
        await asyncio.to_thread(stop_serve, served)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    """Headless Chromium, started once per test process; each test opens its own context."""
    async with launched() as instance:
        yield instance


async def open_console(browser: Any, console: Console, width: int = 1280) -> Any:
    """A new browser context (its own cookies) on /console/; uncaught page errors are kept on
    `page.errors` for the test to assert none happened."""
    context = await browser.new_context(
        base_url=console.base, locale="zh-CN", viewport={"width": width, "height": 900}
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    await page.goto("/console/")
    return page


async def sign_in(page: Any, token: str) -> None:
    """Type the token once, as a person would, and wait for the first screen."""
    await page.fill("#token", token)
    await page.click("#sign-in-form button[type=submit]")
    await page.wait_for_selector("#screen[data-ready]")


async def go(page: Any, screen: str) -> None:
    """Open a screen from the menu and wait until it has rendered."""
    await page.click(f"#nav a[data-screen={screen}]")
    await page.wait_for_selector(f"#screen[data-ready={screen}]")


async def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def serious_axe_violations(page: Any, scope: str = "document") -> list[Any]:
    """axe-core's serious and critical violations on the page (or within `scope`); skipped
    where tools/console/node_modules is missing, failed then if TIMEBANK_REQUIRE_NODE is set."""
    if not AXE.exists():
        message = "tools/console/node_modules is missing (scripts/test runs npm ci there)"
        if os.environ.get("TIMEBANK_REQUIRE_NODE"):
            pytest.fail(f"TIMEBANK_REQUIRE_NODE is set but {message}")
        pytest.skip(message)
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.add_script_tag(path=str(AXE))
    found: list[Any] = await page.evaluate(
        "async (scope) => (await axe.run(scope === 'document' ? document : scope)).violations"
        ".filter((v) => v.impact === 'serious' || v.impact === 'critical')"
        ".map((v) => ({id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target)}))",
        scope,
    )
    return found
