"""Reconciliation of the books' clearing accounts for each other (no HTTP).

With a 1:1 ratio and one asset, A's clearing account for B plus B's clearing account for A is
always zero. `reconcile` checks, from the journal itself and in one snapshot, that each
clearing balance is exactly what the linked recognition entries put in it, that every entry's
counterpart names it back, and that the transfers table agrees with the journal.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.exchange.accounts import CLEARING_PREFIX
from app.exchange.ratios import convert
from app.exchange.recognition import schemas
from app.exchange.recognition.transfers import KIND_IN, KIND_OUT
from app.http.caller import Caller
from app.identity.authorization import require_book

ENTRIES_SQL = f"""
SELECT e.book_code AS book, e.seq, e.tx_id::text AS tx_id, e.kind,
       (convert_from(e.body, 'UTF8')::jsonb -> 'meta')::text AS meta,
       (SELECT coalesce(json_agg(json_build_object(
                   'account', l.account_id::text, 'asset', l.asset, 'amount', l.amount,
                   'other', substr(a.meta ->> 'purpose', {len(CLEARING_PREFIX) + 1}))
                   ORDER BY l.leg_index), '[]')::text
          FROM journal_legs l JOIN accounts a ON a.id = l.account_id
         WHERE l.book_code = e.book_code AND l.seq = e.seq
           AND a.owner = 'book:' || e.book_code
           AND a.meta ->> 'purpose' LIKE '{CLEARING_PREFIX}%') AS clearing
  FROM journal_entries e
 WHERE e.kind IN ('{KIND_OUT}', '{KIND_IN}')
   AND (CAST(:books AS text[]) IS NULL OR e.book_code = ANY(CAST(:books AS text[])))
"""

CLEARING_SQL = f"""
SELECT id::text AS id, book_code AS book, asset, posted,
       substr(meta ->> 'purpose', {len(CLEARING_PREFIX) + 1}) AS other
  FROM accounts
 WHERE owner LIKE 'book:%' AND owner = 'book:' || book_code
   AND meta ->> 'purpose' LIKE '{CLEARING_PREFIX}%'
"""

RECORDED_SQL = """
SELECT agreement_id::text AS agreement, count(*) AS transfers,
       coalesce(sum(from_amount), 0) AS from_amount, coalesce(sum(to_amount), 0) AS to_amount
  FROM recognition_transfers GROUP BY agreement_id
"""


@dataclass(slots=True)
class _Entry:
    book: str
    seq: int
    tx_id: str
    kind: str
    meta: dict[str, Any]
    clearing: list[dict[str, Any]]
    other: str | None = None  # the other book, when it can be told
    problems: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Totals:
    transfers: int = 0
    from_amount: int = 0
    to_amount: int = 0

    def add(self, other: _Totals) -> None:
        self.transfers += other.transfers
        self.from_amount += other.from_amount
        self.to_amount += other.to_amount

    def model(self) -> schemas.Totals:
        return schemas.Totals(
            transfers=self.transfers, from_amount=self.from_amount, to_amount=self.to_amount
        )


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def _check_entry(
    entry: _Entry, entries: dict[tuple[str, int], _Entry], agreements: dict[str, Any]
) -> None:
    """Record in `entry.problems` why it is not one half of a well-formed linked pair."""
    agreement = agreements.get(str(entry.meta.get("agreement")))
    counterpart = entry.meta.get("counterpart")
    outgoing = entry.kind == KIND_OUT
    if agreement is None:
        entry.problems.append("names no recognition agreement")
        if isinstance(counterpart, dict) and isinstance(counterpart.get("book"), str):
            entry.other = counterpart["book"]
        elif entry.clearing:
            entry.other = entry.clearing[0]["other"]
        return
    own, entry.other, asset = (
        (agreement.from_book, agreement.to_book, agreement.from_asset)
        if outgoing
        else (agreement.to_book, agreement.from_book, agreement.to_asset)
    )
    if entry.book != own:
        entry.problems.append(f"its agreement does not post {entry.kind} in this book")
        entry.other = None
        return
    legs = [leg for leg in entry.clearing if leg["other"] == entry.other]
    if (
        len(entry.clearing) != 1
        or len(legs) != 1
        or legs[0]["asset"] != asset
        or (legs[0]["amount"] > 0) != outgoing
    ):
        entry.problems.append("its clearing leg is missing, doubled, of another asset or reversed")
    if not isinstance(counterpart, dict):
        entry.problems.append("names no counterpart")
        return
    seq = counterpart.get("seq")
    target = entries.get((str(counterpart.get("book")), seq)) if isinstance(seq, int) else None
    if (
        target is None
        or target.tx_id != counterpart.get("tx_id")
        or target.book != entry.other
        or target.kind != (KIND_IN if outgoing else KIND_OUT)
    ):
        entry.problems.append("its counterpart is not a recognition entry of the other book")
        return
    back = target.meta.get("counterpart")
    if back != {"book": entry.book, "seq": entry.seq, "tx_id": entry.tx_id}:
        entry.problems.append("its counterpart does not name it back")
    if target.meta.get("agreement") != entry.meta.get("agreement") or target.meta.get(
        "transfer"
    ) != entry.meta.get("transfer"):
        entry.problems.append("its counterpart names another agreement or transfer")
    if outgoing and len(entry.clearing) == 1 and len(target.clearing) == 1:
        sent, received = entry.clearing[0]["amount"], -target.clearing[0]["amount"]
        if received != convert(sent, agreement.ratio_num, agreement.ratio_den):
            entry.problems.append("its counterpart's amount is not the agreement's ratio of it")


def _clearing(account: dict[str, Any] | None, book: str, asset: str | None) -> schemas.Clearing:
    if account is None:
        return schemas.Clearing(book=book, asset=asset, account_id=None, posted=0, implied=0)
    return schemas.Clearing.model_validate(
        {
            "book": book,
            "asset": asset,
            "account_id": account["id"],
            "posted": account["posted"],
            "implied": account["implied"],
        }
    )


async def _snapshot(session: AsyncSession) -> None:
    """Read everything in one snapshot, when this is the transaction's first statement."""
    if not session.in_transaction():
        await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))


async def reconcile(
    session: AsyncSession, caller: Caller, book: str | None = None
) -> schemas.Reconciliation:
    """Per pair of books (one of which the caller reaches, or `book`) and asset pair: both
    clearing balances, the transfers each way (journal and table), and whether they mirror."""
    if book is not None:
        require_book(caller, book, f"book {book!r}")
    scope = book or caller.book

    def in_scope(pair: Iterable[str]) -> bool:
        return scope is None or scope in pair

    await _snapshot(session)
    agreements = {
        str(row.id): row
        for row in await session.execute(text("SELECT * FROM recognition_agreements"))
    }
    accounts = {
        (row.book, row.other, row.asset): {**row._asdict(), "implied": 0}
        for row in await session.execute(text(CLEARING_SQL))
    }
    pairs: set[tuple[str, str]] = {_pair(a.from_book, a.to_book) for a in agreements.values()}
    pairs |= {_pair(b, other) for b, other, _ in accounts if b != other}
    pairs = {p for p in pairs if in_scope(p)}
    books = sorted({b for p in pairs for b in p} | ({scope} if scope else set()))
    rows = await session.execute(text(ENTRIES_SQL), {"books": None if scope is None else books})
    entries = {
        (r.book, r.seq): _Entry(
            r.book, r.seq, r.tx_id, r.kind, json.loads(r.meta) or {}, json.loads(r.clearing)
        )
        for r in rows
    }
    journal: dict[str, dict[str, _Totals]] = defaultdict(lambda: defaultdict(_Totals))
    unplaced: list[schemas.Unmatched] = []
    unmatched: dict[tuple[str, str], list[schemas.Unmatched]] = defaultdict(list)
    for entry in entries.values():
        _check_entry(entry, entries, agreements)
        for leg in entry.clearing:
            account = accounts.get((entry.book, leg["other"], leg["asset"]))
            if account is not None:
                account["implied"] += leg["amount"]
        agreement = str(entry.meta.get("agreement"))
        if agreement in agreements and entry.other is not None:
            amount = sum(leg["amount"] for leg in entry.clearing if leg["other"] == entry.other)
            totals = journal[agreement]["out" if entry.kind == KIND_OUT else "in"]
            totals.transfers += 1
            if entry.kind == KIND_OUT:
                totals.from_amount += amount
            else:
                totals.to_amount -= amount
        for problem in entry.problems:
            item = schemas.Unmatched.model_validate(
                {
                    "book": entry.book,
                    "seq": entry.seq,
                    "tx_id": entry.tx_id,
                    "kind": entry.kind,
                    "reason": problem,
                }
            )
            if entry.other is None or entry.other == entry.book:
                unplaced.append(item)
            else:
                pair = _pair(entry.book, entry.other)
                if in_scope(pair):
                    pairs.add(pair)
                unmatched[pair].append(item)
    recorded = {
        row.agreement: _Totals(row.transfers, row.from_amount, row.to_amount)
        for row in await session.execute(text(RECORDED_SQL))
    }
    heads = {
        row.book_code: schemas.Head(seq=row.seq, entry_hash=row.entry_hash)
        for row in await session.execute(
            text(
                "SELECT book_code, seq, entry_hash FROM book_heads "
                "WHERE book_code = ANY(CAST(:books AS text[])) ORDER BY book_code"
            ),
            {"books": sorted({b for p in pairs for b in p} | set(books))},
        )
    }
    report_pairs = [
        _pair_report(a, b, agreements, accounts, journal, recorded, unmatched[(a, b)])
        for a, b in sorted(pairs)
    ]
    return schemas.Reconciliation(
        heads=heads,
        pairs=report_pairs,
        unplaced=unplaced,
        mirrored=not unplaced and all(p.mirrored for p in report_pairs),
        recorded_matches=all(p.recorded_matches for p in report_pairs),
    )


def _pair_report(
    a: str,
    b: str,
    agreements: dict[str, Any],
    accounts: dict[tuple[str, str, str], dict[str, Any]],
    journal: dict[str, dict[str, _Totals]],
    recorded: dict[str, _Totals],
    unmatched: list[schemas.Unmatched],
) -> schemas.PairReconciliation:
    """One pair of books, A < B: a row per asset pair (A's asset, B's asset)."""
    # Which asset pairs: every agreement between A and B, and every clearing account of one
    # for the other that no agreement explains.
    asset_pairs: set[tuple[str | None, str | None]] = set()
    for ag in agreements.values():
        if (ag.from_book, ag.to_book) == (a, b):
            asset_pairs.add((ag.from_asset, ag.to_asset))
        elif (ag.from_book, ag.to_book) == (b, a):
            asset_pairs.add((ag.to_asset, ag.from_asset))
    a_assets = {x for x, _ in asset_pairs}
    b_assets = {y for _, y in asset_pairs}
    for book, other, asset in accounts:
        if (book, other) == (a, b) and asset not in a_assets:
            asset_pairs.add((asset, None))
        elif (book, other) == (b, a) and asset not in b_assets:
            asset_pairs.add((None, asset))
    # How many rows each clearing account appears in: the journal formula below is exact only
    # for an account that serves one asset pair.
    uses: dict[tuple[str, str | None], int] = defaultdict(int)
    for x, y in asset_pairs:
        uses[(a, x)] += 1
        uses[(b, y)] += 1

    rows = []
    for x, y in sorted(asset_pairs, key=lambda p: (p[0] or "", p[1] or "")):
        ab = _flow(a, x, b, y, agreements, journal, recorded)
        ba = _flow(b, y, a, x, agreements, journal, recorded)
        a_clearing = _clearing(accounts.get((a, b, x)) if x else None, a, x)
        b_clearing = _clearing(accounts.get((b, a, y)) if y else None, b, y)
        # Each clearing balance is what the recognition entries put in it (nothing else
        # touched it), every out entry has its in entry, and, for an account that serves this
        # asset pair alone: A's clearing for B = sent A→B − received B→A (in A's units), B's
        # clearing for A = −received A→B + sent B→A (in B's units).
        mirrored = (
            all(c.posted == c.implied for c in (a_clearing, b_clearing))
            and ab.sent.transfers == ab.received_entries
            and ba.sent.transfers == ba.received_entries
            and (uses[(a, x)] > 1 or a_clearing.posted == ab.sent.from_amount - ba.sent.to_amount)
            and (uses[(b, y)] > 1 or b_clearing.posted == ba.sent.from_amount - ab.sent.to_amount)
        )
        rows.append(
            schemas.AssetPairReconciliation(
                a_asset=x,
                b_asset=y,
                a_clearing=a_clearing,
                b_clearing=b_clearing,
                a_to_b=ab.model(),
                b_to_a=ba.model(),
                mirrored=mirrored,
                recorded_matches=ab.sent == ab.recorded and ba.sent == ba.recorded,
            )
        )
    return schemas.PairReconciliation(
        books=[a, b],
        assets=rows,
        unmatched=unmatched,
        mirrored=not unmatched and all(r.mirrored for r in rows),
        recorded_matches=all(r.recorded_matches for r in rows),
    )


@dataclass(slots=True)
class _Flow:
    """Transfers one way for one asset pair: from the journal and from the table."""

    from_book: str
    from_asset: str | None
    to_book: str
    to_asset: str | None
    sent: _Totals  # out entries: count, amounts of their clearing legs; to_amount from ins
    received_entries: int  # how many in entries
    recorded: _Totals

    def model(self) -> schemas.Flow:
        return schemas.Flow(
            from_book=self.from_book,
            from_asset=self.from_asset,
            to_book=self.to_book,
            to_asset=self.to_asset,
            journal=self.sent.model(),
            recorded=self.recorded.model(),
        )


def _flow(
    src: str,
    src_asset: str | None,
    dst: str,
    dst_asset: str | None,
    agreements: dict[str, Any],
    journal: dict[str, dict[str, _Totals]],
    recorded: dict[str, _Totals],
) -> _Flow:
    flow = _Flow(src, src_asset, dst, dst_asset, _Totals(), 0, _Totals())
    for key, ag in agreements.items():
        if (ag.from_book, ag.from_asset, ag.to_book, ag.to_asset) != (
            src,
            src_asset,
            dst,
            dst_asset,
        ):
            continue
        out, into = journal[key]["out"], journal[key]["in"]
        flow.sent.add(_Totals(out.transfers, out.from_amount, into.to_amount))
        flow.received_entries += into.transfers
        flow.recorded.add(recorded.get(key, _Totals()))
    return flow
