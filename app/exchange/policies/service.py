"""A book's asset policies: the storage cap of a member's account, the yearly cap of a member's
gifts, and the relationships a gift may name (no HTTP). The caps are applied where credits
and gifts are posted (`accounts.storage_limits`, gifts)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.exchange.policies.schemas import PolicyRead
from app.kit.canonical_json import JsonObject

POLICY_COLUMNS = (
    "book_code AS book, asset, storage_cap, gift_yearly_cap, gift_relations, updated_at"
)


async def list_policies(session: AsyncSession, book: str) -> list[PolicyRead]:
    """The book's policies, by asset."""
    rows = await session.execute(
        text(f"SELECT {POLICY_COLUMNS} FROM book_asset_policies WHERE book_code = :b ORDER BY 2"),
        {"b": book},
    )
    return [PolicyRead.model_validate(row._asdict()) for row in rows]


async def put_policy(
    session: AsyncSession,
    book: str,
    asset: str,
    storage_cap: int | None,
    gift_yearly_cap: int | None,
    gift_relations: list[str] | None,
) -> PolicyRead:
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
    return PolicyRead.model_validate(row._asdict())


def policy_facts(policy: PolicyRead) -> JsonObject:
    """What `notice.asset_policy_changed` records."""
    return {
        "asset": policy.asset,
        "storage_cap": policy.storage_cap,
        "gift_yearly_cap": policy.gift_yearly_cap,
        "gift_relations": policy.gift_relations,
    }
