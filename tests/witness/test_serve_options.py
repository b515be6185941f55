"""`timebank witness serve` binds what witness.json says (127.0.0.1:8791 by default) unless
--host or --port say otherwise."""

from __future__ import annotations

import json
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from app import cli
from app import logging as app_logging
from tests.witness.conftest import Witnessed


def _bound(monkeypatch: pytest.MonkeyPatch, witnessed: Witnessed, *args: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(options))
    # The test process keeps its own logging.
    monkeypatch.setattr(app_logging, "configure_logging", lambda: None)
    result = CliRunner().invoke(cli.cli, ["witness", "serve", "--dir", str(witnessed.root), *args])
    assert result.exit_code == 0, result.output
    return seen


def test_the_default_address_is_loopback(
    monkeypatch: pytest.MonkeyPatch, witnessed: Witnessed
) -> None:
    seen = _bound(monkeypatch, witnessed)
    assert (seen["host"], seen["port"]) == ("127.0.0.1", 8791)


def test_witness_json_then_the_command_line_decide(
    monkeypatch: pytest.MonkeyPatch, witnessed: Witnessed
) -> None:
    path = witnessed.root / "witness.json"
    document = json.loads(path.read_text())
    path.write_text(json.dumps({**document, "listen": {"host": "10.0.0.7", "port": 9000}}))
    seen = _bound(monkeypatch, witnessed)
    assert (seen["host"], seen["port"]) == ("10.0.0.7", 9000)
    seen = _bound(monkeypatch, witnessed, "--host", "127.0.0.2", "--port", "9100")
    assert (seen["host"], seen["port"]) == ("127.0.0.2", 9100)
