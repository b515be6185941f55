"""What `timebank demo` would write, shown before it asks to (no writes)."""

from __future__ import annotations

from dataclasses import dataclass

from app.kit.canonical_json import JsonObject
from app.kit.pg_pool import connect
from app.ops.demo.district import COMMUNITIES, DEMO_BOOK, SERVICE_ORGS


@dataclass(frozen=True, slots=True)
class DemoPreview:
    """The demo's plan in outline: whether it would seed, and how much."""

    book_exists: bool
    members: int
    days: int
    organisations: int
    projects: int

    @property
    def writes(self) -> bool:
        """Whether the run would write anything (a book already there is only reported)."""
        return not self.book_exists

    @property
    def lines(self) -> list[str]:
        """The outline in words, for the terminal."""
        if self.book_exists:
            return [f"book {DEMO_BOOK!r} exists: nothing would be written, its contents reported"]
        return [
            f"would open book {DEMO_BOOK!r} and seed it through the API:",
            f"  {self.organisations} organisations (each with its accounts), credentials "
            "granted (a notice entry each)",
            f"  {self.members} members, {self.projects} projects over {self.days} days of past "
            "service",
            "  service records approved (one journal entry each), rejected, disputed, one "
            "reversed and corrected",
        ]

    def document(self) -> JsonObject:
        """The outline as `timebank demo --dry-run` prints it."""
        return {
            "dry_run": True,
            "book": DEMO_BOOK,
            "book_exists": self.book_exists,
            "members": self.members,
            "days": self.days,
            "organisations": self.organisations,
            "projects": self.projects,
        }


async def demo_preview(database_url: str, members: int, days: int) -> DemoPreview:
    """What a demo run with these sizes would write on the database at `database_url`."""
    conn = await connect(database_url)
    try:
        exists = bool(await conn.fetchval("SELECT 1 FROM books WHERE code = $1", DEMO_BOOK))
    finally:
        await conn.close()
    # The station, the communities, the service organisations and the kiosk site; the plan's
    # past projects (at least 6, one a day) and the two coming up (app/ops/demo/plan.py).
    organisations = 1 + len(COMMUNITIES) + len(SERVICE_ORGS) + 1
    return DemoPreview(exists, members, days, organisations, max(6, days) + 2)
