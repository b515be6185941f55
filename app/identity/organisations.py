"""Organisations: the region tree, their accounts and their members (no HTTP)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.http.actions import ActionResult, Notice
from app.identity import errors, schemas
from app.identity.authorization import org_owner
from app.kit.pagination import keyset_split
from app.ledger import service as ledger
from app.ledger.schemas import AccountCreate

COLUMNS = (
    "o.id, o.book_code AS book, o.kind, o.name, o.parent_id, o.person_in_charge, "
    "o.maker_checker, o.created_at, o.updated_at, "
    "(SELECT coalesce(json_agg(json_build_object('id', a.id, 'asset', a.asset, "
    "'purpose', a.meta->>'purpose', 'overdraft_limit', a.overdraft_limit) "
    "ORDER BY a.asset, a.meta->>'purpose', a.id), '[]') FROM accounts a "
    "WHERE a.book_code = o.book_code AND a.owner = 'org:' || o.id::text) AS accounts"
)


def _facts(org: schemas.OrganisationRead) -> dict[str, Any]:
    """What the journal records of an organisation: no personal data, no secrets."""
    return {
        "organisation_id": str(org.id),
        "kind": org.kind,
        "name": org.name,
        "parent_id": None if org.parent_id is None else str(org.parent_id),
        # A policy, not a person: the person in charge's name stays out of the journal.
        "maker_checker": org.maker_checker,
        "accounts": [str(a.id) for a in org.accounts],
    }


# Every kind but a kiosk site certifies service (publishes projects, approves records): it gets
# an HOUR account to credit members from when created, unless the request names one.
CERTIFYING_KINDS = ("community", "social_org", "social_work_station", "volunteer_team", "charity")
# How far that account may go below zero: the most minutes the organisation may ever certify
# (about 1,900 years of hours; a request that names its own account chooses another limit).
DEFAULT_ISSUANCE_LIMIT = 10**9


def with_issuance(
    kind: str, accounts: list[schemas.OrganisationAccountSpec]
) -> list[schemas.OrganisationAccountSpec]:
    """The accounts to open for a new organisation: those asked for, and for a certifying kind
    an HOUR issuance account if none was asked for."""
    if kind not in CERTIFYING_KINDS or any(
        a.asset == "HOUR" and a.purpose == "issuance" for a in accounts
    ):
        return accounts
    issuance = schemas.OrganisationAccountSpec(
        asset="HOUR", purpose="issuance", overdraft_limit=DEFAULT_ISSUANCE_LIMIT
    )
    return [*accounts, issuance]


async def get_organisation(
    session: AsyncSession, organisation_id: uuid.UUID
) -> schemas.OrganisationRead:
    """An organisation with its accounts."""
    row = (
        await session.execute(
            text(f"SELECT {COLUMNS} FROM organisations o WHERE o.id = :id"),
            {"id": organisation_id},
        )
    ).one_or_none()
    if row is None:
        raise errors.OrganisationNotFound(f"organisation {organisation_id} does not exist")
    return schemas.OrganisationRead.model_validate(dict(row._mapping))


async def names_of(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The names of these organisations (those that exist)."""
    if not ids:
        return {}
    rows = await session.execute(
        text("SELECT id, name FROM organisations WHERE id = ANY(CAST(:ids AS uuid[]))"),
        {"ids": list(ids)},
    )
    return {row.id: row.name for row in rows}


async def list_organisations(
    session: AsyncSession,
    book: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> schemas.OrganisationPage:
    """A page of the organisations of a book (None: all), keyset-paged by id."""
    rows = await session.execute(
        text(
            f"SELECT {COLUMNS} FROM organisations o "
            "WHERE (CAST(:book AS text) IS NULL OR o.book_code = :book) "
            "AND (CAST(:after AS uuid) IS NULL OR o.id > CAST(:after AS uuid)) "
            "ORDER BY o.id LIMIT :limit"
        ),
        {"book": book, "after": after, "limit": limit + 1},
    )
    organisations = [schemas.OrganisationRead.model_validate(dict(r._mapping)) for r in rows]
    items, next_after = keyset_split(organisations, limit)
    return schemas.OrganisationPage(items=items, next_after=next_after)


async def _check_parent(
    session: AsyncSession, book: str, parent_id: uuid.UUID | None, child: uuid.UUID | None
) -> None:
    if parent_id is None:
        return
    parent = (
        await session.execute(
            text("SELECT book_code FROM organisations WHERE id = :id"), {"id": parent_id}
        )
    ).one_or_none()
    if parent is None or parent.book_code != book:
        raise errors.InvalidParent(f"no organisation {parent_id} in book {book!r}")
    if child is None:
        return
    # The new parent must not be the organisation itself or one of its descendants.
    cycle = await session.execute(
        text(
            "WITH RECURSIVE up(id) AS (SELECT CAST(:p AS uuid) UNION "
            "SELECT o.parent_id FROM organisations o JOIN up ON o.id = up.id "
            "WHERE o.parent_id IS NOT NULL) SELECT 1 FROM up WHERE id = :c"
        ),
        {"p": parent_id, "c": child},
    )
    if cycle.first() is not None:
        raise errors.InvalidParent("an organisation cannot be its own ancestor")


async def create_organisation(
    session: AsyncSession, data: schemas.OrganisationCreate, actor: dict[str, str]
) -> ActionResult:
    """Create an organisation and open its accounts; recorded as `notice.organisation_created`."""
    await ledger.get_book(session, data.book)
    await _check_parent(session, data.book, data.parent_id, None)
    organisation_id = uuid.uuid4()
    await session.execute(
        text(
            "INSERT INTO organisations (id, book_code, kind, name, parent_id, person_in_charge, "
            "maker_checker) VALUES (:id, :book, :kind, :name, :parent, :pic, :mc)"
        ),
        {
            "id": organisation_id,
            "book": data.book,
            "kind": data.kind,
            "name": data.name,
            "parent": data.parent_id,
            "pic": data.person_in_charge,
            "mc": data.maker_checker,
        },
    )
    for spec in with_issuance(data.kind, data.accounts):
        await ledger.open_account(
            session,
            data.book,
            AccountCreate(
                asset=spec.asset,
                owner=org_owner(str(organisation_id)),
                overdraft_limit=spec.overdraft_limit,
                meta={"purpose": spec.purpose},
            ),
        )
    org = await get_organisation(session, organisation_id)
    notice = Notice(data.book, "organisation_created", _facts(org), actor)
    return ActionResult(201, _json(org), notice)


async def update_organisation(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    data: schemas.OrganisationUpdate,
    actor: dict[str, str],
) -> ActionResult:
    """Rename or move an organisation; recorded as `notice.organisation_changed`."""
    org = await get_organisation(session, organisation_id)
    changes = data.model_dump(exclude_unset=True)
    if "parent_id" in changes:
        await _check_parent(session, org.book, data.parent_id, organisation_id)
    await session.execute(
        text(
            "UPDATE organisations SET name = :name, parent_id = :parent, "
            "person_in_charge = :pic, maker_checker = :mc, updated_at = now() WHERE id = :id"
        ),
        {
            "id": organisation_id,
            "name": changes.get("name", org.name),
            "parent": changes.get("parent_id", org.parent_id),
            "pic": changes.get("person_in_charge", org.person_in_charge),
            "mc": changes.get("maker_checker", org.maker_checker),
        },
    )
    org = await get_organisation(session, organisation_id)
    notice = Notice(org.book, "organisation_changed", _facts(org), actor)
    return ActionResult(200, _json(org), notice)


def _json(org: schemas.OrganisationRead) -> dict[str, Any]:
    """An organisation as stored in an action's answer (plain JSON types)."""
    return org.model_dump(mode="json")
