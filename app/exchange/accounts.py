"""The accounts exchange needs besides the ones organisations and members open: a book's own
accounts and a member's account in another book or asset, opened on first use; and the
storage cap of a book's asset policy, as the limits a credit's Draft carries.

Each account is opened in a transaction of its own that commits at once: the sequencer posts
on its own connections and must see the account before the posting that uses it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.identity.authorization import member_owner
from app.ledger.journal import MAX_SAFE_INTEGER

# A book's own accounts, by `meta.purpose`, and whether they may go below zero.
PUBLIC_POOL = "public_pool"  # 公益时间池: donated hours and what storage caps turn away
EXPIRED = "expired"  # what lapsed (expiry transactions credit it)
DONATIONS = "donations"  # the source of donated units: its balance is minus all donations
CLEARING_PREFIX = "clearing:"  # clearing with another book (通存通兑), `clearing:<other book>`

OPEN_ENDED = (DONATIONS,)


def book_owner(book: str) -> str:
    """The owner of a book's own accounts."""
    return f"book:{book}"


def clearing_purpose(other_book: str) -> str:
    """The purpose of a book's clearing account with `other_book`."""
    return f"{CLEARING_PREFIX}{other_book}"


async def book_account(
    sessions: async_sessionmaker[AsyncSession], book: str, purpose: str, asset: str
) -> str:
    """The id of the book's own account for a purpose and asset, opened if missing."""
    may_go_negative = purpose in OPEN_ENDED or purpose.startswith(CLEARING_PREFIX)
    limit = MAX_SAFE_INTEGER if may_go_negative else 0
    return await purpose_account(sessions, book, book_owner(book), purpose, asset, limit)


async def purpose_account(
    sessions: async_sessionmaker[AsyncSession],
    book: str,
    owner: str,
    purpose: str,
    asset: str,
    overdraft_limit: int = 0,
) -> str:
    """The id of `owner`'s account for a purpose (`meta.purpose`) and asset in a book, opened
    if missing; a unique index on the purpose makes concurrent openings open one."""
    async with sessions() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO accounts (id, book_code, asset, owner, overdraft_limit, meta) "
                "VALUES (:id, :book, :asset, :owner, :limit, CAST(:meta AS jsonb)) "
                "ON CONFLICT DO NOTHING"
            ),
            {
                "id": uuid.uuid4(),
                "book": book,
                "asset": asset,
                "owner": owner,
                "limit": overdraft_limit,
                "meta": json.dumps({"purpose": purpose}),
            },
        )
        account_id = await session.scalar(
            text(
                "SELECT id::text FROM accounts WHERE book_code = :book AND owner = :owner "
                "AND asset = :asset AND meta ->> 'purpose' = :purpose"
            ),
            {"book": book, "owner": owner, "asset": asset, "purpose": purpose},
        )
    return str(account_id)


async def find_book_account(
    session: AsyncSession, book: str, purpose: str, asset: str
) -> str | None:
    """The id of the book's own account for a purpose and asset, if it was opened."""
    account_id = await session.scalar(
        text(
            "SELECT id::text FROM accounts WHERE book_code = :book AND owner = :owner "
            "AND asset = :asset AND meta ->> 'purpose' = :purpose"
        ),
        {"book": book, "owner": book_owner(book), "asset": asset, "purpose": purpose},
    )
    return None if account_id is None else str(account_id)


async def member_account(
    sessions: async_sessionmaker[AsyncSession], book: str, member_id: uuid.UUID, asset: str
) -> str:
    """The member's account for an asset in a book, opened if missing."""
    owner = member_owner(str(member_id))
    async with sessions() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO accounts (id, book_code, asset, owner) "
                "VALUES (:id, :book, :asset, :owner) ON CONFLICT DO NOTHING"
            ),
            {"id": uuid.uuid4(), "book": book, "asset": asset, "owner": owner},
        )
        account_id = await session.scalar(
            text(
                "SELECT id::text FROM accounts WHERE book_code = :book AND owner = :owner "
                "AND asset = :asset"
            ),
            {"book": book, "owner": owner, "asset": asset},
        )
    return str(account_id)


async def find_member_account(
    session: AsyncSession, book: str, member_id: uuid.UUID, asset: str
) -> str | None:
    """The member's account for an asset in a book, if it was opened."""
    account_id = await session.scalar(
        text(
            "SELECT id::text FROM accounts WHERE book_code = :book AND owner = :owner "
            "AND asset = :asset"
        ),
        {"book": book, "owner": member_owner(str(member_id)), "asset": asset},
    )
    return None if account_id is None else str(account_id)


@dataclass(frozen=True, slots=True)
class AssetPolicy:
    """A book's policy for one asset (docs/exchange.md §3)."""

    storage_cap: int | None = None
    gift_yearly_cap: int | None = None
    gift_relations: list[str] | None = None


async def asset_policy(session: AsyncSession, book: str, asset: str) -> AssetPolicy:
    """The book's policy for an asset (no limits when none was set)."""
    row = (
        await session.execute(
            text(
                "SELECT storage_cap, gift_yearly_cap, gift_relations FROM book_asset_policies "
                "WHERE book_code = :book AND asset = :asset"
            ),
            {"book": book, "asset": asset},
        )
    ).one_or_none()
    if row is None:
        return AssetPolicy()
    return AssetPolicy(row.storage_cap, row.gift_yearly_cap, row.gift_relations)


@dataclass(slots=True)
class CreditLimits:
    """What a Draft needs so that credits respect storage caps (Draft.storage_caps and
    Draft.overflow_to)."""

    storage_caps: dict[str, int] = field(default_factory=dict)
    overflow_to: str | None = None


async def credit_limits(
    sessions: async_sessionmaker[AsyncSession], book: str, asset: str, account_ids: list[str]
) -> CreditLimits:
    """The storage cap of the book's policy for `asset` on the member accounts `account_ids`,
    with the public time pool to take what a cap turns away."""
    async with sessions() as session:
        policy = await asset_policy(session, book, asset)
    if policy.storage_cap is None:
        return CreditLimits()
    pool = await book_account(sessions, book, PUBLIC_POOL, asset)
    return CreditLimits(dict.fromkeys(account_ids, policy.storage_cap), pool)


async def storage_limits(
    session: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    book: str,
    asset: str,
    account_ids: list[str],
) -> CreditLimits:
    """As `credit_limits`, but read with the caller's session (inside its
    locks): a second connection is taken only to open the book's public time pool the first
    time a cap needs it, so a request that holds a connection does not wait for another."""
    policy = await asset_policy(session, book, asset)
    if policy.storage_cap is None:
        return CreditLimits()
    pool = await find_book_account(session, book, PUBLIC_POOL, asset)
    if pool is None:
        pool = await book_account(sessions, book, PUBLIC_POOL, asset)
    return CreditLimits(dict.fromkeys(account_ids, policy.storage_cap), pool)
