"""A member's balances across assets and books, with what lapses when."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.exchange.assets.service import validity_years
from app.exchange.balances import schemas
from app.exchange.expiry.service import upcoming_expiries
from app.identity.authorization import member_owner
from app.identity.members import MemberRow
from app.ledger import service as ledger


async def member_balances(
    session: AsyncSession,
    row: MemberRow,
    zone: ZoneInfo,
    today: date,
    reaches: Callable[[str], bool] = lambda book: True,
) -> schemas.MemberBalances:
    """Balances of each of the member's accounts: those of their book, then those they hold in
    other books `reaches` admits (after a transfer between books). Each shows `expiries`: what
    lapses when after `today` (service time zone `zone`), for an asset with a validity
    period."""
    validity = await validity_years(session)
    others = await session.execute(
        text(
            "SELECT id::text AS account_id, book_code FROM accounts WHERE owner = :owner "
            "AND book_code <> :book ORDER BY book_code, asset, id"
        ),
        {"owner": member_owner(str(row.id)), "book": row.book},
    )
    accounts = [(row.book, account_id) for account_id in row.account_ids()] + [
        (other.book_code, other.account_id) for other in others if reaches(other.book_code)
    ]
    balances = []
    for book, account_id in accounts:
        full = await ledger.get_account(session, uuid.UUID(account_id))
        years = validity.get(full.asset)
        expiries = (
            []
            if years is None
            else await upcoming_expiries(session, str(full.id), years, zone, today)
        )
        balances.append(
            schemas.MemberBalance(
                asset=full.asset,
                account_id=full.id,
                posted=full.posted,
                pending=full.pending,
                available=full.available,
                book=book,
                expiries=[schemas.Expiry(lapses_on=day, amount=n) for day, n in expiries],
            )
        )
    return schemas.MemberBalances(member_id=row.id, balances=balances)
