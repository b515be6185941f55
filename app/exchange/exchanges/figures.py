"""What the exchange feature's own table says was exchanged (no HTTP): the executed quotes of a
book, for statistics to reconcile with the journal's `exchange` entries.

An executed quote records what its entry moved: `from_amount` of the rule's `from_asset` given
by the member, `to_amount` of its `to_asset` paid by the pool (a storage cap may send part of
that to the public time pool, but the pool pays it all). A quote belongs to the period of the
entry it names (`tx_id`), as the journal's side places that entry; one naming no entry of the
book is placed by its own `executed_at`, so it still counts; it is also counted as
`unmatched`, with any quote whose `tx_id` is not an `exchange` entry: two sides that agree in
number and amounts then pair each quote with an entry of its own (`tx_id` is unique).
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.exchange.exchanges.service import KIND_EXCHANGE
from app.kit.periods import period_condition

EXECUTED_SQL = """
SELECT r.from_asset, r.to_asset, count(*) AS quotes,
       sum(q.from_amount) AS given, sum(q.to_amount) AS paid,
       count(*) FILTER (WHERE e.kind IS DISTINCT FROM :kind) AS unmatched
  FROM exchange_quotes q
  JOIN exchange_rules r ON r.id = q.rule_id
  LEFT JOIN LATERAL (SELECT e.kind, e.posted_at FROM journal_entries e
                      WHERE e.tx_id = q.tx_id AND e.book_code = :book OFFSET 0) e ON true
 WHERE q.book_code = :book AND q.tx_id IS NOT NULL{organisation}{period}
 GROUP BY r.from_asset, r.to_asset
"""
# The quotes an organisation's pools paid: those of rules whose pool in the book is its own.
# A quote belongs to the period of its entry, or of its own execution if the entry is missing.
PERIOD_COLUMN = "coalesce(e.posted_at, q.executed_at)"
IN_ORGANISATION = """
   AND EXISTS (SELECT 1 FROM exchange_rule_pools p
                WHERE p.rule_id = q.rule_id AND p.book_code = q.book_code
                  AND p.organisation_id = :organisation)"""


@dataclass(frozen=True, slots=True)
class ExecutedExchanges:
    """Executed quotes: how many, what members gave and what pools paid, per asset, and how
    many name no `exchange` entry of the book."""

    count: int
    given: dict[str, int]
    paid: dict[str, int]
    unmatched: int


async def executed(
    session: AsyncSession,
    book: str,
    start: datetime | None,
    end: datetime | None,
    organisation_id: uuid.UUID | None = None,
) -> ExecutedExchanges:
    """The quotes of `book` executed from `start` (inclusive) to `end` (exclusive), each
    optional; with an organisation, only those its pools paid."""
    params: dict[str, Any] = {"book": book, "kind": KIND_EXCHANGE}
    organisation = ""
    if organisation_id is not None:
        organisation = IN_ORGANISATION
        params["organisation"] = organisation_id
    period = period_condition(PERIOD_COLUMN, start, end, params)
    rows = await session.execute(
        text(EXECUTED_SQL.format(organisation=organisation, period=period)), params
    )
    count, unmatched, given, paid = 0, 0, Counter[str](), Counter[str]()
    for row in rows:
        count += int(row.quotes)
        unmatched += int(row.unmatched)
        given[row.from_asset] += int(row.given)
        paid[row.to_asset] += int(row.paid)
    return ExecutedExchanges(
        count, dict(sorted(given.items())), dict(sorted(paid.items())), unmatched
    )
