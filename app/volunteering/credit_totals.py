"""The journal's side of the service statistics as running totals (no HTTP): minutes credited
as service, and minutes their reversals took back, per book, scope and service day, folded
from the journal (`app.ledger.folds`) and read with the entries not folded yet.

Credited minutes are the HOUR legs of `service_credit` entries on member accounts and on the
book's public time pool (where a storage cap sends what a credit would carry beyond it: the
record's minutes are certified all the same); a `reversal` of such an entry takes back its own
such legs, counted on the credit's day and scopes; a `service_correction` of such an entry
(`meta.credit`, docs/volunteering.md §6.1) takes back all of its credited legs, there too,
since its record no longer stands whatever the member still held. A credit's day is the
`service_day` of the record its `meta.record` names (in the same book, whatever its status);
a credit naming no record of the book (or naming it other than as a lowercase UUID, as
approval writes it) is placed on the local day it was posted, so it still counts. A credit
counts for the whole book (scope `''`) and for each organisation owning an account it debits
(`org:<uuid>`).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.exchange.accounts import PUBLIC_POOL, book_owner
from app.ledger import folds
from app.ledger import service as ledger
from app.ledger.journal import KIND_REVERSAL, KIND_SERVICE_CORRECTION, KIND_SERVICE_CREDIT

UUID_TEXT = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

# A member's account, or the book's public time pool (overflow of a storage cap).
CREDITED_ACCOUNT = (
    "(a.owner LIKE 'member:%' OR (a.owner = :book_owner AND a.meta ->> 'purpose' = :pool))"
)
CREDIT_LEGS = ledger.legs_with_accounts("p.c_seq")
LEGS = ledger.legs_with_accounts("s.l_seq")
# The rows that the entries (:after, :upto] of :book add, per scope and day. Each credit,
# each reversal of a credit and each correction of one is placed by the credit (`c`): its
# record's day, its debits' owners. A reversal takes back its own legs (`l_seq`, negated); a
# correction takes back the whole credit (the credit's own legs), whatever part of it was
# owed or written off rather than taken from the accounts. The record is looked up by key
# only when the reference is a lowercase UUID, so that no reference can make the cast fail.
FOLD_ROWS = f"""
WITH moves AS (
    SELECT e.seq, true AS credits, e.seq AS c_seq, e.seq AS l_seq, 1 AS sign, e.body AS c_body,
           e.posted_at AS c_posted
      FROM journal_entries e
     WHERE e.book_code = :book AND e.seq > :after AND e.seq <= :upto AND e.kind = :credit_kind
    UNION ALL
    SELECT v.seq, false, c.seq, v.seq, -1, c.body, c.posted_at
      FROM journal_entries v
      CROSS JOIN LATERAL (
          SELECT c.seq, c.body, c.posted_at FROM journal_entries c
           WHERE c.tx_id = v.reverses AND c.book_code = :book AND c.kind = :credit_kind
          OFFSET 0) c
     WHERE v.book_code = :book AND v.seq > :after AND v.seq <= :upto
       AND v.kind = :reversal_kind
    UNION ALL
    SELECT k.seq, false, c.seq, c.seq, 1, c.body, c.posted_at
      FROM journal_entries k
      CROSS JOIN LATERAL (
          SELECT CAST(convert_from(k.body, 'UTF8') AS json) #>> '{{meta,credit}}' AS credit
          OFFSET 0) m
      CROSS JOIN LATERAL (
          SELECT c.seq, c.body, c.posted_at FROM journal_entries c
           WHERE c.tx_id = CAST(CASE WHEN m.credit ~ '{UUID_TEXT}' THEN m.credit END AS uuid)
             AND c.book_code = :book AND c.kind = :credit_kind AND c.seq < k.seq
          OFFSET 0) c
     WHERE k.book_code = :book AND k.seq > :after AND k.seq <= :upto
       AND k.kind = :correction_kind
), referenced AS (
    SELECT m.seq, m.credits, m.c_seq, m.l_seq, m.sign, m.c_posted,
           CAST(convert_from(m.c_body, 'UTF8') AS json) #>> '{{meta,record}}' AS record
      FROM moves m
), placed AS (
    SELECT p.seq, p.credits, p.c_seq, p.l_seq, p.sign,
           coalesce(r.service_day, CAST(timezone(CAST(:tz AS text), p.c_posted) AS date)) AS day
      FROM referenced p
      LEFT JOIN LATERAL (
          SELECT r.service_day FROM service_records r
           WHERE r.id = CAST(CASE WHEN p.record ~ '{UUID_TEXT}' THEN p.record END AS uuid)
             AND r.book_code = :book
          OFFSET 0) r ON true
), scoped AS (
    SELECT p.seq, p.credits, p.l_seq, p.sign, p.day, CAST(:whole_book AS text) AS scope
      FROM placed p
    UNION
    SELECT p.seq, p.credits, p.l_seq, p.sign, p.day, a.owner FROM placed p{CREDIT_LEGS}
     WHERE l.amount < 0 AND a.owner LIKE 'org:%'
)
SELECT s.scope, s.day,
       coalesce(sum(l.amount) FILTER (WHERE s.credits), 0) AS credited,
       coalesce(sum(s.sign * l.amount) FILTER (WHERE NOT s.credits), 0) AS reversed
  FROM scoped s{LEGS}
 WHERE a.asset = 'HOUR' AND {CREDITED_ACCOUNT}
 GROUP BY s.scope, s.day
"""


def fold_params(book: str, timezone: str) -> dict[str, Any]:
    """The parameters of FOLD_ROWS but the range (`after`, `upto`)."""
    return {
        "book": book,
        "tz": timezone,
        "credit_kind": KIND_SERVICE_CREDIT,
        "reversal_kind": KIND_REVERSAL,
        "correction_kind": KIND_SERVICE_CORRECTION,
        "book_owner": book_owner(book),
        "pool": PUBLIC_POOL,
        "whole_book": folds.WHOLE_BOOK,
    }


FOLD = folds.Fold(
    name="service_credits",
    table="service_credit_day_totals",
    params=fold_params,
    insert_sql=f"""
INSERT INTO service_credit_day_totals AS t (book_code, scope, day, credited, reversed)
SELECT :book, f.scope, f.day, f.credited, f.reversed FROM ({FOLD_ROWS}) f
    ON CONFLICT (book_code, scope, day) DO UPDATE
   SET credited = t.credited + EXCLUDED.credited, reversed = t.reversed + EXCLUDED.reversed
""",
)


def _read_sql(period: str) -> str:
    """The folded days (none when the position is 0: the totals, if any, are cut in another
    time zone) and the entries after the position, in scope and `period`, summed."""
    return f"""
WITH live AS ({FOLD_ROWS})
SELECT coalesce(sum(credited), 0) AS credited, coalesce(sum(reversed), 0) AS reversed
  FROM (SELECT day, credited, reversed FROM service_credit_day_totals
         WHERE book_code = :book AND scope = :scope AND :after > 0
        UNION ALL
        SELECT day, credited, reversed FROM live WHERE scope = :scope) t
 WHERE true{period}
"""


async def credited_minutes(
    session: AsyncSession,
    book: str,
    scope: str,
    span: tuple[date | None, date | None],
    timezone: str,
) -> tuple[int, int]:
    """Minutes credited as service in `scope` (`''` or an organisation's owner) on the
    service days `span` (each bound optional, inclusive), and what reversals took back of
    them: the folded totals plus the entries after them, in the session's snapshot."""
    params, period = await folds.read_params(session, FOLD, book, timezone, scope, span)
    row = (await session.execute(text(_read_sql(period)), params)).one()
    return int(row.credited), int(row.reversed)
