"""What the demo book holds, as `timebank demo` prints it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.kit.canonical_json import JsonObject
from app.ops.demo.district import DEMO_BOOK

# Counts of one table's rows in the book (keyed '' so that `_counts` reads them like the rest).
_ONE = "SELECT '', count(*) FROM {} WHERE book_code = :b"
ORGANISATIONS = (
    "SELECT kind, count(*) FROM organisations WHERE book_code = :b GROUP BY kind ORDER BY kind"
)
NEEDS = "SELECT status, count(*) FROM needs WHERE book_code = :b GROUP BY status ORDER BY status"
SIGNUPS = (
    "SELECT '', count(*) FROM signups s JOIN projects p ON p.id = s.project_id "
    "WHERE p.book_code = :b AND s.status = 'active'"
)
RECORDS = "SELECT status, count(*) FROM service_records WHERE book_code = :b GROUP BY status"
DISPUTES = (
    "SELECT d.status, count(*) FROM service_disputes d JOIN service_records r "
    "ON r.id = d.record_id WHERE r.book_code = :b GROUP BY d.status ORDER BY d.status"
)
CERTIFIED_MINUTES = (
    "SELECT coalesce(sum(credited_minutes), 0) FROM service_records "
    "WHERE book_code = :b AND status = 'approved'"
)
BOOK = (
    "SELECT b.code, b.name, b.created_at, h.seq, h.entry_hash FROM books b "
    "JOIN book_heads h ON h.book_code = b.code WHERE b.code = :b"
)


@dataclass(frozen=True)
class DemoBook:
    """The demo book and its chain head."""

    code: str
    name: str
    created_at: datetime
    head_seq: int
    head_hash: str


@dataclass(frozen=True)
class DistrictSummary:
    """What the book holds, and (from `seed_demo`) whether this run created it and in how many
    seconds."""

    book: DemoBook
    organisations: dict[str, int]  # by kind
    credentials: int  # not revoked
    members: int
    needs: dict[str, int]  # by status
    projects: int
    signups: int  # active
    records: dict[str, int]  # by status
    disputes: dict[str, int]  # by status
    certified_minutes: int
    created: bool = False
    seconds: float | None = None

    def document(self) -> JsonObject:
        """The summary as `timebank demo` prints it (JSON; `seconds` only when created)."""
        book = self.book
        out: dict[str, Any] = {
            "book": {
                "code": book.code,
                "name": book.name,
                "created_at": book.created_at.isoformat(),
                "head": {"seq": book.head_seq, "entry_hash": book.head_hash},
            },
            "organisations": self.organisations,
            "credentials": self.credentials,
            "members": self.members,
            "needs": self.needs,
            "projects": self.projects,
            "signups": self.signups,
            "records": self.records,
            "disputes": self.disputes,
            "certified_minutes": self.certified_minutes,
            "head_seq": book.head_seq,
            "created": self.created,
        }
        if self.seconds is not None:
            out["seconds"] = self.seconds
        return out


async def _counts(session: AsyncSession, query: str, book: str) -> dict[str, int]:
    rows = await session.execute(text(query), {"b": book})
    return {str(r[0]): int(r[1]) for r in rows}


async def _count(session: AsyncSession, query: str, book: str) -> int:
    return (await _counts(session, query, book)).get("", 0)


async def district_summary(
    sessions: async_sessionmaker[AsyncSession], book: str = DEMO_BOOK
) -> DistrictSummary:
    """What the book holds: its head, and counts of the district's organisations, members,
    needs, projects, sign-ups, records by status, disputes and certified minutes."""
    async with sessions() as session, session.begin():
        row = (await session.execute(text(BOOK), {"b": book})).one()
        records = await _counts(session, RECORDS, book)
        minutes = await session.scalar(text(CERTIFIED_MINUTES), {"b": book})
        return DistrictSummary(
            book=DemoBook(row.code, row.name, row.created_at, row.seq, row.entry_hash),
            organisations=await _counts(session, ORGANISATIONS, book),
            credentials=await _count(
                session, _ONE.format("credentials") + " AND revoked_at IS NULL", book
            ),
            members=await _count(session, _ONE.format("members"), book),
            needs=await _counts(session, NEEDS, book),
            projects=await _count(session, _ONE.format("projects"), book),
            signups=await _count(session, SIGNUPS, book),
            records=dict(sorted(records.items())),
            disputes=await _counts(session, DISPUTES, book),
            certified_minutes=int(minutes or 0),
        )
