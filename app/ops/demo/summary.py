"""What the demo book holds, as `timebank demo` prints it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ops.demo.district import DEMO_BOOK


async def district_summary(
    sessions: async_sessionmaker[AsyncSession], book: str = DEMO_BOOK
) -> dict[str, Any]:
    """What the book holds: its head, and counts of the district's organisations, members,
    needs, projects, sign-ups, records by status, disputes and certified minutes."""

    async def counts(session: AsyncSession, query: str) -> dict[str, int]:
        rows = await session.execute(text(query), {"b": book})
        return {str(r[0]): int(r[1]) for r in rows}

    async with sessions() as session, session.begin():
        head = (
            await session.execute(
                text(
                    "SELECT b.code, b.name, b.created_at, h.seq, h.entry_hash FROM books b "
                    "JOIN book_heads h ON h.book_code = b.code WHERE b.code = :b"
                ),
                {"b": book},
            )
        ).one()
        one = "SELECT '', count(*) FROM {} WHERE book_code = :b"
        records = await counts(
            session,
            "SELECT status, count(*) FROM service_records WHERE book_code = :b GROUP BY status",
        )
        minutes = await session.scalar(
            text(
                "SELECT coalesce(sum(credited_minutes), 0) FROM service_records "
                "WHERE book_code = :b AND status = 'approved'"
            ),
            {"b": book},
        )
        return {
            "book": {
                "code": head.code,
                "name": head.name,
                "created_at": head.created_at.isoformat(),
                "head": {"seq": head.seq, "entry_hash": head.entry_hash},
            },
            "organisations": await counts(
                session,
                "SELECT kind, count(*) FROM organisations WHERE book_code = :b "
                "GROUP BY kind ORDER BY kind",
            ),
            "credentials": (
                await counts(session, one.format("credentials") + " AND revoked_at IS NULL")
            ).get("", 0),
            "members": (await counts(session, one.format("members"))).get("", 0),
            "needs": await counts(
                session,
                "SELECT status, count(*) FROM needs WHERE book_code = :b "
                "GROUP BY status ORDER BY status",
            ),
            "projects": (await counts(session, one.format("projects"))).get("", 0),
            "signups": (
                await counts(
                    session,
                    "SELECT '', count(*) FROM signups s JOIN projects p ON p.id = s.project_id "
                    "WHERE p.book_code = :b AND s.status = 'active'",
                )
            ).get("", 0),
            "records": dict(sorted(records.items())),
            "disputes": await counts(
                session,
                "SELECT d.status, count(*) FROM service_disputes d JOIN service_records r "
                "ON r.id = d.record_id WHERE r.book_code = :b GROUP BY d.status "
                "ORDER BY d.status",
            ),
            "certified_minutes": int(minutes or 0),
            "head_seq": head.seq,
        }
