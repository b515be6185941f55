"""What a member already moved in a period, read from the journal itself (so a cap counts every
posting that committed, whatever happened to the request afterwards)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

Period = Literal["day", "month", "year"]


def period_start(now: datetime, zone: ZoneInfo, period: Period) -> datetime:
    """The start of the calendar day, month or year containing `now`, in `zone`."""
    local = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    if period in ("month", "year"):
        local = local.replace(day=1)
    if period == "year":
        local = local.replace(month=1)
    return local


async def debited_since(
    session: AsyncSession,
    account_id: str,
    kind: str,
    since: datetime,
    meta_key: str | None = None,
    meta_value: str | None = None,
) -> int:
    """The units `account_id` gave in entries of `kind` posted at or after `since` (optionally
    only those whose meta member `meta_key` is `meta_value`)."""
    condition = ""
    params: dict[str, object] = {"account": account_id, "kind": kind, "since": since}
    if meta_key is not None:
        # The entry body is the hashed JCS object; meta is read from it, not from a copy.
        condition = "AND convert_from(e.body, 'UTF8')::jsonb -> 'meta' ->> :meta_key = :value"
        params.update(meta_key=meta_key, value=meta_value)
    total = await session.scalar(
        text(
            "SELECT coalesce(-sum(l.amount), 0) FROM journal_legs l JOIN journal_entries e "
            "ON e.book_code = l.book_code AND e.seq = l.seq "
            "WHERE l.account_id = CAST(:account AS uuid) AND l.amount < 0 AND e.kind = :kind "
            f"AND e.posted_at >= :since {condition}"
        ),
        params,
    )
    return int(total or 0)
