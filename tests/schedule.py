"""Longest test modules first, so that two pytest-xdist workers finish together.

With `--dist loadfile` a module runs whole in one worker, handed out in collection order
(`scripts/test` passes `--no-loadscope-reorder`, or xdist would put the modules of most tests
first, and the long modules of one or two tests would run last, each alone at the tail).
Each run records every test's duration in pytest's cache; the next run orders modules by
the sum of their tests' recorded durations. A test not yet recorded counts as `UNKNOWN_S`,
or `UNKNOWN_SLOW_S` when marked slow (it starts a process).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from xdist.scheduler import LoadFileScheduling

CACHE_KEY = "timebank/test-seconds"
# Modules that share one costly session fixture run in one worker as one unit: the console's
# browser tests share a `timebank serve` seeded by `timebank demo`, which each worker that ran
# any of them would otherwise start and seed again.
SHARED_UNITS = ("tests/e2e/console/",)
UNKNOWN_S = 0.5
UNKNOWN_SLOW_S = 10.0

_seconds: dict[str, float] = defaultdict(float)


def _unit(nodeid: str) -> str:
    """The unit of work a test belongs to: its module, or the shared unit that holds it."""
    for unit in SHARED_UNITS:
        if nodeid.startswith(unit):
            return unit
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order units of work (modules, SHARED_UNITS) by their expected duration, longest first;
    tests keep their order within a unit."""
    cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
    known: dict[str, float] = cache.get(CACHE_KEY, {}) if cache else {}
    expected: dict[str, float] = defaultdict(float)
    for item in items:
        unknown = UNKNOWN_SLOW_S if item.get_closest_marker("slow") else UNKNOWN_S
        expected[_unit(item.nodeid)] += known.get(item.nodeid, unknown)
    items.sort(key=lambda item: -expected[_unit(item.nodeid)])  # stable: a unit's order is kept


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add up setup, call and teardown (in the controller, as workers report them)."""
    _seconds[report.nodeid] += report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Record the durations of this run (once, by the controller, not by each worker)."""
    cache = getattr(session.config, "cache", None)
    if hasattr(session.config, "workerinput") or cache is None or not _seconds:
        return
    known: dict[str, float] = cache.get(CACHE_KEY, {})
    known.update({nodeid: round(seconds, 2) for nodeid, seconds in _seconds.items()})
    cache.set(CACHE_KEY, known)


class ModuleScheduling(LoadFileScheduling):  # type: ignore[misc]
    """`--dist loadfile` (a module's tests in one worker), with each of SHARED_UNITS whole."""

    def _split_scope(self, nodeid: str) -> str:
        return _unit(nodeid)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """The scheduler of `--dist loadfile` runs (scripts/test's); None leaves xdist's own."""
    if config.getvalue("dist") == "loadfile":
        return ModuleScheduling(config, log)
    return None
