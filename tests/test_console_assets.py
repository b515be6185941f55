"""The console's charting library is pinned and shipped: app/console/static/vendor/ holds
exactly the files of the `echarts` version that tools/console/package.json pins (installed by
scripts/test with `npm ci`, from its package-lock.json), so updating the pin without copying
the new build, or editing the copy, fails here."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools" / "console"
MODULES = TOOLS / "node_modules"
VENDOR = ROOT / "app" / "console" / "static" / "vendor"
# Each vendored file and the file of the pinned packages it must equal.
COPIES = {
    "echarts.min.js": "echarts/dist/echarts.min.js",
    "echarts.LICENSE.txt": "echarts/LICENSE",
    "echarts.NOTICE.txt": "echarts/NOTICE",
    "echarts.LICENSE-d3.txt": "echarts/licenses/LICENSE-d3",
    "zrender.LICENSE.txt": "zrender/LICENSE",
}


def require_assets() -> Path:
    """tools/console/node_modules; skips without Node.js or it, unless TIMEBANK_REQUIRE_NODE
    is set (CI sets it, so CI never skips silently), as tests/node.py does."""
    if shutil.which("node") is None or not (MODULES / ".package-lock.json").exists():
        message = "Node.js or tools/console/node_modules is missing (scripts/test runs npm ci)"
        if os.environ.get("TIMEBANK_REQUIRE_NODE"):
            pytest.fail(f"TIMEBANK_REQUIRE_NODE is set but {message}")
        pytest.skip(message + "; set TIMEBANK_REQUIRE_NODE=1 to fail instead")
    return MODULES


def test_the_pins_are_exact_and_locked() -> None:
    manifest = json.loads((TOOLS / "package.json").read_text())
    lock = json.loads((TOOLS / "package-lock.json").read_text())
    pins = manifest["dependencies"]
    assert set(pins) == {"echarts", "axe-core"}
    for name, version in pins.items():
        assert version[0].isdigit() and all(c.isdigit() or c == "." for c in version), (
            f"{name} {version} is not an exact version"
        )
        assert lock["packages"][f"node_modules/{name}"]["version"] == version


def test_the_vendored_files_are_the_pinned_package_s() -> None:
    modules = require_assets()
    manifest = json.loads((TOOLS / "package.json").read_text())
    installed = json.loads((modules / "echarts" / "package.json").read_text())
    assert installed["version"] == manifest["dependencies"]["echarts"], (
        "tools/console/node_modules is stale: run npm ci --prefix tools/console"
    )
    for vendored, original in COPIES.items():
        assert (VENDOR / vendored).read_bytes() == (modules / original).read_bytes(), (
            f"app/console/static/vendor/{vendored} differs from node_modules/{original}: "
            f"copy it again after changing the pin"
        )
