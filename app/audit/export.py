"""The auditor's export of a range of a book: JSON Lines (with or without receipts) and the
checkpoint that covers it, or CSV for spreadsheets (docs/audit-format.md §8). Streamed in
constant memory."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import merkle, schemas, tlog
from app.audit.errors import BeyondLogSize
from app.audit.receipting import receipt_claims, sign_claims
from app.audit.service import AuditLog, checkpoint_read, heads_of, invalid
from app.kit import deep_json
from app.kit.canonical_json import canonical_bytes, compact_json
from app.kit.pg_pool import acquire
from app.ledger import service as ledger

CHUNK = 2000
BOM = "\ufeff"
CSV_COLUMNS = (
    "book",
    "seq",
    "tx_id",
    "posted_at",
    "kind",
    "leg_index",
    "account_id",
    "asset",
    "amount",
    "memo",
    "meta",
    "entry_hash",
)
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class ExportPlan:
    """What an export covers, decided before its first byte is sent."""

    book: str
    from_seq: int
    to_seq: int
    checkpoint: tlog.SignedCheckpoint | None
    receipts: bool = True


async def plan_export(
    audit: AuditLog,
    book: str,
    from_seq: int,
    to_seq: int | None,
    with_checkpoint: bool,
    receipts: bool = True,
) -> ExportPlan:
    """Check the range against the book's journal; for JSON Lines, find (or sign) the
    checkpoint that covers it. `receipts`: whether JSON Lines carry each entry's receipt."""
    heads = await audit.heads(book)
    last = heads.journal_seq if to_seq is None else to_seq
    if last > heads.journal_seq:
        raise BeyondLogSize(book, "to_seq", last, heads.journal_seq, heads.tree_size)
    if from_seq > last + 1 or (from_seq > last and last > 0):
        raise invalid("from_seq", f"from_seq must be between 1 and to_seq ({last})")
    checkpoint = await audit.covering(book, last, "to_seq") if with_checkpoint else None
    return ExportPlan(book, from_seq, last, checkpoint, receipts)


async def _entries(
    conn: asyncpg.Connection, plan: ExportPlan
) -> AsyncIterator[list[asyncpg.Record]]:
    start = plan.from_seq
    while start <= plan.to_seq:
        rows = await conn.fetch(
            "SELECT seq, body, entry_hash FROM journal_entries WHERE book_code = $1 "
            "AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $4",
            plan.book,
            start,
            plan.to_seq,
            CHUNK,
        )
        if not rows:
            return
        yield rows
        start = rows[-1]["seq"] + 1


async def holds(session: AsyncSession, plan: ExportPlan) -> bool:
    """Whether a copy of the database (a standby) holds all an export needs: its entries and,
    for JSON Lines, the stored subtrees of its checkpoint's tree. A copy that does gives the
    same bytes as the primary (entries and subtrees never change once written)."""
    heads = await heads_of(await ledger.driver_connection(session), plan.book)
    if heads is None:
        return False
    tree_size = plan.checkpoint.tree_size if plan.checkpoint is not None else 0
    return heads.journal_seq >= plan.to_seq and heads.tree_size >= tree_size


async def jsonl(
    audit: AuditLog,
    plan: ExportPlan,
    connection: AbstractAsyncContextManager[asyncpg.Connection] | None = None,
) -> AsyncIterator[bytes]:
    """Entry lines (the entry's JCS bytes, its hash and, if planned, its receipt), then the
    trailer line, read on `connection` (default: one of the log's pool)."""
    if plan.checkpoint is None:
        raise ValueError("a JSON Lines export needs its checkpoint")
    async with connection or acquire(audit.pool) as conn:
        async for rows in _entries(conn, plan):
            if not plan.receipts:
                yield _bare_lines(rows)
                continue
            out = bytearray()
            for row in rows:
                body = bytes(row["body"])
                claims = receipt_claims(deep_json.loads(body), body, row["entry_hash"])
                _, signer = await audit.ring.key_at(claims["iat"])
                receipt = sign_claims(claims, signer)
                out += b'{"entry":' + body + b',"entry_hash":"' + row["entry_hash"].encode()
                out += b'","receipt":"' + receipt.encode() + b'"}\n'
            yield bytes(out)
        trailer = await _trailer(audit, conn, plan)
        yield compact_json(trailer.model_dump(exclude_none=True)) + b"\n"


def _bare_lines(rows: list[asyncpg.Record]) -> bytes:
    """`{"entry":...,"entry_hash":"..."}` lines: the stored JCS bytes are written as they are."""
    return b"".join(
        b'{"entry":%b,"entry_hash":"%b"}\n' % (row["body"], row["entry_hash"].encode())
        for row in rows
    )


async def _trailer(
    audit: AuditLog, conn: asyncpg.Connection, plan: ExportPlan
) -> schemas.ExportTrailer:
    checkpoint = plan.checkpoint
    if checkpoint is None:
        raise ValueError("a JSON Lines export needs its checkpoint")
    size = checkpoint.tree_size
    before = plan.from_seq - 1

    def prove(sh: merkle.SubtreeHash) -> tuple[list[bytes], list[bytes]]:
        prefix = [sh(i << level, (i + 1) << level) for level, i in merkle.peaks(before)]
        return prefix, merkle.consistency_proof(plan.to_seq, size, sh)

    prefix, consistency = await tlog.from_stored(conn, plan.book, prove)
    return schemas.ExportTrailer(
        checkpoint=checkpoint_read(checkpoint),
        from_seq=plan.from_seq,
        to_seq=plan.to_seq,
        prefix=[h.hex() for h in prefix],
        consistency=[h.hex() for h in consistency],
        jwks=await audit.jwks(),
    )


def _cell(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_START) else text


async def csv_rows(
    plan: ExportPlan, connection: AbstractAsyncContextManager[asyncpg.Connection]
) -> AsyncIterator[bytes]:
    """UTF-8 with a byte order mark, a header, then one row per leg (one row with empty leg
    cells for an entry without legs), read on `connection`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write(BOM)
    writer.writerow(CSV_COLUMNS)
    async with connection as conn:
        async for rows in _entries(conn, plan):
            for row in rows:
                entry = deep_json.loads(bytes(row["body"]))
                common = [entry["book"], entry["seq"], entry["tx_id"], entry["posted_at"]]
                tail = [
                    _cell(entry["memo"]),
                    canonical_bytes(entry["meta"]).decode("utf-8"),
                    row["entry_hash"],
                ]
                legs = entry["legs"] or [None]
                for index, leg in enumerate(legs):
                    cells: list[Any] = ["", "", "", ""]
                    if leg is not None:
                        cells = [index, leg["account_id"], leg["asset"], leg["amount"]]
                    writer.writerow([*common, entry["kind"], *cells, *tail])
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")
