"""docs/getting-started.md, run exactly as written: every `sh` block, in order, in one shell,
against a `timebank serve` of its own."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_outages import start_serve, stop_serve

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "getting-started.md"

pytestmark = pytest.mark.slow


def guide_blocks() -> list[str]:
    """The guide's `sh` blocks, in order."""
    return re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), re.S)


def test_the_guide_has_its_steps() -> None:
    blocks = guide_blocks()
    assert len(blocks) >= 10
    assert "credentials create" in blocks[0] and "/confirm" in blocks[-1]


async def test_the_guide_runs_as_written(tmp_path: Path) -> None:
    served = await start_serve(tmp_path / "data", tmp_path / "serve.log")
    try:
        script = "set -euo pipefail\n" + "\n".join(guide_blocks())
        done = await asyncio.to_thread(
            subprocess.run,
            ["bash", "-c", script],
            cwd=ROOT,
            env={**served.env, "BASE": served.base},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        stop_serve(served)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    # Step 6 approves the record; step 11 confirms the redemption.
    assert "approved" in lines and "confirmed" in lines, done.stdout
    # Step 7: one credited hour; step 8: 30 minutes for 5 points; step 11: the points spent.
    hour = lines.index('{"asset":"HOUR","posted":60}')
    exchanged = lines.index('{"asset":"POINT","posted":5}')
    spent = len(lines) - 1 - lines[::-1].index('{"asset":"POINT","posted":0}')
    assert hour < exchanged < spent, done.stdout
    assert lines[exchanged - 1] == '{"asset":"HOUR","posted":30}'
    assert lines[-2:] == ['{"asset":"HOUR","posted":30}', '{"asset":"POINT","posted":0}']
