"""The log asks each book's witnesses to cosign its latest checkpoint (C2SP tlog-witness,
docs/witness.md): a witness is sent the checkpoint with a consistency proof from the size it
last cosigned, answers with a cosignature line, and that line is stored and served with the
checkpoint from then on.

Each (book, witness) is asked on its own, after claiming its `book_witnesses` row with a lease
(so two processes never ask one witness for one book at once, and no database connection is
held while the witness answers) and within a timeout, so a witness
that is down delays nothing but its own cosignature: it is asked again, with backoff, from
the size it last cosigned. A 409 tells the size the witness holds; the request is made once
more from there. Any other refusal (400, 403, 404, 422) says the witness does not accept this
log's history: an alarm, logged at error level, counted, and kept on the row (the console's
Integrity screen shows it) until the witness cosigns again.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import httpx
import structlog
from prometheus_client import Counter, Gauge

from app.audit import merkle, tlog
from app.audit.cosignature import Cosigner, parse_cosigner_key, timestamp_of
from app.audit.note import NoteError, open_note
from app.kit.pg_pool import acquire

log = structlog.get_logger("timebank.audit")

REQUEST_TIMEOUT_S = 5.0
# A refused checkpoint is offered again after this long (the operator may have fixed the
# witness's configuration); an unreachable witness is retried with backoff up to it.
RETRY_REFUSED_S = 300.0
MAX_BACKOFF_S = 300.0
SIZE_CONTENT_TYPE = "text/x.tlog.size"
MAX_RESPONSE = 64 * 1024

COSIGNATURES = Counter(
    "timebank_witness_cosignatures_total", "Cosignatures received", ["book", "witness"]
)
REFUSALS = Counter(
    "timebank_witness_refusals_total",
    "Checkpoints a witness refused (alarm: any status but 409)",
    ["book", "witness", "status"],
)
UNREACHABLE = Counter(
    "timebank_witness_unreachable_total", "Requests to a witness that got no answer", ["witness"]
)
# Set from the database when metrics are scraped (`refresh_gauges`), so that every process
# shows them, whichever process asked the witness.
COSIGNED_SIZE = Gauge(
    "timebank_witness_cosigned_size",
    "The tree size each witness last cosigned",
    ["book", "witness"],
    multiprocess_mode="mostrecent",
)
ALARM = Gauge(
    "timebank_witness_alarm",
    "1 while a witness refuses the book's checkpoints (alert on it), else 0",
    ["book", "witness"],
    multiprocess_mode="mostrecent",
)

DUE = """
SELECT w.book_code, w.name, w.vkey, w.url, c.tree_size, c.note
  FROM book_witnesses w
  CROSS JOIN LATERAL (SELECT k.tree_size, k.note FROM checkpoints k
                       WHERE k.book_code = w.book_code
                       ORDER BY k.tree_size DESC LIMIT 1) c
 WHERE w.due_at <= now()
   AND NOT EXISTS (SELECT 1 FROM checkpoint_cosignatures s
                    WHERE s.book_code = w.book_code AND s.tree_size = c.tree_size
                      AND s.witness = w.name)
 ORDER BY w.book_code, w.name
"""
# Claiming a witness moves its due time past the longest a request may take: a process that
# dies while asking leaves the lease to run out, and the witness is asked again.
CLAIM = """
UPDATE book_witnesses SET due_at = now() + make_interval(secs => $3)
 WHERE book_code = $1 AND name = $2 AND due_at <= now()
RETURNING cosigned_size, failures
"""
LEASE_S = 4 * REQUEST_TIMEOUT_S


@dataclass(frozen=True)
class Due:
    """A witness that has not cosigned its book's latest checkpoint."""

    book: str
    name: str
    cosigner: Cosigner
    url: str
    tree_size: int
    note: str


@dataclass(frozen=True)
class Answer:
    """What one request to a witness came to."""

    status: int | None  # None: no answer
    body: str


class Refused(Exception):
    """The witness does not accept this checkpoint from the size it holds."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail = status, detail


class Unreachable(Exception):
    """No usable answer: the witness is down, slow, or answered what the protocol does not."""


def request_body(old: int, proof: list[bytes], note: str) -> str:
    """An add-checkpoint request: the old size, the proof lines, a blank line, the note."""
    lines = "".join(base64.b64encode(h).decode() + "\n" for h in proof)
    return f"old {old}\n{lines}\n{note}"


async def post(client: httpx.AsyncClient, url: str, body: str) -> Answer:
    """POST an add-checkpoint body; the status and (bounded) text of the answer."""
    try:
        async with client.stream(
            "POST",
            url.rstrip("/") + "/add-checkpoint",
            content=body.encode(),
            timeout=REQUEST_TIMEOUT_S,
        ) as response:
            raw = b""
            async for chunk in response.aiter_bytes():
                raw += chunk
                if len(raw) > MAX_RESPONSE:
                    raise Unreachable("the answer is too large")
            text = raw.decode("utf-8", errors="replace")
            if response.status_code == 409:
                kind = response.headers.get("content-type", "").split(";")[0].strip()
                if kind != SIZE_CONTENT_TYPE:
                    raise Unreachable(f"409 without {SIZE_CONTENT_TYPE}")
            return Answer(response.status_code, text)
    except httpx.HTTPError as exc:
        raise Unreachable(f"{type(exc).__name__}: {exc}") from None


def cosignature_line(due: Due, body: str) -> tuple[str, datetime]:
    """The witness's own verified line in a 200 answer (lines of unknown keys are ignored), and
    the time it states."""
    for line in body.splitlines(keepends=True):
        if not line.endswith("\n"):
            continue
        try:
            _, signatures = open_note(due.note + line, [due.cosigner])
        except NoteError:
            continue
        try:
            # A witness may state any time below 2^63 s; past year 9999 it is no time at all.
            return line, datetime.fromtimestamp(timestamp_of(signatures[0]), UTC)
        except (OverflowError, ValueError, OSError):
            raise Unreachable("the cosignature states a time past year 9999") from None
    raise Unreachable("the answer holds no valid cosignature of this witness")


async def _proof(pool: asyncpg.Pool, book: str, old: int, size: int) -> list[bytes]:
    if old in (0, size):
        return []
    async with acquire(pool) as conn:
        return await tlog.from_stored(
            conn, book, lambda sh: merkle.consistency_proof(old, size, sh)
        )


async def _largest_checkpoint(pool: asyncpg.Pool, book: str) -> int:
    async with acquire(pool) as conn:
        found = await conn.fetchval(
            "SELECT max(tree_size) FROM checkpoints WHERE book_code = $1", book
        )
    return int(found or 0)


async def ask(
    pool: asyncpg.Pool, client: httpx.AsyncClient, due: Due, old: int
) -> tuple[str, datetime, int]:
    """Ask for a cosignature of `due`'s checkpoint from `old`; the line, the time it states,
    and the size the witness held before. Raises Refused or Unreachable."""
    for _ in range(2):
        if old > due.tree_size:
            if old <= await _largest_checkpoint(pool, due.book):
                # A newer checkpoint was cosigned meanwhile (by another process): the next
                # round offers the newest.
                raise Unreachable(f"the witness holds size {old}, past this checkpoint")
            # The witness cosigned a size this log no longer has: its history was cut back.
            raise Refused(409, f"the witness holds size {old}, beyond every checkpoint")
        proof = await _proof(pool, due.book, old, due.tree_size)
        try:
            # httpx's timeout bounds each read; this bounds the request, within the lease.
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                answer = await post(client, due.url, request_body(old, proof, due.note))
        except TimeoutError:
            raise Unreachable(f"no whole answer within {REQUEST_TIMEOUT_S} s") from None
        if answer.status == 200:
            line, stamp = cosignature_line(due, answer.body)
            return line, stamp, old
        if answer.status == 409:
            held = answer.body.strip()
            if not held.isascii() or not held.isdecimal():
                raise Unreachable("409 without a size")
            if int(held) == old:
                raise Unreachable("409 naming the size it was sent")
            old = int(held)
            continue
        if answer.status in (400, 403, 404, 422):
            raise Refused(answer.status, answer.body[:500])
        raise Unreachable(f"status {answer.status}")
    raise Unreachable("the witness's size moved twice")


async def ask_one(pool: asyncpg.Pool, client: httpx.AsyncClient, due: Due) -> None:
    """Ask one witness for its book's latest checkpoint and record what came of it."""
    async with acquire(pool) as conn:
        row = await conn.fetchrow(CLAIM, due.book, due.name, LEASE_S)
    if row is None:
        return  # another process is asking it
    fields = {"book": due.book, "witness": due.name, "tree_size": due.tree_size}
    try:
        line, stamp, held = await ask(pool, client, due, row["cosigned_size"] or 0)
    except Refused as exc:
        REFUSALS.labels(due.book, due.name, str(exc.status)).inc()
        log.error("audit.witness_refused", **fields, status=exc.status, detail=exc.detail)
        async with acquire(pool) as conn:
            await conn.execute(
                "UPDATE book_witnesses SET refused_at = now(), refusal = $3, last_error = $3, "
                "due_at = now() + make_interval(secs => $4) "
                "WHERE book_code = $1 AND name = $2",
                due.book,
                due.name,
                f"{exc.status}: {exc.detail}"[:2000],
                RETRY_REFUSED_S,
            )
        return
    except Unreachable as exc:
        UNREACHABLE.labels(due.name).inc()
        failures = row["failures"] + 1
        log.warning("audit.witness_unreachable", **fields, reason=str(exc), failures=failures)
        async with acquire(pool) as conn:
            await conn.execute(
                "UPDATE book_witnesses SET failures = $3, last_error = $4, "
                "due_at = now() + make_interval(secs => $5) "
                "WHERE book_code = $1 AND name = $2",
                due.book,
                due.name,
                failures,
                str(exc)[:2000],
                # 2^9 s is past the cap already; a larger power would overflow a float.
                min(MAX_BACKOFF_S, 2.0 ** min(failures, 16)),
            )
        return
    async with acquire(pool) as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO checkpoint_cosignatures (book_code, tree_size, witness, line, "
            "cosigned_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            due.book,
            due.tree_size,
            due.name,
            line,
            stamp,
        )
        await conn.execute(
            "UPDATE book_witnesses SET cosigned_size = $3, cosigned_at = $4, failures = 0, "
            "last_error = NULL, refused_at = NULL, refusal = NULL, due_at = now() "
            "WHERE book_code = $1 AND name = $2",
            due.book,
            due.name,
            due.tree_size,
            stamp,
        )
    COSIGNATURES.labels(due.book, due.name).inc()
    log.info("audit.witness_cosigned", **fields, old_size=held)


async def ask_due(pool: asyncpg.Pool, client: httpx.AsyncClient) -> int:
    """Ask every witness that has not cosigned its book's latest checkpoint, all at once;
    how many were asked."""
    async with acquire(pool) as conn:
        rows = await conn.fetch(DUE)
    due = []
    for row in rows:
        try:
            cosigner = parse_cosigner_key(row["vkey"])
        except NoteError as exc:  # refused when added; kept from a hand edit of the table
            log.error("audit.witness_key_invalid", book=row["book_code"], witness=row["name"],
                      reason=str(exc))  # fmt: skip
            continue
        due.append(
            Due(row["book_code"], row["name"], cosigner, row["url"], row["tree_size"], row["note"])
        )
    await asyncio.gather(*(ask_one(pool, client, d) for d in due))
    return len(due)


# The (book, witness) labels the last refresh set: a witness removed since is set back to 0,
# or its last alarm would stand until the process restarts.
_GAUGED: set[tuple[str, str]] = set()


async def refresh_gauges(pool: asyncpg.Pool) -> None:
    """Set the witness gauges from what the database holds of every book's witnesses."""
    async with acquire(pool) as conn:
        rows = await conn.fetch(
            "SELECT book_code, name, cosigned_size, refused_at IS NOT NULL AS alarm "
            "FROM book_witnesses"
        )
    present = {(row["book_code"], row["name"]) for row in rows}
    for gone in _GAUGED - present:
        ALARM.labels(*gone).set(0)
    _GAUGED.clear()
    _GAUGED.update(present)
    for row in rows:
        ALARM.labels(row["book_code"], row["name"]).set(1 if row["alarm"] else 0)
        if row["cosigned_size"] is not None:
            COSIGNED_SIZE.labels(row["book_code"], row["name"]).set(row["cosigned_size"])
