"""The TypeScript client's tools for the tests: its pinned compiler and generator, installed
by scripts/test (`npm ci` in clients/typescript)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "clients" / "typescript"
BIN = CLIENT / "node_modules" / ".bin"


def require_node() -> Path:
    """The client's node_modules/.bin; skips without Node.js and its tools, unless
    TIMEBANK_REQUIRE_NODE is set (CI sets it, so CI never skips silently)."""
    missing = shutil.which("node") is None or not (BIN / "tsc").exists()
    if missing:
        message = "Node.js or clients/typescript/node_modules is missing (scripts/test runs npm ci)"
        if os.environ.get("TIMEBANK_REQUIRE_NODE"):
            pytest.fail(f"TIMEBANK_REQUIRE_NODE is set but {message}")
        pytest.skip(message + "; set TIMEBANK_REQUIRE_NODE=1 to fail instead")
    return BIN


def run_tool(args: list[str], cwd: Path = CLIENT) -> subprocess.CompletedProcess[str]:
    """Run one of the client's tools; fails the test with its output if it fails."""
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done
