"""Finding members (no HTTP): the members within a caller's reach, newest first, in keyset
pages, optionally by volunteer number, phone number or part of a display name.

- A volunteer number is stored in clear and unique: an exact match (any case; numbers are
  stored upper-case).
- A phone number is never decrypted to be found: the 11 digits are looked up by their keyed
  hash (`phone_hash`, `PersonalDataCipher.lookup_hash`), exactly.
- A display name is encrypted at rest per row and field, so no index can find a part of one:
  the candidates in reach are decrypted, newest first, and compared (a case-insensitive
  substring, after NFKC). That is a scan, and each page scans at most `NAME_SCAN_BOUND`
  members. A page that reaches the bound before it is full says so (`scan_truncated`) and its
  cursor names the last member it scanned, so the next page goes on from there: nothing is
  skipped or repeated, and no request costs more than the bound's decryptions.

The order is (created_at, id) descending, the `members_book` index backwards; the cursor is a
member's id, as in the service's other lists, and stands for that member's place in the order.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.identity import errors
from app.identity.members import MemberRow, get_member_rows
from app.identity.personal import InvalidPhone, PersonalDataCipher, validate_phone
from app.identity.schemas import MatchedBy
from app.kit.problems import NotFound, ValidationFailed

# The most members one page of a name search decrypts (about 5 µs each: some 25 ms of CPU).
# docs/authorization.md and the route's description state it; tests lower it.
NAME_SCAN_BOUND = 5_000
# Members read per round trip of a name scan: a common name fills a page from the first.
SCAN_CHUNK = 500
# A volunteer number is the book's code in upper case and ten digits (members.register_member).
_VOLUNTEER_NUMBER = re.compile(r"[A-Z][A-Z0-9_-]{0,31}[0-9]{10}")

_CANDIDATES = (
    "SELECT m.id, m.display_name_enc FROM members m WHERE m.book_code = :book{organisation}"
    "{after}{match} ORDER BY m.created_at DESC, m.id DESC LIMIT :limit"
)
_IN_ORGANISATION = (
    " AND EXISTS (SELECT 1 FROM organisation_members om "
    "WHERE om.member_id = m.id AND om.organisation_id = :organisation)"
)
# The cursor's member's place in the order, read in the same statement.
_AFTER = (
    " AND (m.created_at, m.id) < (SELECT p.created_at, p.id FROM members p WHERE p.id = :after)"
)
# Fixed SQL fragments chosen by how `q` was read (never built from input).
_MATCH: dict[MatchedBy | None, str] = {
    None: "",
    "volunteer_number": " AND m.volunteer_number = :value",
    "phone": " AND m.phone_hash = :value",
    # An erased member has no name left to match.
    "display_name": " AND m.display_name_enc IS NOT NULL",
}


@dataclass(frozen=True, slots=True)
class Search:
    """What `q` asks for: how it is matched, and its normalised value."""

    matched_by: MatchedBy
    value: str


@dataclass(frozen=True, slots=True)
class Reach:
    """The members a search covers: one book's, or only those enrolled in one organisation."""

    book: str
    organisation_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Found:
    """A page of members, the cursor to go on (None: nothing further), and what a name scan
    did."""

    rows: list[MemberRow]
    next_after: uuid.UUID | None
    scanned: int
    scan_truncated: bool


def read_query(q: str | None) -> Search | None:
    """How to match `q`: a volunteer number, an 11-digit phone number, else part of a name
    (None: no `q`, or only spaces)."""
    if q is None:
        return None
    # NFKC: full-width letters and digits, as some input methods type them, are the ASCII ones.
    value = unicodedata.normalize("NFKC", q).strip()
    if not value:
        return None
    if _VOLUNTEER_NUMBER.fullmatch(value.upper()):
        return Search("volunteer_number", value.upper())
    try:
        return Search("phone", validate_phone(value))
    except InvalidPhone:
        pass
    digits = value.replace(" ", "").replace("-", "").removeprefix("+86")
    if len(digits) == 11 and digits.isascii() and digits.isdigit():
        # Eleven digits are a phone number, if not a mobile one: it matches no member.
        return Search("phone", digits)
    return Search("display_name", value.casefold())


async def find_members(
    session: AsyncSession,
    cipher: PersonalDataCipher,
    reach: Reach,
    search: Search | None,
    after: uuid.UUID | None,
    limit: int,
) -> Found:
    """A page of the members in `reach` that `search` matches (all of them without one),
    newest first, after the member `after`."""
    await _require_reach(session, reach, after)
    if search is not None and search.matched_by == "display_name":
        return await _scan_names(session, cipher, reach, search.value, after, limit)
    value = None
    if search is not None:
        value = search.value
        if search.matched_by == "phone":
            value = cipher.lookup_hash("phone", search.value)
    rows = await _candidates(session, reach, search, value, after, limit + 1)
    ids = [row.id for row in rows[:limit]]
    next_after = ids[-1] if len(rows) > limit else None
    return Found(await get_member_rows(session, ids), next_after, 0, False)


async def _require_reach(session: AsyncSession, reach: Reach, after: uuid.UUID | None) -> None:
    """404 for a book or organisation that does not exist; 422 for a cursor that names no
    member within the reach."""
    book = await session.execute(text("SELECT 1 FROM books WHERE code = :b"), {"b": reach.book})
    if book.first() is None:
        # As for a book out of reach (authorization.require_book): the two are not told apart.
        raise NotFound(f"book {reach.book!r} does not exist")
    if reach.organisation_id is not None:
        found = await session.execute(
            text("SELECT 1 FROM organisations WHERE id = :id AND book_code = :b"),
            {"id": reach.organisation_id, "b": reach.book},
        )
        if found.first() is None:
            raise errors.OrganisationNotFound(
                f"organisation {reach.organisation_id} does not exist"
            )
    if after is not None:
        # A cursor is a member of the list's own reach: any other, even of the book, is refused
        # as one that does not exist, so the answer tells nothing about members out of reach.
        sql = "SELECT 1 FROM members m WHERE m.id = :id AND m.book_code = :book"
        params: dict[str, Any] = {"id": after, "book": reach.book}
        if reach.organisation_id is not None:
            sql += _IN_ORGANISATION
            params["organisation"] = reach.organisation_id
        if (await session.execute(text(sql), params)).first() is None:
            raise ValidationFailed(
                "after names no member of this list",
                errors=[
                    {
                        "field": "query/after",
                        "message": "not a cursor of this list: pass a page's next_after",
                        "code": "unknown_cursor",
                    }
                ],
            )


async def _candidates(
    session: AsyncSession,
    reach: Reach,
    search: Search | None,
    value: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[Row[Any]]:
    """Up to `limit` members of the reach that the search's SQL condition keeps, newest
    first, after `after`: their ids and encrypted names."""
    params: dict[str, Any] = {"book": reach.book, "limit": limit}
    organisation = after_member = ""
    if reach.organisation_id is not None:
        organisation = _IN_ORGANISATION
        params["organisation"] = reach.organisation_id
    if after is not None:
        after_member = _AFTER
        params["after"] = after
    if value is not None:
        params["value"] = value
    sql = _CANDIDATES.format(
        organisation=organisation,
        after=after_member,
        match=_MATCH[None if search is None else search.matched_by],
    )
    return list(await session.execute(text(sql), params))


def _name_matches(cipher: PersonalDataCipher, row: Row[Any], needle: str) -> bool:
    name = cipher.decrypt(row.display_name_enc, f"member:{row.id}:display_name")
    return needle in unicodedata.normalize("NFKC", name).casefold()


async def _scan_names(
    session: AsyncSession,
    cipher: PersonalDataCipher,
    reach: Reach,
    needle: str,
    after: uuid.UUID | None,
    limit: int,
) -> Found:
    """The members whose display name contains `needle`, scanning at most NAME_SCAN_BOUND of
    them after `after`, until one more than the page is found."""
    by_name = Search("display_name", needle)
    matches: list[uuid.UUID] = []
    scanned = 0
    position = after
    exhausted = False
    while len(matches) <= limit and scanned < NAME_SCAN_BOUND and not exhausted:
        want = min(SCAN_CHUNK, NAME_SCAN_BOUND - scanned)
        rows = await _candidates(session, reach, by_name, None, position, want)
        exhausted = len(rows) < want
        for row in rows:
            scanned += 1
            position = row.id
            if _name_matches(cipher, row, needle):
                matches.append(row.id)
                if len(matches) > limit:
                    break
    if len(matches) > limit:
        page = matches[:limit]
        return Found(await get_member_rows(session, page), page[-1], scanned, False)
    rows_found = await get_member_rows(session, matches)
    if exhausted or not await _candidates(session, reach, by_name, None, position, 1):
        return Found(rows_found, None, scanned, False)
    # The bound stopped the scan with members left: the next page scans on from the last one.
    return Found(rows_found, position, scanned, True)
