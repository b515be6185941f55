"""The witness's own durable store: SQLite in `witness.db` (WAL, `synchronous=FULL`).

Per origin, the latest cosigned size, root and note; and the refused requests of logs that
signed them validly, kept as evidence. Reading the stored size, deciding and writing the new
checkpoint happen in one `BEGIN IMMEDIATE` transaction, which takes SQLite's write lock first:
two requests from the same old size, in threads or processes, are decided one after the other,
so the second sees the first's size and gets a 409 (tlog-witness's race paragraph).
Blocking calls: the app runs them in a worker thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from app.audit.cosignature import cosign
from app.witness.config import WitnessKey
from app.witness.protocol import NEVER_COSIGNED, Refusal, Stored, Submission, decide

# How long a request waits for another's write lock before answering 503.
BUSY_TIMEOUT_S = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS latest (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL CHECK (size >= 0),
    root BLOB NOT NULL CHECK (length(root) = 32),
    note TEXT NOT NULL,
    cosigned_at INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,
    origin TEXT NOT NULL,
    alarm INTEGER NOT NULL CHECK (alarm IN (0, 1)),
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    old_size INTEGER NOT NULL,
    size INTEGER NOT NULL,
    stored_size INTEGER NOT NULL,
    stored_root BLOB NOT NULL,
    claimed_root BLOB NOT NULL,
    body BLOB NOT NULL
) STRICT;
"""


@dataclass(frozen=True)
class Cosigned:
    """A checkpoint cosigned and stored: the cosignature line and the note as now served."""

    line: str
    note: str
    stored: Stored
    timestamp: int


@dataclass(frozen=True)
class Refused:
    """A refusal decided against `stored`."""

    refusal: Refusal
    stored: Stored


@dataclass(frozen=True)
class Evidence:
    """A refused request of a log, as kept."""

    received_at: int
    origin: str
    alarm: bool
    status: int
    reason: str
    old_size: int
    size: int
    stored_size: int
    stored_root: bytes
    claimed_root: bytes
    body: bytes


class WitnessStore:
    """`witness.db`; each call opens its own connection, so threads and processes share it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            # Per connection: a commit is on disk before the witness answers.
            conn.execute("PRAGMA synchronous=FULL")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def submit(
        self, submission: Submission, body: bytes, key: WitnessKey, now: Callable[[], int]
    ) -> Cosigned | Refused:
        """Decide on `submission` against the stored state and cosign and store it, or keep
        the refusal as evidence (but a 409's), all in one write transaction."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT size, root, cosigned_at FROM latest WHERE origin = ?",
                (submission.origin,),
            ).fetchone()
            stored = NEVER_COSIGNED if row is None else Stored(row[0], row[1])
            refusal = decide(submission, stored)
            if refusal is not None:
                if refusal.status != 409:
                    _keep_evidence(conn, submission, body, refusal, stored, now())
                return Refused(refusal, stored)
            # Never older than the cosignature it follows, whatever the clock did.
            timestamp = max(now(), 1 if row is None else row[2])
            checkpoint = submission.checkpoint
            line = cosign(checkpoint.text(), key.name, key.private_key, timestamp)
            note = submission.signed_note() + line
            conn.execute(
                "INSERT INTO latest (origin, size, root, note, cosigned_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET"
                " size = excluded.size, root = excluded.root, note = excluded.note,"
                " cosigned_at = excluded.cosigned_at",
                (checkpoint.origin, checkpoint.size, checkpoint.root_hash, note, timestamp),
            )
            return Cosigned(line, note, stored, timestamp)

    def latest_note(self, origin: str) -> str | None:
        """The latest cosigned note of `origin` (the log's signatures and the witness's)."""
        with self._connect() as conn:
            row = conn.execute("SELECT note FROM latest WHERE origin = ?", (origin,)).fetchone()
        return None if row is None else str(row[0])

    def latest_sizes(self) -> dict[str, int]:
        """Each cosigned origin's latest size."""
        with self._connect() as conn:
            rows = conn.execute("SELECT origin, size FROM latest").fetchall()
        return {str(origin): int(size) for origin, size in rows}

    def evidence(self) -> list[Evidence]:
        """The kept refusals, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT received_at, origin, alarm, status, reason, old_size, size,"
                " stored_size, stored_root, claimed_root, body FROM evidence ORDER BY id"
            ).fetchall()
        return [Evidence(r[0], r[1], bool(r[2]), *r[3:]) for r in rows]

    def check(self) -> None:
        """Raise if the store cannot be read."""
        with self._connect() as conn:
            conn.execute("SELECT count(*) FROM latest").fetchone()


def _keep_evidence(
    conn: sqlite3.Connection,
    submission: Submission,
    body: bytes,
    refusal: Refusal,
    stored: Stored,
    received_at: int,
) -> None:
    checkpoint = submission.checkpoint
    conn.execute(
        "INSERT INTO evidence (received_at, origin, alarm, status, reason, old_size, size,"
        " stored_size, stored_root, claimed_root, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            received_at,
            checkpoint.origin,
            int(refusal.alarm),
            refusal.status,
            refusal.reason,
            submission.request.old_size,
            checkpoint.size,
            stored.size,
            stored.root,
            checkpoint.root_hash,
            body,
        ),
    )
