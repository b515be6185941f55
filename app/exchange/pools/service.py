"""Organisations' pools and the donations that fund them.

A pool is an organisation account with `meta.purpose = "pool"` and no overdraft: it can pay out
only what was put in, so every point it gives a member is backed by a donation (or by a
transfer from the organisation's documented issuance account). A donation posts `donation`
from the book's `donations` account to the pool; the journal names the donation's id, the
donor's details stay in `donations`, encrypted. The entry is appended inside the request's
transaction, which then inserts the `donations` row: both commit together or neither does.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.exchange import errors
from app.exchange.accounts import DONATIONS, book_account
from app.exchange.assets.service import require_asset
from app.exchange.pools import schemas
from app.http.actions import action_id
from app.http.caller import SYSTEM_CREDENTIAL, Caller
from app.identity.authorization import org_owner
from app.identity.organisations import get_organisation
from app.identity.personal import PersonalDataCipher
from app.kit.faults import fault_point
from app.ledger.outcomes import IdempotencyRef, refusal
from app.ledger.posting import Draft
from app.ledger.sequencer import Sequencer
from app.ledger.service import InTransaction

POOL = "pool"
KIND_DONATION = "donation"


async def find_pool(session: AsyncSession, organisation_id: uuid.UUID, asset: str) -> str | None:
    """The id of the organisation's pool account for an asset, if it has one."""
    account_id = await session.scalar(
        text(
            "SELECT id::text FROM accounts WHERE owner = :owner AND asset = :asset "
            "AND meta ->> 'purpose' = 'pool' ORDER BY created_at, id LIMIT 1"
        ),
        {"owner": org_owner(str(organisation_id)), "asset": asset},
    )
    return None if account_id is None else str(account_id)


async def pool_account(session: AsyncSession, organisation_id: uuid.UUID, asset: str) -> str:
    """The organisation's pool account for an asset; 404 when it has none."""
    account_id = await find_pool(session, organisation_id, asset)
    if account_id is None:
        raise errors.PoolNotFound(
            f"organisation {organisation_id} has no {asset} pool; open one with "
            f"POST /v1/organisations/{organisation_id}/pools",
            asset=asset,
        )
    return account_id


async def list_pools(session: AsyncSession, organisation_id: uuid.UUID) -> list[schemas.PoolRead]:
    """The organisation's pools with their balances."""
    org = await get_organisation(session, organisation_id)
    rows = await session.execute(
        text(
            "SELECT id AS account_id, asset, posted, posted - pending_debits AS available "
            "FROM accounts WHERE owner = :owner AND meta ->> 'purpose' = 'pool' "
            "ORDER BY asset, created_at, id"
        ),
        {"owner": org_owner(str(organisation_id))},
    )
    return [
        schemas.PoolRead(organisation_id=organisation_id, book=org.book, **row._asdict())
        for row in rows
    ]


async def open_pool(
    session: AsyncSession, organisation_id: uuid.UUID, asset: str
) -> tuple[schemas.PoolRead, bool]:
    """Open the organisation's pool for an asset (once); returns it and whether it is new."""
    # The organisation's row serialises concurrent openings of its pools.
    book = await session.scalar(
        text("SELECT book_code FROM organisations WHERE id = :id FOR UPDATE"),
        {"id": organisation_id},
    )
    if book is None:
        await get_organisation(session, organisation_id)  # raises the 404
    await require_asset(session, asset)
    created = await find_pool(session, organisation_id, asset) is None
    if created:
        await session.execute(
            text(
                "INSERT INTO accounts (id, book_code, asset, owner, meta) "
                "VALUES (:id, :book, :asset, :owner, CAST(:meta AS jsonb))"
            ),
            {
                "id": uuid.uuid4(),
                "book": book,
                "asset": asset,
                "owner": org_owner(str(organisation_id)),
                "meta": json.dumps({"purpose": POOL}),
            },
        )
    pools = await list_pools(session, organisation_id)
    return next(p for p in pools if p.asset == asset), created


def _donation(row: Row[Any], cipher: PersonalDataCipher | None) -> schemas.DonationRead:
    donor = None
    if cipher is not None:
        donor = json.loads(cipher.decrypt(row.donor_enc, f"donation:{row.id}:donor"))
    return schemas.DonationRead(
        id=row.id,
        book=row.book_code,
        organisation_id=row.organisation_id,
        pool_account_id=row.pool_account_id,
        asset=row.asset,
        amount=row.amount,
        donor=donor,
        tx_id=row.tx_id,
        created_at=row.created_at,
    )


async def donations_source(
    sessions: async_sessionmaker[AsyncSession], organisation_id: uuid.UUID, asset: str
) -> str:
    """The book's `donations` account for the asset, opened before the donation's transaction
    (which then needs no second connection); 404 `asset-not-found` for an unknown asset."""
    async with sessions() as session:
        org = await get_organisation(session, organisation_id)
        await require_asset(session, asset)
    return await book_account(sessions, org.book, DONATIONS, asset)


async def get_donation(
    session: AsyncSession, donation_id: uuid.UUID, cipher: PersonalDataCipher | None
) -> schemas.DonationRead:
    """A donation; the donor's details only when `cipher` is given."""
    row = (
        await session.execute(text("SELECT * FROM donations WHERE id = :id"), {"id": donation_id})
    ).one_or_none()
    if row is None:
        raise errors.DonationNotFound(f"donation {donation_id} does not exist")
    return _donation(row, cipher)


async def record_donation(
    session: AsyncSession,
    sequencer: Sequencer,
    cipher: PersonalDataCipher,
    organisation_id: uuid.UUID,
    data: schemas.DonationCreate,
    caller: Caller,
    idem: IdempotencyRef,
    source: str,
) -> schemas.DonationRead:
    """Record a donation and post it from the book's `donations` account `source` into the
    organisation's pool, in `session`'s transaction: one posting per request (`idem` is the
    request's own key)."""
    org = await get_organisation(session, organisation_id)
    # The row's foreign key will share-lock the organisation; taken now, before the append
    # locks the book's head, so a writer that locks the organisation and then appends cannot
    # wait on this transaction while it waits on that one.
    await session.execute(
        text("SELECT 1 FROM organisations WHERE id = :id FOR KEY SHARE"), {"id": organisation_id}
    )
    pool = await pool_account(session, organisation_id, data.asset)
    donation_id = action_id(idem, "donation")
    donor = json.dumps(data.donor.model_dump(), ensure_ascii=False, sort_keys=True)
    # The row is inserted after the posting: its foreign key to the pool takes a lock on the
    # pool's account row, which only the append may lock first (it locks the head, then it).
    draft = Draft(
        org.book,
        "post",
        KIND_DONATION,
        [(source, -data.amount), (pool, data.amount)],
        "",
        {"donation": str(donation_id)},
        actor=caller.actor(),
    )
    ref = IdempotencyRef(SYSTEM_CREDENTIAL, f"donation:{donation_id}", idem.request_hash)
    # In this transaction: the entry and the donation's row commit together or not at all.
    outcome = await InTransaction(session, sequencer).submit(draft, ref)
    if outcome.status_code >= 400:
        refused = refusal(outcome)
        raise errors.DonationRefused(
            f"the ledger refused the donation: {refused.detail}", ledger_problem=refused.problem()
        )
    fault_point("pool.donate.posted")
    await session.execute(
        text(
            "INSERT INTO donations (id, book_code, organisation_id, pool_account_id, asset, "
            "amount, donor_enc, created_by, tx_id) VALUES (:id, :book, :org, CAST(:pool AS uuid), "
            ":asset, :amount, :donor, CAST(:by AS uuid), CAST(:tx AS uuid))"
        ),
        {
            "id": donation_id,
            "book": org.book,
            "org": organisation_id,
            "pool": pool,
            "asset": data.asset,
            "amount": data.amount,
            "donor": cipher.encrypt(donor, f"donation:{donation_id}:donor"),
            "by": caller.credential.id,
            "tx": outcome.body["id"],
        },
    )
    return await get_donation(session, donation_id, cipher)
