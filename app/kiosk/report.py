"""A kiosk site's daily report (no HTTP): redemptions, points taken, items out and stock left,
reconciled three ways so that goods and books agree (账物相符).

The day is a calendar day of the service time zone, and a redemption belongs to the day of its
`hold.post` entry's `posted_at` (the journal's time). The report checks that:

- books: the `hold.post` entries of the day that credit the site's redemption accounts are
  exactly the confirmed redemptions of the day, each for its total;
- goods: the stock moves of kind `redemption` of those redemptions take exactly their lines;
- stock: for every item, the moves ever recorded add up to its stock on hand.

Each difference is listed with what disagrees; `reconciled` is true when there is none.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.identity.authorization import org_owner
from app.kiosk.catalogue import Site
from app.kiosk.redemptions import REDEMPTION_ACCOUNT
from app.kiosk.schemas import RedemptionLine
from app.ledger.journal import KIND_HOLD_POST

LEDGER_SQL = """
SELECT e.tx_id::text AS tx_id, l.asset, l.amount
  FROM journal_legs l
  JOIN journal_entries e ON e.book_code = l.book_code AND e.seq = l.seq
  JOIN accounts a ON a.id = l.account_id
 WHERE a.owner = :owner AND a.meta ->> 'purpose' = :purpose AND e.kind = :kind
   AND e.posted_at >= :start AND e.posted_at < :end AND l.amount > 0
"""

REDEMPTIONS_SQL = """
SELECT r.id::text AS id, r.tx_id::text AS tx_id, r.asset, r.total, r.lines
  FROM kiosk_redemptions r
  JOIN journal_entries e ON e.tx_id = r.tx_id
 WHERE r.site_id = :site AND r.status = 'confirmed'
   AND e.posted_at >= :start AND e.posted_at < :end
 ORDER BY e.posted_at, r.id
"""

MOVES_SQL = """
SELECT m.redemption_id::text AS redemption_id, m.item_id::text AS item_id, m.delta
  FROM kiosk_stock_moves m
 WHERE m.kind = 'redemption' AND m.redemption_id = ANY(CAST(:ids AS uuid[]))
"""

STOCK_SQL = """
SELECT i.id::text AS id, i.name, i.asset, i.price, i.stock, i.reserved, i.status,
       (SELECT coalesce(sum(m.delta), 0) FROM kiosk_stock_moves m WHERE m.item_id = i.id)
           AS moved
  FROM kiosk_items i
 WHERE i.site_id = :site
 ORDER BY i.name, i.id
"""


@dataclass(frozen=True, slots=True)
class ReportItem:
    """An item of the site: what went out that day, and its stock now."""

    item_id: str
    name: str
    asset: str
    price: int
    out: int
    stock_left: int | None
    reserved: int
    status: str


@dataclass(frozen=True, slots=True)
class DailyReport:
    """A site's day, and each difference between the journal, the redemptions and the stock
    moves (`reconciled`: none)."""

    site_id: str
    book: str
    date: str
    time_zone: str
    redemptions: int
    taken: dict[str, int]
    items: list[ReportItem]
    reconciled: bool
    differences: list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class _Confirmed:
    """A confirmed redemption of the day, as the report compares it."""

    id: str
    tx_id: str
    asset: str
    total: int
    lines: list[RedemptionLine]


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The instants a service day starts and ends."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    return start, datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)


async def daily_report(session: AsyncSession, site: Site, day: date, zone: ZoneInfo) -> DailyReport:
    """The site's report for one service day."""
    start, end = day_bounds(day, zone)
    span = {"start": start, "end": end}
    ledger_rows = (
        await session.execute(
            text(LEDGER_SQL),
            {
                "owner": org_owner(str(site.id)),
                "purpose": REDEMPTION_ACCOUNT,
                "kind": KIND_HOLD_POST,
                **span,
            },
        )
    ).all()
    redemption_rows = (
        await session.execute(text(REDEMPTIONS_SQL), {"site": site.id, **span})
    ).all()
    redemptions = [
        _Confirmed(row.id, row.tx_id, row.asset, row.total, _lines(row.lines))
        for row in redemption_rows
    ]
    moves = (await session.execute(text(MOVES_SQL), {"ids": [r.id for r in redemptions]})).all()
    stock_rows = (await session.execute(text(STOCK_SQL), {"site": site.id})).all()

    differences: list[dict[str, str]] = []
    posted = {row.tx_id: (row.asset, int(row.amount)) for row in ledger_rows}
    for r in redemptions:
        entry = posted.pop(r.tx_id, None)
        if entry is None:
            differences.append(
                {"redemption_id": r.id, "issue": "confirmed, but no hold.post to the site"}
            )
        elif entry != (r.asset, r.total):
            differences.append(
                {
                    "redemption_id": r.id,
                    "issue": f"the journal posted {entry[1]} {entry[0]}, "
                    f"the redemption totals {r.total} {r.asset}",
                }
            )
    for tx_id, (asset, amount) in sorted(posted.items()):
        differences.append(
            {"tx_id": tx_id, "issue": f"hold.post of {amount} {asset} with no redemption"}
        )
    taken: dict[tuple[str, str], int] = {}
    for move in moves:
        key = (move.redemption_id, move.item_id)
        taken[key] = taken.get(key, 0) - int(move.delta)
    items_out: dict[str, int] = {}
    for r in redemptions:
        for line in r.lines:
            item_id = str(line.item_id)
            items_out[item_id] = items_out.get(item_id, 0) + line.quantity
            moved = taken.pop((r.id, item_id), 0)
            if moved != line.quantity:
                differences.append(
                    {
                        "redemption_id": r.id,
                        "item_id": item_id,
                        "issue": f"{line.quantity} redeemed, {moved} taken from stock",
                    }
                )
    for (redemption_id, item_id), moved in sorted(taken.items()):
        differences.append(
            {
                "redemption_id": redemption_id,
                "item_id": item_id,
                "issue": f"{moved} taken from stock for no line",
            }
        )
    items = []
    for row in stock_rows:
        if row.stock is not None and int(row.moved) != row.stock:
            differences.append(
                {
                    "item_id": row.id,
                    "issue": f"{row.stock} on hand, the moves add up to {row.moved}",
                }
            )
        items.append(
            ReportItem(
                row.id,
                row.name,
                row.asset,
                row.price,
                items_out.get(row.id, 0),
                row.stock,
                row.reserved,
                row.status,
            )
        )
    points: dict[str, int] = {}
    for r in redemptions:
        points[r.asset] = points.get(r.asset, 0) + r.total
    return DailyReport(
        str(site.id),
        site.book,
        day.isoformat(),
        zone.key,
        len(redemptions),
        dict(sorted(points.items())),
        items,
        not differences,
        differences,
    )


def _lines(value: str | list[dict[str, object]]) -> list[RedemptionLine]:
    """A redemption's lines as stored (jsonb: decoded by the driver, or its text)."""
    lines = json.loads(value) if isinstance(value, str) else value
    return [RedemptionLine.model_validate(line) for line in lines]


CSV_COLUMNS = ("date", "item_id", "name", "asset", "price", "out", "stock_left", "reserved")


# Spreadsheets (Excel first) read a CSV as UTF-8 only when it starts with a BOM; without one,
# Chinese item names show as garbage. The export's CSV starts with one too.
BOM = "\ufeff"


def report_csv(report: DailyReport) -> str:
    """The report's items as CSV (after a UTF-8 BOM), then a summary row per asset and the
    reconciliation."""
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for item in report.items:
        cells = (getattr(item, column) for column in CSV_COLUMNS[1:])
        writer.writerow([report.date, *("" if cell is None else cell for cell in cells)])
    writer.writerow([])
    writer.writerow(["date", "redemptions", "asset", "taken", "reconciled", "differences"])
    taken: list[tuple[str, int]] = list(report.taken.items()) or [("", 0)]
    for asset, amount in taken:
        writer.writerow(
            [
                report.date,
                report.redemptions,
                asset,
                amount,
                str(report.reconciled).lower(),
                "; ".join(d["issue"] for d in report.differences),
            ]
        )
    return out.getvalue()
