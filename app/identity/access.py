"""Whom a caller acts for and which members it reaches: the organisation an org or admin acts
for, the member a mini-program acts for, a member within reach (404 otherwise)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from app.http.caller import Caller
from app.identity import members, organisations, schemas
from app.identity.authorization import reaches_book, sees_member
from app.identity.errors import MemberNotFound, OrganisationNotFound
from app.kit.problems import Forbidden, ValidationFailed


def acting_organisation(caller: Caller, requested: uuid.UUID | None, what: str) -> uuid.UUID:
    """The organisation an org or admin acts for: an org credential's own, or the one an admin
    names."""
    if caller.role == "org":
        own = uuid.UUID(str(caller.organisation_id))
        if requested not in (None, own):
            raise Forbidden(f"an organisation {what} for itself only")
        return own
    if requested is None:
        raise ValidationFailed(
            "organisation_id is required",
            errors=[{"field": "body/organisation_id", "message": "required", "code": "missing"}],
        )
    return requested


def require_owner(caller: Caller, organisation_id: uuid.UUID, what: str) -> None:
    """Only the owning organisation (or an admin) may change what it published."""
    if caller.role == "org" and str(organisation_id) != caller.organisation_id:
        raise Forbidden(f"only the organisation that published it may {what}")


async def reachable_member(
    session: AsyncSession, caller: Caller, member_id: uuid.UUID, book: str
) -> members.MemberRow:
    """A member of `book` within the caller's reach; 404 otherwise."""
    row = await members.get_member_row(session, member_id)
    if row.book != book or not await sees_member(session, caller, row):
        raise MemberNotFound(f"member {member_id} does not exist")
    return row


def acting_member(caller: Caller, requested: uuid.UUID | None) -> uuid.UUID:
    """The member a sign-up or check-in is for: the mini-program's member, or the one named."""
    if caller.role == "miniprogram":
        if caller.member_id is None:
            raise ValidationFailed(
                "a mini-program acts for the member in X-Member-Id",
                errors=[{"field": "header/X-Member-Id", "message": "required", "code": "missing"}],
            )
        if requested is not None and str(requested) != caller.member_id:
            raise MemberNotFound(f"member {requested} does not exist")
        return uuid.UUID(caller.member_id)
    if requested is None:
        raise ValidationFailed(
            "member_id is required",
            errors=[{"field": "body/member_id", "message": "required", "code": "missing"}],
        )
    return requested


async def visible_organisation(
    session: AsyncSession, caller: Caller, organisation_id: uuid.UUID
) -> schemas.OrganisationRead:
    """An organisation within the caller's reach (its book); 404 otherwise."""
    org = await organisations.get_organisation(session, organisation_id)
    if not reaches_book(caller, org.book):
        raise OrganisationNotFound(f"organisation {organisation_id} does not exist")
    return org


def sees_organisation_data(caller: Caller, organisation_id: uuid.UUID) -> bool:
    """Whether the caller sees what an organisation keeps private (a donor's details): admins
    and the organisation itself."""
    return caller.role == "admin" or (
        caller.role == "org" and str(organisation_id) == caller.organisation_id
    )


async def sees_member_between_books(
    session: AsyncSession, caller: Caller, member_id: uuid.UUID, books: Iterable[str]
) -> bool:
    """Whether the caller sees what a member moved between `books`: admins and auditors
    reaching one of them; the member's own mini-program reaching one of them; an organisation
    that has the member."""
    reaches_one = any(reaches_book(caller, book) for book in books)
    if caller.role in ("admin", "auditor"):
        return reaches_one
    if caller.role == "miniprogram":
        return str(member_id) == caller.member_id and reaches_one
    if caller.role == "org":
        return await sees_member(session, caller, await members.get_member_row(session, member_id))
    return False


async def visible_member(
    session: AsyncSession, caller: Caller, member_id: uuid.UUID
) -> members.MemberRow:
    """A member (of any book) within the caller's reach; 404 otherwise."""
    row = await members.get_member_row(session, member_id)
    if not await sees_member(session, caller, row):
        raise MemberNotFound(f"member {member_id} does not exist")
    return row
