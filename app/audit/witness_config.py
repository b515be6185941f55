"""A book's witnesses (no HTTP): adding and removing them, and what the log knows of each
(docs/witness.md). Who asks them is app.audit.witnessing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import asyncpg

from app.audit.cosignature import parse_cosigner_key
from app.audit.note import NoteError
from app.kit.problems import ValidationFailed
from app.ledger.errors import BookNotFound


@dataclass(frozen=True)
class WitnessStatus:
    """A witness of a book and how its cosigning stands."""

    book: str
    name: str
    vkey: str
    url: str
    added_at: datetime
    cosigned_size: int | None
    cosigned_at: datetime | None
    failures: int
    last_error: str | None
    refused_at: datetime | None
    refusal: str | None

    @property
    def alarm(self) -> bool:
        """Whether the witness refused this log's history (and has not cosigned since)."""
        return self.refused_at is not None


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{field}: {message}", errors=[{"field": field, "message": message, "code": "invalid"}]
    )


def check_witness(vkey: str, url: str) -> str:
    """The witness's name from its vkey (a cosigner key, type 0x04); raises ValidationFailed
    naming the field at fault."""
    if len(vkey) > 400:
        raise _invalid("vkey", "at most 400 characters")
    try:
        cosigner = parse_cosigner_key(vkey)
    except NoteError as exc:
        raise _invalid("vkey", f"not a cosignature/v1 verifier key ({exc})") from None
    if len(cosigner.name) > 200:
        raise _invalid("vkey", "its name has more than 200 characters")
    if "\x00" in url:
        raise _invalid("url", "a NUL character")
    parts = urlsplit(url)
    # The table holds the scheme as written, lower case: `HTTP://` is refused, not rewritten.
    if (
        not url.startswith(("http://", "https://"))
        or not parts.netloc
        or parts.query
        or (parts.fragment)
    ):
        raise _invalid("url", "the witness's submission prefix, an http(s) URL")
    if len(url) > 2000:
        raise _invalid("url", "at most 2000 characters")
    return cosigner.name


async def add_witness(conn: asyncpg.Connection, book: str, vkey: str, url: str) -> WitnessStatus:
    """Add (or re-key, or move) a book's witness; it is asked from the next round."""
    name = check_witness(vkey, url)
    if await conn.fetchval("SELECT 1 FROM books WHERE code = $1", book) is None:
        raise BookNotFound(f"book {book!r} does not exist")
    await conn.execute(
        "INSERT INTO book_witnesses (book_code, name, vkey, url) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (book_code, name) DO UPDATE SET vkey = EXCLUDED.vkey, url = EXCLUDED.url, "
        "due_at = now(), failures = 0",
        book,
        name,
        vkey.strip(),
        url,
    )
    return (await witness_statuses(conn, book, name))[0]


async def remove_witness(conn: asyncpg.Connection, book: str, name: str) -> bool:
    """Stop asking a witness (its cosignatures already served stay); whether it was one."""
    done = await conn.execute(
        "DELETE FROM book_witnesses WHERE book_code = $1 AND name = $2", book, name
    )
    return bool(done.endswith(" 1"))


async def witness_statuses(
    conn: asyncpg.Connection, book: str | None = None, name: str | None = None
) -> list[WitnessStatus]:
    """The witnesses of `book` (of every book when None), by book and name."""
    rows = await conn.fetch(
        "SELECT book_code, name, vkey, url, added_at, cosigned_size, cosigned_at, failures, "
        "last_error, refused_at, refusal FROM book_witnesses "
        "WHERE ($1::text IS NULL OR book_code = $1) AND ($2::text IS NULL OR name = $2) "
        "ORDER BY book_code, name",
        book,
        name,
    )
    return [WitnessStatus(*(row[k] for k in row.keys())) for row in rows]  # noqa: SIM118
