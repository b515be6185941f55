"""`timebank serve` hands its workers defaults that follow its command line."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

import pytest
from typer.testing import CliRunner

from app import cli
from app.db import DatabaseUrls


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("127.0.0.1", 8000, "http://127.0.0.1:8000"),
        ("192.168.10.5", 9123, "http://192.168.10.5:9123"),
        ("0.0.0.0", 8080, "http://127.0.0.1:8080"),
        ("::", 8080, "http://127.0.0.1:8080"),
        ("::1", 8443, "http://[::1]:8443"),
    ],
)
def test_the_served_url_follows_host_and_port(host: str, port: int, url: str) -> None:
    assert cli.served_url(host, port) == url


class _Follower:
    def terminate(self) -> None: ...

    def wait(self, timeout: float) -> int:
        return 0


def _serve(monkeypatch: pytest.MonkeyPatch, *args: str) -> dict[str, str]:
    """Run `timebank serve` up to starting uvicorn; the environment its workers would get."""
    seen: dict[str, str] = {}

    def run_uvicorn(*_: Any) -> None:
        seen.update(os.environ)

    monkeypatch.setattr(cli, "_database", lambda *_a, **_k: DatabaseUrls("postgresql://a", "b"))
    monkeypatch.setattr(cli, "run_uvicorn", run_uvicorn)
    monkeypatch.setattr(subprocess, "Popen", lambda *_a, **_k: _Follower())
    # Nor may it replace the test process's SIGTERM handler (conftest stops PostgreSQL on it).
    monkeypatch.setattr(signal, "signal", lambda *_a: None)
    # Logging would stay bound to the runner's stream, closed after the run.
    monkeypatch.setattr(cli, "configure_logging", lambda *_a, **_k: None)
    # serve writes the workers' settings into os.environ: monkeypatch puts them back.
    for name in ("TIMEBANK_DATABASE_URL", "TIMEBANK_FOLLOW_LOG_IN_SERVER", "TIMEBANK_PUBLIC_URL"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.setenv(name, "placeholder")
            monkeypatch.delenv(name)
    result = CliRunner().invoke(cli.cli, ["serve", *args])
    assert result.exit_code == 0, result.output
    return seen


def test_serve_sets_the_public_url_from_its_port(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _serve(monkeypatch, "--port", "9123")
    assert seen["TIMEBANK_PUBLIC_URL"] == "http://127.0.0.1:9123"


def test_a_public_url_that_is_set_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIMEBANK_PUBLIC_URL", "https://timebank.example.cn")
    seen = _serve(monkeypatch, "--port", "9123")
    assert seen["TIMEBANK_PUBLIC_URL"] == "https://timebank.example.cn"
