"""Fixtures of the tests that fail or kill an action between its steps."""

from __future__ import annotations

from tests.consistency.faults import armed  # noqa: F401 - a fixture
from tests.exchange.test_recognition import region  # noqa: F401 - a fixture (two books)
