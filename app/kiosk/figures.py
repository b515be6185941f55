"""What the kiosk's own table says was redeemed (no HTTP): a book's confirmed redemptions, for
statistics to reconcile with the journal's `hold.post` entries of redemption holds.

A confirmed redemption's `tx_id` is its `hold.post`, which takes the whole `total` of its
`asset` from the member. It belongs to the period of that entry, as the journal's side places
it (the daily report does the same); one naming no entry of the book is placed by its own
`resolved_at`, so it still counts; it is also counted as `unmatched`, with any whose `tx_id`
is not a `hold.post` of its own hold: two sides that agree in number and amounts then pair each
redemption with an entry of its own (`tx_id` is unique).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.periods import period_condition
from app.ledger.journal import KIND_HOLD_POST

CONFIRMED_SQL = """
SELECT k.asset, count(*) AS redemptions, sum(k.total) AS spent,
       count(*) FILTER (WHERE e.kind IS DISTINCT FROM :hold_post
                           OR e.resolves_hold IS DISTINCT FROM k.hold_id) AS unmatched
  FROM kiosk_redemptions k
  LEFT JOIN LATERAL (SELECT e.kind, e.posted_at, e.resolves_hold FROM journal_entries e
                      WHERE e.tx_id = k.tx_id AND e.book_code = :book OFFSET 0) e ON true
 WHERE k.book_code = :book AND k.status = 'confirmed'{site}{period}
 GROUP BY k.asset
"""
# A redemption belongs to the period of its entry, or of its own settling if the entry is missing.
PERIOD_COLUMN = "coalesce(e.posted_at, k.resolved_at)"
AT_SITE = " AND k.site_id = :site"


@dataclass(frozen=True, slots=True)
class ConfirmedRedemptions:
    """Confirmed redemptions: how many, what members spent per asset, and how many name no
    `hold.post` of their hold."""

    count: int
    spent: dict[str, int]
    unmatched: int


async def confirmed(
    session: AsyncSession,
    book: str,
    start: datetime | None,
    end: datetime | None,
    site_id: uuid.UUID | None = None,
) -> ConfirmedRedemptions:
    """The redemptions of `book` confirmed from `start` (inclusive) to `end` (exclusive), each
    optional; with a site, only that site's."""
    params: dict[str, Any] = {"book": book, "hold_post": KIND_HOLD_POST}
    site = ""
    if site_id is not None:
        site = AT_SITE
        params["site"] = site_id
    period = period_condition(PERIOD_COLUMN, start, end, params)
    rows = list(await session.execute(text(CONFIRMED_SQL.format(site=site, period=period)), params))
    spent = {row.asset: int(row.spent) for row in sorted(rows, key=lambda r: str(r.asset))}
    return ConfirmedRedemptions(
        sum(int(row.redemptions) for row in rows),
        spent,
        sum(int(row.unmatched) for row in rows),
    )
