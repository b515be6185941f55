"""Fault points: named steps inside an action where tests make it fail or kill its process.

An action that writes the journal and its own rows calls `fault_point("<action>.<step>")`
between its steps. Nothing is armed in production; the tests of "nothing half-done" arm a
point either in-process (`arm`) or in a server they start (`TIMEBANK_FAULT_POINTS`, read by
`create_app`), and then check that the action completed whole or left nothing behind.
"""

from __future__ import annotations

import os
import signal
from typing import Literal

FaultMode = Literal["raise", "kill"]
_armed: dict[str, FaultMode] = {}


class InjectedFault(RuntimeError):
    """Raised at an armed fault point in mode `raise`."""


def arm(point: str, mode: FaultMode = "raise") -> None:
    """Make `point` raise InjectedFault, or SIGKILL this process, whenever it is reached."""
    _armed[point] = mode


def disarm(point: str | None = None) -> None:
    """Disarm one point, or all of them."""
    if point is None:
        _armed.clear()
    else:
        _armed.pop(point, None)


def arm_from_spec(spec: str) -> None:
    """Arm the points of a setting such as `approve.posted=kill,reverse.posted=raise`."""
    for part in filter(None, (p.strip() for p in spec.split(","))):
        point, _, mode = part.partition("=")
        if mode not in ("raise", "kill"):
            raise ValueError(f"fault point {point!r}: mode must be raise or kill, not {mode!r}")
        arm(point, mode)  # type: ignore[arg-type]


def fault_point(point: str) -> None:
    """A step between an action's writes; does nothing unless a test armed it."""
    if not _armed:
        return
    mode = _armed.get(point)
    if mode == "raise":
        raise InjectedFault(f"fault injected at {point}")
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
