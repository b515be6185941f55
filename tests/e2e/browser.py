"""Debian's Chromium driven by Playwright, for the pages' browser tests (never a browser of
Playwright's own)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Run as root in a container, and no background traffic to Google's services (a closed
# network refuses it, many connections at a time).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000


def require_chromium() -> Path:
    """Debian's Chromium; the test is skipped only where it is missing and
    TIMEBANK_REQUIRE_BROWSER is unset (CI sets it, so CI never skips silently)."""
    if not CHROMIUM.exists():
        if os.environ.get("TIMEBANK_REQUIRE_BROWSER"):
            pytest.fail(f"TIMEBANK_REQUIRE_BROWSER is set but {CHROMIUM} is missing")
        pytest.skip(
            f"{CHROMIUM} is missing (apt-get install chromium); "
            "set TIMEBANK_REQUIRE_BROWSER=1 to fail instead"
        )
    return CHROMIUM


@asynccontextmanager
async def launched() -> AsyncIterator[Any]:
    """Headless Debian Chromium driven by Playwright, closed on leaving."""
    chromium = require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield instance
        finally:
            await instance.close()
