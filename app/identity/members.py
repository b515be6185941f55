"""Members: registration, personal data (encrypted, masked, erasable), accounts (no HTTP).

Personal data never leaves this module in clear except in the answer to a role allowed to see
it; the journal and the logs name members by opaque ids only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.identity import errors, schemas
from app.identity.authorization import member_owner
from app.identity.personal import (
    InvalidPhone,
    InvalidResidentId,
    PersonalDataCipher,
    mask_name,
    mask_phone,
    mask_resident_id,
    validate_phone,
    validate_resident_id,
)
from app.ledger import service as ledger
from app.ledger.schemas import AccountCreate, AccountEntriesPage

MEMBER_ASSETS = ("HOUR", "POINT")
SELECT_MEMBER = (
    "SELECT m.*, m.book_code AS book, "
    "(SELECT coalesce(json_agg(json_build_object('asset', a.asset, 'account_id', a.id) "
    "ORDER BY a.asset), '[]') FROM accounts a "
    "WHERE a.book_code = m.book_code AND a.owner = 'member:' || m.id::text) AS accounts, "
    "(SELECT coalesce(json_agg(om.organisation_id ORDER BY om.organisation_id), '[]') "
    "FROM organisation_members om WHERE om.member_id = m.id) AS organisations "
    "FROM members m"
)


def _invalid(field: str, message: str) -> errors.InvalidPersonalData:
    # The message names the rule broken, never the value.
    return errors.InvalidPersonalData(
        f"{field}: {message}",
        errors=[{"field": field, "message": message, "code": "invalid_personal_data"}],
    )


class _Fields:
    """Validated, normalised personal fields of a registration or a correction."""

    def __init__(
        self,
        today: date,
        phone: str | None,
        resident_id: str | None,
        birth_date: date | None,
    ) -> None:
        self.phone: str | None = None
        self.resident_id: str | None = None
        self.birth_date = birth_date
        if phone is not None:
            try:
                self.phone = validate_phone(phone)
            except InvalidPhone as exc:
                raise _invalid("phone", str(exc)) from None
        if resident_id is not None:
            try:
                parsed = validate_resident_id(resident_id, today)
            except InvalidResidentId as exc:
                raise _invalid("resident_id", str(exc)) from None
            if birth_date is not None and birth_date != parsed.birth_date:
                raise _invalid("birth_date", "differs from the birth date in resident_id")
            self.resident_id = parsed.number
            self.birth_date = parsed.birth_date


@dataclass(frozen=True, slots=True)
class MemberRow:
    """A member's stored row (personal data still encrypted, `*_enc`), with their accounts in
    their own book and the organisations they belong to."""

    id: uuid.UUID
    book: str
    volunteer_number: str
    status: str
    display_name_enc: bytes | None
    phone_enc: bytes | None
    phone_hash: str | None
    resident_id_enc: bytes | None
    resident_id_hash: str | None
    birth_date_enc: bytes | None
    created_at: datetime
    updated_at: datetime
    erased_at: datetime | None
    accounts: list[schemas.MemberAccount]
    organisations: list[uuid.UUID]

    def encrypted(self, field: str) -> bytes | None:
        """The stored ciphertext of a personal field (`display_name`, `phone`, ...)."""
        value: bytes | None = getattr(self, f"{field}_enc")
        return value

    def account_ids(self) -> list[str]:
        """The ids of the member's accounts in their own book."""
        return [str(account.account_id) for account in self.accounts]


_MEMBER_COLUMNS = tuple(field.name for field in fields(MemberRow))


def _member_row(row: Row[Any]) -> MemberRow:
    values = {name: row._mapping[name] for name in _MEMBER_COLUMNS}
    values["accounts"] = [schemas.MemberAccount.model_validate(a) for a in values["accounts"]]
    values["organisations"] = [uuid.UUID(str(o)) for o in values["organisations"]]
    return MemberRow(**values)


async def get_member_row(session: AsyncSession, member_id: uuid.UUID) -> MemberRow:
    """A member's stored row (personal data still encrypted), with accounts and memberships."""
    row = (
        await session.execute(text(f"{SELECT_MEMBER} WHERE m.id = :id"), {"id": member_id})
    ).one_or_none()
    if row is None:
        raise errors.MemberNotFound(f"member {member_id} does not exist")
    return _member_row(row)


async def get_member_rows(session: AsyncSession, member_ids: list[uuid.UUID]) -> list[MemberRow]:
    """The stored rows of these members, in the order given (ids of no member are left out):
    one query for a page of members."""
    if not member_ids:
        return []
    rows = await session.execute(
        text(f"{SELECT_MEMBER} WHERE m.id = ANY(CAST(:ids AS uuid[]))"), {"ids": member_ids}
    )
    found = {row._mapping["id"]: _member_row(row) for row in rows}
    return [found[member_id] for member_id in member_ids if member_id in found]


def member_view(row: MemberRow, cipher: PersonalDataCipher, full: bool) -> schemas.MemberRead:
    """A member as the API shows it: personal fields in full or masked."""
    member_id = row.id

    def clear(field: str) -> str | None:
        blob = row.encrypted(field)
        return None if blob is None else cipher.decrypt(blob, f"member:{member_id}:{field}")

    name, phone, resident_id = clear("display_name"), clear("phone"), clear("resident_id")
    born = clear("birth_date")
    birth_date = None if born is None else date.fromisoformat(born)
    if not full:
        name = None if name is None else mask_name(name)
        phone = None if phone is None else mask_phone(phone)
        resident_id = None if resident_id is None else mask_resident_id(resident_id)
        birth_date = None
    return schemas.MemberRead(
        id=member_id,
        book=row.book,
        volunteer_number=row.volunteer_number,
        status="erased" if row.status == "erased" else "active",
        display_name=name,
        phone=phone,
        resident_id=resident_id,
        birth_date=birth_date,
        masked=not full,
        accounts=row.accounts,
        organisations=row.organisations,
        created_at=row.created_at,
        updated_at=row.updated_at,
        erased_at=row.erased_at,
    )


def _encrypted(
    cipher: PersonalDataCipher, member_id: uuid.UUID, name: str | None, fields: _Fields
) -> dict[str, Any]:
    def enc(field: str, value: str | None) -> bytes | None:
        return None if value is None else cipher.encrypt(value, f"member:{member_id}:{field}")

    values: dict[str, Any] = {}
    if name is not None:
        values["display_name_enc"] = enc("display_name", name)
    if fields.phone is not None:
        values["phone_enc"] = enc("phone", fields.phone)
        values["phone_hash"] = cipher.lookup_hash("phone", fields.phone)
    if fields.resident_id is not None:
        values["resident_id_enc"] = enc("resident_id", fields.resident_id)
        values["resident_id_hash"] = cipher.lookup_hash("resident_id", fields.resident_id)
    if fields.birth_date is not None:
        values["birth_date_enc"] = enc("birth_date", fields.birth_date.isoformat())
    return values


def _identity_hash(cipher: PersonalDataCipher, provider: str, value: str) -> str:
    return cipher.lookup_hash(f"identity:{provider}", value)


async def _member_by_identity(
    session: AsyncSession, cipher: PersonalDataCipher, identity: schemas.ExternalIdentity
) -> uuid.UUID | None:
    return (
        await session.execute(
            text(
                "SELECT member_id FROM member_identities WHERE provider = :p AND subject_hash = :s"
            ),
            {
                "p": identity.provider,
                "s": _identity_hash(cipher, identity.provider, identity.subject),
            },
        )
    ).scalar_one_or_none()


async def register_member(
    session: AsyncSession,
    cipher: PersonalDataCipher,
    data: schemas.MemberCreate,
    today: date,
) -> tuple[MemberRow, bool]:
    """Register a member with one account per asset; idempotent on the external identity.

    Returns the stored row and whether it was created now.
    """
    existing = await _member_by_identity(session, cipher, data.identity)
    if existing is not None:
        return await get_member_row(session, existing), False
    await ledger.get_book(session, data.book)
    fields = _Fields(today, data.phone, data.resident_id, data.birth_date)
    if fields.birth_date is None:
        raise _invalid("birth_date", "required when resident_id is not given")
    member_id = uuid.uuid4()
    values = _encrypted(cipher, member_id, data.display_name, fields)
    number = await session.scalar(text("SELECT nextval('volunteer_number_seq')"))
    try:
        async with session.begin_nested():
            await session.execute(
                text(
                    "INSERT INTO members (id, book_code, volunteer_number, display_name_enc, "
                    "phone_enc, phone_hash, resident_id_enc, resident_id_hash, birth_date_enc) "
                    "VALUES (:id, :book, :number, :display_name_enc, :phone_enc, :phone_hash, "
                    ":resident_id_enc, :resident_id_hash, :birth_date_enc)"
                ),
                {
                    "id": member_id,
                    "book": data.book,
                    "number": f"{data.book.upper()}{number:010d}",
                    "resident_id_enc": None,
                    "resident_id_hash": None,
                    **values,
                },
            )
    except IntegrityError:
        if await _member_by_identity(session, cipher, data.identity) is not None:
            raise _RegisteredConcurrently from None
        raise errors.DuplicateResident("a member with this resident ID is registered") from None
    provider, union_id = data.identity.provider, data.identity.union_id
    claimed = await session.execute(
        text(
            "INSERT INTO member_identities (provider, subject_hash, union_id_hash, member_id) "
            "VALUES (:p, :s, :u, :m) ON CONFLICT DO NOTHING RETURNING member_id"
        ),
        {
            "p": provider,
            "s": _identity_hash(cipher, provider, data.identity.subject),
            "u": None
            if union_id is None
            else _identity_hash(cipher, f"{provider}:union", union_id),
            "m": member_id,
        },
    )
    if claimed.first() is None:
        # A concurrent registration of the same identity committed first: its member wins.
        raise _RegisteredConcurrently
    for asset in MEMBER_ASSETS:
        await ledger.open_account(
            session, data.book, AccountCreate(asset=asset, owner=member_owner(str(member_id)))
        )
    if data.organisation_id is not None:
        await join_organisation(session, data.organisation_id, member_id, data.book)
    return await get_member_row(session, member_id), True


class _RegisteredConcurrently(Exception):
    """Raised inside the registration's savepoint so that its rows are rolled back."""


def conflicting_fields(
    cipher: PersonalDataCipher, row: MemberRow, data: schemas.MemberCreate, today: date
) -> list[str]:
    """The fields of a registration that differ from the member its identity belongs to."""
    fields = _Fields(today, data.phone, data.resident_id, data.birth_date)

    def stored(field: str) -> str | None:
        blob = row.encrypted(field)
        return None if blob is None else cipher.decrypt(blob, f"member:{row.id}:{field}")

    differ = []
    if data.book != row.book:
        differ.append("book")
    if data.display_name != stored("display_name"):
        differ.append("display_name")
    if fields.phone is not None and cipher.lookup_hash("phone", fields.phone) != row.phone_hash:
        differ.append("phone")
    if fields.resident_id is not None and (
        cipher.lookup_hash("resident_id", fields.resident_id) != row.resident_id_hash
    ):
        differ.append("resident_id")
    if fields.birth_date is not None and fields.birth_date.isoformat() != stored("birth_date"):
        differ.append("birth_date")
    return differ


async def register_member_once(
    session: AsyncSession,
    cipher: PersonalDataCipher,
    data: schemas.MemberCreate,
    today: date,
) -> tuple[MemberRow, bool]:
    """`register_member`, answering the winner when the same identity registers twice at once.

    A repeat is answered only if it names the same person: an identity registered with other
    personal data is refused (409), never taken for that member.
    """
    try:
        async with session.begin_nested():
            row, created = await register_member(session, cipher, data, today)
    except _RegisteredConcurrently:
        existing = await _member_by_identity(session, cipher, data.identity)
        if existing is None:
            raise
        row, created = await get_member_row(session, existing), False
    if not created:
        differ = conflicting_fields(cipher, row, data, today)
        if differ:
            # Names the fields, never their values or the member.
            raise errors.ExternalIdentityConflict(
                "this external identity is registered with other personal data "
                f"({', '.join(differ)})",
                fields=differ,
            )
    return row, created


async def join_organisation(
    session: AsyncSession, organisation_id: uuid.UUID, member_id: uuid.UUID, book: str
) -> None:
    """Make a member a member of an organisation of their book."""
    org_book = await session.scalar(
        text("SELECT book_code FROM organisations WHERE id = :id"), {"id": organisation_id}
    )
    if org_book != book:
        raise errors.OrganisationNotFound(f"organisation {organisation_id} does not exist")
    await session.execute(
        text(
            "INSERT INTO organisation_members (organisation_id, member_id) VALUES (:o, :m) "
            "ON CONFLICT DO NOTHING"
        ),
        {"o": organisation_id, "m": member_id},
    )


async def update_member(
    session: AsyncSession,
    cipher: PersonalDataCipher,
    row: MemberRow,
    data: schemas.MemberUpdate,
    today: date,
) -> MemberRow:
    """Correct a member's personal data."""
    if row.status == "erased":
        raise errors.MemberErased("an erased member's data cannot be corrected")
    fields = _Fields(today, data.phone, data.resident_id, data.birth_date)
    if data.resident_id is None and data.birth_date is not None and row.resident_id_enc:
        current = cipher.decrypt(row.resident_id_enc, f"member:{row.id}:resident_id")
        if validate_resident_id(current, today).birth_date != data.birth_date:
            raise _invalid("birth_date", "differs from the birth date in resident_id")
    values = _encrypted(cipher, row.id, data.display_name, fields)
    if not values:
        return row
    assignments = ", ".join(f"{column} = :{column}" for column in values)
    try:
        async with session.begin_nested():
            await session.execute(
                text(f"UPDATE members SET {assignments}, updated_at = now() WHERE id = :id"),
                {"id": row.id, **values},
            )
    except IntegrityError:
        raise errors.DuplicateResident("a member with this resident ID is registered") from None
    return await get_member_row(session, row.id)


async def erase_member(session: AsyncSession, member_id: uuid.UUID) -> MemberRow:
    """Scrub a member's personal data; accounts and journal entries stay (opaque ids only)."""
    await session.execute(
        text(
            "UPDATE members SET status = 'erased', display_name_enc = NULL, phone_enc = NULL, "
            "phone_hash = NULL, resident_id_enc = NULL, resident_id_hash = NULL, "
            "birth_date_enc = NULL, erased_at = coalesce(erased_at, now()), updated_at = now() "
            "WHERE id = :id"
        ),
        {"id": member_id},
    )
    await session.execute(
        text("DELETE FROM member_identities WHERE member_id = :id"), {"id": member_id}
    )
    return await get_member_row(session, member_id)


async def member_accounts_in(session: AsyncSession, row: MemberRow, book: str) -> list[str]:
    """The ids of the member's accounts in a book (their own, or one they moved hours to)."""
    if book == row.book:
        return row.account_ids()
    found = await session.scalars(
        text("SELECT id::text FROM accounts WHERE owner = :owner AND book_code = :book"),
        {"owner": member_owner(str(row.id)), "book": book},
    )
    return list(found)


async def member_entries(
    session: AsyncSession, row: MemberRow, book: str, before_seq: int | None, limit: int
) -> AccountEntriesPage:
    """The legs of all of the member's accounts in `book`, newest first."""
    ids = [uuid.UUID(a) for a in await member_accounts_in(session, row, book)]
    return await ledger.list_entries_of_accounts(session, ids, before_seq, limit)
