"""The exchange statistics' flows as running totals (no HTTP): per book, scope, local day, flow
and asset, folded from the journal (`app.ledger.folds`) and read with the entries not folded
yet, in one snapshot.

Each entry of a flow's kind is classified once: a `hold.post` is a kiosk redemption when the
`hold` entry it resolves names one in its `meta.redemption`; a `reversal` counts when the entry
it reverses is of one of the flows (or a redemption). Its day is the local date of its
`posted_at` in the service time zone. It counts for the whole book (scope `''`) and for each
organisation that owns one of the accounts it moves (scope `org:<uuid>`, the accounts' owner),
with its legs on members' and other accounts summed per asset and sign. Days and counts only
add up, so a period's figures are sums of its days' rows, whatever the book's size.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.exchange.exchanges.service import KIND_EXCHANGE
from app.exchange.expiry.service import KIND_EXPIRY
from app.exchange.gifts.service import KIND_GIFT
from app.exchange.public_pool.service import KIND_GRANT
from app.exchange.recognition.transfers import KIND_IN, KIND_OUT
from app.ledger import folds
from app.ledger import service as ledger
from app.ledger.journal import KIND_HOLD, KIND_HOLD_POST, KIND_REVERSAL

# The flows whose entries are of one kind each, by the field that shows them.
KIND_FLOWS = {
    KIND_EXCHANGE: "exchange",
    KIND_GIFT: "gift",
    KIND_OUT: "recognition_out",
    KIND_IN: "recognition_in",
    KIND_GRANT: "public_pool_grant",
    KIND_EXPIRY: "expiry",
}
REDEMPTION, REVERSAL = "kiosk_redemption", "reversal"

# The rows that the entries (:after, :upto] of :book add: per scope, day, flow and asset, and
# per scope, day and flow with asset '' (the entries' count; its sums are 0). For a hold.post
# (or a reversal of one) the hold it resolved is looked up, and only its body parsed; for a
# reversal, what it reversed (in the same book, as every reversal).
FOLD_ROWS = """
WITH entries AS (
    SELECT e.seq, e.posted_at, e.kind, e.reverses, e.resolves_hold
      FROM journal_entries e
     WHERE e.book_code = :book AND e.seq > :after AND e.seq <= :upto
       AND e.kind = ANY(CAST(:kinds AS text[]))
), classified AS (
    SELECT c.seq, CAST(timezone(CAST(:tz AS text), c.posted_at) AS date) AS day,
           CASE
             WHEN c.kind = :hold_post THEN
               CASE WHEN {redeems} THEN CAST(:redemption AS text) END
             WHEN c.kind = :reversal THEN
               CASE WHEN o.kind = ANY(CAST(:flow_kinds AS text[]))
                      OR (o.kind = :hold_post AND {redeems}) THEN CAST(:reversal AS text) END
             ELSE c.kind
           END AS flow
      FROM entries c
      LEFT JOIN LATERAL (
          SELECT o.kind, o.resolves_hold FROM journal_entries o
           WHERE c.kind = :reversal AND o.tx_id = c.reverses AND o.book_code = :book OFFSET 0
      ) o ON true
      LEFT JOIN LATERAL (
          SELECT h.body FROM journal_entries h
           WHERE h.tx_id = coalesce(c.resolves_hold, o.resolves_hold)
             AND h.book_code = :book AND h.kind = :hold OFFSET 0
      ) h ON true
), moved AS (
    SELECT k.seq, k.day, k.flow, l.asset, l.amount, a.owner
      FROM classified k{legs}
     WHERE k.flow IS NOT NULL
), scoped AS (
    SELECT m.*, CAST(:whole_book AS text) AS scope FROM moved m
    UNION ALL
    SELECT m.*, s.scope
      FROM moved m
      JOIN (SELECT DISTINCT seq, owner AS scope FROM moved WHERE owner LIKE 'org:%') s
        ON s.seq = m.seq
)
SELECT scope, day, flow,
       CASE WHEN GROUPING(asset) = 1 THEN '' ELSE asset END AS asset,
       count(DISTINCT seq) AS entries,
       CASE WHEN GROUPING(asset) = 1 THEN 0 ELSE
         coalesce(sum(-amount) FILTER (WHERE amount < 0 AND owner LIKE 'member:%'), 0) END
           AS members_gave,
       CASE WHEN GROUPING(asset) = 1 THEN 0 ELSE
         coalesce(sum(amount) FILTER (WHERE amount > 0 AND owner LIKE 'member:%'), 0) END
           AS members_received,
       CASE WHEN GROUPING(asset) = 1 THEN 0 ELSE
         coalesce(sum(-amount) FILTER (WHERE amount < 0 AND owner NOT LIKE 'member:%'), 0) END
           AS others_gave
  FROM scoped
 GROUP BY GROUPING SETS ((scope, day, flow), (scope, day, flow, asset))
"""
REDEEMS = "(CAST(convert_from(h.body, 'UTF8') AS json) #>> '{meta,redemption}') IS NOT NULL"
FOLD_ROWS_SQL = FOLD_ROWS.format(redeems=REDEEMS, legs=ledger.legs_with_accounts("k.seq"))
COLUMNS = "entries, members_gave, members_received, others_gave"

# Fixed SQL fragments, chosen by `group_by` (never built from input).
PERIOD_KEYS = {"month": "to_char(r.day, 'YYYY-MM')", "day": "to_char(r.day, 'YYYY-MM-DD')"}


def _read_sql(period: str, period_key: str) -> str:
    """The folded days (none when the position is 0: the totals, if any, are cut in another
    time zone) and the entries after the position, in scope and `period`; then per period,
    flow and asset, and the same over the whole scope. `is_count` rows carry the
    entries' count. (Built with f-strings: FOLD_ROWS_SQL holds JSON path braces.)"""
    return f"""
WITH live AS ({FOLD_ROWS_SQL}),
rows AS (
    SELECT day, flow, asset, {COLUMNS} FROM flow_day_totals
     WHERE book_code = :book AND scope = :scope AND :after > 0{period}
    UNION ALL
    SELECT day, flow, asset, {COLUMNS} FROM live WHERE scope = :scope{period}
)
SELECT GROUPING(k.period) = 1 AS is_total, k.asset = '' AS is_count, k.period, k.flow,
       k.asset, sum(k.entries) AS entries, sum(k.members_gave) AS members_gave,
       sum(k.members_received) AS members_received, sum(k.others_gave) AS others_gave
  FROM (SELECT {period_key} AS period, r.* FROM rows r) k
 GROUP BY GROUPING SETS ((k.period, k.flow, k.asset), (k.flow, k.asset))
"""


def fold_params(book: str, timezone: str) -> dict[str, Any]:
    """The parameters of FOLD_ROWS but the range (`after`, `upto`)."""
    flow_kinds = list(KIND_FLOWS)
    return {
        "book": book,
        "tz": timezone,
        "kinds": [*flow_kinds, KIND_HOLD_POST, KIND_REVERSAL],
        "flow_kinds": flow_kinds,
        "hold": KIND_HOLD,
        "hold_post": KIND_HOLD_POST,
        "reversal": KIND_REVERSAL,
        "redemption": REDEMPTION,
        "whole_book": folds.WHOLE_BOOK,
    }


FOLD = folds.Fold(
    name="flows",
    table="flow_day_totals",
    params=fold_params,
    insert_sql=f"""
INSERT INTO flow_day_totals AS t (book_code, scope, day, flow, asset, {COLUMNS})
SELECT :book, f.scope, f.day, f.flow, f.asset, f.entries, f.members_gave, f.members_received,
       f.others_gave
  FROM ({FOLD_ROWS_SQL}) f
    ON CONFLICT (book_code, scope, day, flow, asset) DO UPDATE
   SET entries = t.entries + EXCLUDED.entries,
       members_gave = t.members_gave + EXCLUDED.members_gave,
       members_received = t.members_received + EXCLUDED.members_received,
       others_gave = t.others_gave + EXCLUDED.others_gave
""",
)


async def read_rows(
    session: AsyncSession,
    book: str,
    scope: str,
    span: tuple[date | None, date | None],
    period_key: str,
    timezone: str,
) -> list[Row[Any]]:
    """The flows of `scope` (`''` or an organisation's owner) in the days `span` (each bound
    optional, inclusive), per period (`month` or `day`) and over the span, in the session's
    snapshot: the folded totals plus the entries after them."""
    params, period = await folds.read_params(session, FOLD, book, timezone, scope, span)
    sql = _read_sql(period, PERIOD_KEYS[period_key])
    return list(await session.execute(text(sql), params))
