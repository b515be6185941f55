"""Fixtures of the end-to-end tests that more than one module uses."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from tests.e2e.replicas import ReplicaPair


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture
def pair() -> Iterator[ReplicaPair]:
    """A primary and its synchronous standby, running, stopped and removed after the test."""
    # A SIGTERM (a CI timeout) unwinds the fixtures, which stop the servers.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    replicas = ReplicaPair.start()
    try:
        yield replicas
    finally:
        replicas.close()
        signal.signal(signal.SIGTERM, previous)
