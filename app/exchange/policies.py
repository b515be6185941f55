"""A book's asset policies (storage cap, yearly gift cap, relationships a gift may name), the
storage cap applied to a credit, and what the postings of gifts and of the public time pool
share: their ids, their idempotency keys and their refusals (no HTTP).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.exchange.accounts import (
    PUBLIC_POOL,
    CreditLimits,
    asset_policy,
    book_account,
    find_book_account,
)
from app.exchange.errors import AssetNotFound
from app.http.caller import SYSTEM_CREDENTIAL
from app.identity import errors as identity_errors
from app.ledger.outcomes import IdempotencyRef

POLICY_COLUMNS = (
    "book_code AS book, asset, storage_cap, gift_yearly_cap, gift_relations, updated_at"
)


async def require_asset(session: AsyncSession, asset: str) -> None:
    """404 unless the asset is defined."""
    found = await session.execute(text("SELECT 1 FROM assets WHERE code = :c"), {"c": asset})
    if found.first() is None:
        raise AssetNotFound(f"asset {asset!r} does not exist", asset=asset)


async def list_policies(session: AsyncSession, book: str) -> list[dict[str, Any]]:
    """The book's policies, by asset."""
    rows = await session.execute(
        text(f"SELECT {POLICY_COLUMNS} FROM book_asset_policies WHERE book_code = :b ORDER BY 2"),
        {"b": book},
    )
    return [dict(row._mapping) for row in rows]


async def put_policy(
    session: AsyncSession,
    book: str,
    asset: str,
    storage_cap: int | None,
    gift_yearly_cap: int | None,
    gift_relations: list[str] | None,
) -> dict[str, Any]:
    """Set (replace) the book's policy for an asset."""
    row = (
        await session.execute(
            text(
                "INSERT INTO book_asset_policies "
                "(book_code, asset, storage_cap, gift_yearly_cap, gift_relations) "
                "VALUES (:b, :a, :sc, :gc, :gr) ON CONFLICT (book_code, asset) DO UPDATE SET "
                "storage_cap = excluded.storage_cap, gift_yearly_cap = excluded.gift_yearly_cap, "
                "gift_relations = excluded.gift_relations, updated_at = now() "
                f"RETURNING {POLICY_COLUMNS}"
            ),
            {
                "b": book,
                "a": asset,
                "sc": storage_cap,
                "gc": gift_yearly_cap,
                "gr": gift_relations,
            },
        )
    ).one()
    return dict(row._mapping)


def policy_facts(policy: dict[str, Any]) -> dict[str, Any]:
    """What `notice.asset_policy_changed` records."""
    return {
        "asset": policy["asset"],
        "storage_cap": policy["storage_cap"],
        "gift_yearly_cap": policy["gift_yearly_cap"],
        "gift_relations": policy["gift_relations"],
    }


async def storage_limits(
    session: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    book: str,
    asset: str,
    account_ids: list[str],
) -> CreditLimits:
    """As `app.exchange.accounts.credit_limits`, but read with the caller's session (inside its
    locks): a second connection is taken only to open the book's public time pool the first
    time a cap needs it, so a request that holds a connection does not wait for another."""
    policy = await asset_policy(session, book, asset)
    if policy.storage_cap is None:
        return CreditLimits()
    pool = await find_book_account(session, book, PUBLIC_POOL, asset)
    if pool is None:
        pool = await book_account(sessions, book, PUBLIC_POOL, asset)
    return CreditLimits(dict.fromkeys(account_ids, policy.storage_cap), pool)


def posting_ref(what: str, posting: uuid.UUID, request_hash: str) -> IdempotencyRef:
    """The ledger key of a posting: `<what>:<id>` under the system credential."""
    return IdempotencyRef(SYSTEM_CREDENTIAL, f"{what}:{posting}", request_hash)


async def lock_member(session: AsyncSession, member_id: uuid.UUID) -> dict[str, Any]:
    """Lock a member's row until the transaction ends; its book and status.

    FOR NO KEY UPDATE: it serialises whoever locks the row this way (and an erasure, which
    updates it), but not the inserts of rows that refer to the member (sign-ups, records,
    quotes), which take only a key-share lock."""
    row = (
        await session.execute(
            text("SELECT book_code AS book, status FROM members WHERE id = :id FOR NO KEY UPDATE"),
            {"id": member_id},
        )
    ).one_or_none()
    if row is None:
        raise identity_errors.MemberNotFound(f"member {member_id} does not exist")
    return dict(row._mapping)


def require_not_erased(member_id: uuid.UUID, status: str) -> None:
    """An erased member neither gives nor receives."""
    if status == "erased":
        raise identity_errors.MemberErased(
            f"member {member_id} was erased and takes part in no transfer",
            member_id=str(member_id),
        )


def entry_json(posting: dict[str, Any]) -> dict[str, Any]:
    """What an answer shows of the entry a posting appended."""
    entry = posting["entry"]
    return {
        "tx_id": entry["tx_id"],
        "seq": entry["seq"],
        "kind": entry["kind"],
        "posted_at": entry["posted_at"],
        "entry_hash": posting["entry_hash"],
        "legs": entry["legs"],
        "overflow": entry["meta"].get("overflow"),
    }


def overflow_of(meta: dict[str, Any], account_id: str) -> int:
    """What a storage cap turned away from `account_id` in an entry (its `meta.overflow`)."""
    return sum(
        int(item["amount"]) for item in meta.get("overflow") or [] if item["account"] == account_id
    )
