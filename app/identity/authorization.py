"""Who may do what: roles, reach, and the 404-or-403 rule (docs/authorization.md).

1. No valid token: 401.
2. A role that may never call a route: 403, whatever the object (this tells nothing).
3. An object outside the caller's reach (another book, organisation, kiosk or member), or
   one that does not exist: 404, the same answer for both.
4. An object within reach but an action the caller may not take on it: 403.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.http.caller import Caller
from app.kit.problems import Forbidden, NotFound, ValidationFailed

ALL_ROLES = ("admin", "org", "miniprogram", "kiosk", "auditor")
# Who sees members' personal data in full; the others see it masked (see members.py).
SEES_PERSONAL_DATA = ("admin", "miniprogram")


def require_role(caller: Caller, roles: Iterable[str], action: str) -> None:
    """Refuse (403) a role that may never take this action."""
    if caller.role not in roles:
        raise Forbidden(f"role {caller.role!r} may not {action}")


def reaches_book(caller: Caller, book: str) -> bool:
    """Whether the credential's book binding includes `book`."""
    return caller.book is None or caller.book == book


def require_book(caller: Caller, book: str, what: str) -> None:
    """A book outside the caller's reach is answered as if it did not exist."""
    if not reaches_book(caller, book):
        raise NotFound(f"{what} does not exist")


def listed_book(caller: Caller, book: str | None) -> str | None:
    """The book a list covers: the one asked for (if within reach), else the caller's own
    (None: every book, for a platform credential)."""
    if book is None:
        return caller.book
    require_book(caller, book, f"book {book!r}")
    return book


# How many books a refusal for a missing `?book=` names before "…".
LISTED_BOOKS = 20


async def one_listed_book(session: AsyncSession, caller: Caller, book: str | None) -> str:
    """The one book a list or figure covers (`listed_book`). A platform credential spans every
    book: it must name one (422 on `query/book`, naming the books it may choose), unless the
    service holds only one book, which is then the one."""
    found = listed_book(caller, book)
    if found is not None:
        return found
    codes = list(
        (
            await session.execute(
                text("SELECT code FROM books ORDER BY code LIMIT :n"), {"n": LISTED_BOOKS + 1}
            )
        ).scalars()
    )
    if len(codes) == 1:
        return str(codes[0])
    named = ", ".join(codes[:LISTED_BOOKS]) + (", …" if len(codes) > LISTED_BOOKS else "")
    choice = f"name one with ?book=: {named}" if codes else "there is no book yet"
    message = f"a credential bound to no book spans every book: {choice}"
    raise ValidationFailed(
        f"book is required: {message}",
        errors=[{"field": "query/book", "message": message, "code": "missing"}],
        books=codes[:LISTED_BOOKS],
    )


def require_platform(caller: Caller, action: str) -> None:
    """Only a credential bound to no book may act across books."""
    if caller.book is not None:
        raise Forbidden(f"only a platform credential may {action}")


def require_books(caller: Caller, books: Iterable[str], refusal: str) -> None:
    """403 (`refusal`) unless the caller reaches every one of `books`: what a caller sees
    through one of its books, it changes only if it reaches all of them."""
    if not all(reaches_book(caller, book) for book in books):
        raise Forbidden(refusal)


def require_admin_reach(caller: Caller, book: str, refusal: str) -> None:
    """403 (`refusal`) for an admin that does not reach `book` (a mini-program is bound to its
    member instead)."""
    if caller.role == "admin":
        require_books(caller, (book,), refusal)


def acts_in_book_for(caller: Caller, book: str, member_id: str) -> bool:
    """Whether the caller acts in `book` for a member registered in another book (who holds
    an account there): an admin reaching it, or the member's own mini-program, whichever book
    it is bound to (a member's units are theirs wherever they were moved)."""
    if caller.role == "miniprogram":
        return caller.member_id == member_id
    return caller.role == "admin" and reaches_book(caller, book)


def sees_members_book(caller: Caller, book: str) -> bool:
    """Whether a caller that sees a member sees that member's accounts in `book` (balances,
    history, gifts): a book it reaches, or any book for the mini-program acting for them."""
    return caller.role == "miniprogram" or reaches_book(caller, book)


def require_members_book(caller: Caller, book: str) -> None:
    """404, as if the book did not exist, for a member's book the caller does not see."""
    if not sees_members_book(caller, book):
        raise NotFound(f"book {book!r} does not exist")


def org_owner(organisation_id: str | None) -> str:
    """The `owner` of an organisation's accounts."""
    return f"org:{organisation_id}"


def member_owner(member_id: str | None) -> str:
    """The `owner` of a member's accounts."""
    return f"member:{member_id}"


async def is_org_member(session: AsyncSession, organisation_id: str, member_id: str) -> bool:
    """Whether a member belongs to an organisation."""
    found = await session.execute(
        text(
            "SELECT 1 FROM organisation_members WHERE organisation_id = CAST(:o AS uuid) "
            "AND member_id = CAST(:m AS uuid)"
        ),
        {"o": organisation_id, "m": member_id},
    )
    return found.first() is not None


class ReachableMember(Protocol):
    """What reach is decided on for a member: their id and book."""

    @property
    def id(self) -> UUID: ...

    @property
    def book(self) -> str: ...


async def sees_member(session: AsyncSession, caller: Caller, member: ReachableMember) -> bool:
    """Whether the member is within the caller's reach."""
    if not reaches_book(caller, member.book):
        return False
    if caller.role in ("admin", "auditor"):
        return True
    if caller.role == "miniprogram":
        return caller.member_id in (None, str(member.id))
    if caller.role == "org" and caller.organisation_id is not None:
        return await is_org_member(session, caller.organisation_id, str(member.id))
    return False


class OwnedAccount(Protocol):
    """What reach is decided on: an account's id, book and owner."""

    @property
    def id(self) -> UUID | str: ...

    @property
    def book(self) -> str: ...

    @property
    def owner(self) -> str: ...


@dataclass(frozen=True, slots=True)
class AccountOwner:
    """An account's book and owner, as reach needs them."""

    id: str
    book: str
    owner: str


async def sees_account(session: AsyncSession, caller: Caller, account: OwnedAccount) -> bool:
    """Whether an account (as the ledger reads it) is within the caller's reach."""
    if not reaches_book(caller, account.book):
        return False
    if caller.role in ("admin", "auditor"):
        return True
    owner = account.owner
    if caller.role in ("org", "kiosk") and owner == org_owner(caller.organisation_id):
        return True
    if caller.role == "miniprogram":
        return caller.member_id is not None and owner == member_owner(caller.member_id)
    if caller.role == "org" and owner.startswith("member:") and caller.organisation_id:
        return await is_org_member(session, caller.organisation_id, owner.removeprefix("member:"))
    return False


async def require_account(session: AsyncSession, caller: Caller, account: OwnedAccount) -> None:
    """404 for an account the caller may not know of."""
    if not await sees_account(session, caller, account):
        raise NotFound(f"account {account.id} does not exist")


async def account_owners(session: AsyncSession, account_ids: list[str]) -> dict[str, AccountOwner]:
    """book and owner of each account that exists."""
    rows = await session.execute(
        text(
            "SELECT id::text AS id, book_code AS book, owner FROM accounts "
            "WHERE id = ANY(CAST(:ids AS uuid[]))"
        ),
        {"ids": account_ids},
    )
    return {row.id: AccountOwner(row.id, row.book, row.owner) for row in rows}


async def require_org_debits(
    session: AsyncSession, caller: Caller, book: str, debited: list[str], credited: list[str]
) -> None:
    """An organisation may move only its own accounts' funds (to any account in its book)."""
    if caller.role != "org":
        return
    known = await account_owners(session, debited + credited)
    for account_id in debited + credited:
        account = known.get(account_id)
        if account is None or account.book != book:
            raise NotFound(f"account {account_id} does not exist")
    for account_id in debited:
        if known[account_id].owner != org_owner(caller.organisation_id):
            raise Forbidden(f"an organisation may only take from its own accounts ({account_id})")


async def sees_any_account(
    session: AsyncSession, caller: Caller, book: str, account_ids: list[str]
) -> bool:
    """Whether an entry or hold of `book` moving these accounts is visible to the caller:
    book-wide roles see all of the book, others what moves an account of theirs."""
    if not reaches_book(caller, book):
        return False
    if caller.role in ("admin", "auditor"):
        return True
    for account in (await account_owners(session, account_ids)).values():
        if await sees_account(session, caller, account):
            return True
    return False


def require_organisation_kind(kind: str, kinds: Iterable[str], refusal: str) -> None:
    """Refuse (403, saying `refusal`) an organisation whose kind may not take the action."""
    if kind not in kinds:
        raise Forbidden(refusal)


def own_organisation_scope(caller: Caller) -> str | None:
    """The organisation an `org` caller's reads are limited to (None for other roles); 403
    for an organisation credential that names none."""
    if caller.role != "org":
        return None
    if caller.organisation_id is None:
        raise Forbidden("this organisation credential names no organisation")
    return caller.organisation_id


def certifying_organisation(caller: Caller, requested: str | None) -> str | None:
    """The organisation whose certification the caller asks for: an `org` caller's own (403
    for another's: an organisation certifies only what it recorded), else the one named."""
    if caller.role != "org":
        return requested
    own = caller.organisation_id
    if own is None or requested not in (None, own):
        raise Forbidden("an organisation issues proofs of the records it certified only")
    return own


def sees_service_record(caller: Caller, book: str, organisation_id: str, member_id: str) -> bool:
    """Whether a service record is within the caller's reach: book-wide roles see the book's,
    an organisation those it certifies, a mini-program its member's."""
    if not reaches_book(caller, book):
        return False
    if caller.role in ("admin", "auditor"):
        return True
    if caller.role == "org":
        return organisation_id == caller.organisation_id
    if caller.role == "miniprogram":
        return caller.member_id is not None and member_id == caller.member_id
    return False


def require_site_staff(caller: Caller, site_id: str, action: str) -> None:
    """An admin of a kiosk site's book, or the site's own org or kiosk credential (403
    otherwise)."""
    if caller.role != "admin" and caller.organisation_id != site_id:
        raise Forbidden(f"only the site's own credentials may {action}")


def require_site_reader(caller: Caller, site_id: str, action: str) -> None:
    """Admins and auditors of a kiosk site's book read what it did; an org or kiosk credential
    only if it is the site's own (403 otherwise)."""
    if caller.role in ("org", "kiosk"):
        require_site_staff(caller, site_id, action)


def sees_redemption(caller: Caller, book: str, site_id: str, member_id: str) -> bool:
    """Whether a kiosk redemption is within the caller's reach: book-wide roles see the book's,
    a site's own credentials the site's, a mini-program its member's."""
    if not reaches_book(caller, book):
        return False
    if caller.role in ("admin", "auditor"):
        return True
    if caller.role in ("org", "kiosk"):
        return caller.organisation_id == site_id
    return caller.role == "miniprogram" and caller.member_id == member_id
