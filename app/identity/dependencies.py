"""Identity's route dependency: the roles that may ever take a route's action (403 before any
other check of the route's parameters and body)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends

from app.http.caller import Caller, CallerDep
from app.identity.authorization import require_role


@dataclass(frozen=True, slots=True)
class Allowed:
    """The roles that may ever take a route's action (any other is refused 403, whatever the
    object), and the action as a 403 names it."""

    roles: tuple[str, ...]
    action: str

    def check(self, caller: Caller) -> None:
        """Refuse (403) a role that may never take this action."""
        require_role(caller, self.roles, self.action)


def allow(roles: Iterable[str], action: str) -> Any:
    """A route dependency (`dependencies=[allow(...)]`): refuse a role that may never call it.

    Route dependencies run before FastAPI checks the route's parameters and body, so this 403
    comes after 401 and 429 and before any 404 or 422 (docs/authorization.md); the route's own
    caller dependency reuses the same authenticated caller.
    """
    allowed = Allowed(tuple(roles), action)

    async def check_role(caller: CallerDep) -> Caller:
        allowed.check(caller)
        return caller

    check_role.allowed = allowed  # type: ignore[attr-defined]
    return Depends(check_role)


def allowed_of(dependency: Any) -> Allowed | None:
    """The roles an `allow(...)` dependency admits (None for any other dependency)."""
    found: Allowed | None = getattr(getattr(dependency, "dependency", None), "allowed", None)
    return found
