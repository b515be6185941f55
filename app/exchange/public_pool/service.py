"""A book's public time pool (公益时间池), one account per asset (no HTTP).

Members donate units to it (`public_pool.donation`); an organisation or an admin grants units
from it to a member in need, with a reason (`public_pool.grant`); and storage caps send to it
what a credit would carry beyond a member's cap (`meta.overflow` of the credit's own entry).
A donation's or grant's entry is appended inside the request's own transaction
(`ledger.InTransaction`), with the member's row locked: the entry and the answer kept under
the Idempotency-Key commit together or not at all.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.exchange.accounts import (
    PUBLIC_POOL,
    book_account,
    book_owner,
    find_book_account,
    find_member_account,
    member_account,
    storage_limits,
)
from app.exchange.assets.service import require_asset
from app.exchange.postings import (
    entry_ref,
    lock_member,
    overflow_of,
    posting_ref,
    require_not_erased,
)
from app.exchange.public_pool import errors, schemas
from app.http.caller import Caller
from app.identity.access import reachable_member
from app.kit.faults import fault_point
from app.kit.problems import is_problem
from app.ledger import errors as ledger_errors
from app.ledger import service as ledger
from app.ledger.outcomes import refusal
from app.ledger.posting import Draft
from app.ledger.sequencer import Sequencer
from app.ledger.service import InTransaction, posted_before

KIND_DONATION = "public_pool.donation"
KIND_GRANT = "public_pool.grant"


@dataclass(frozen=True, slots=True)
class PoolPlan:
    """A donation or grant asked for, with what was looked up before its transaction."""

    id: uuid.UUID
    book: str
    member: uuid.UUID
    asset: str
    amount: int
    reason: str | None = None


async def plan(
    sessions: async_sessionmaker[AsyncSession],
    caller: Caller,
    posting: uuid.UUID,
    book: str,
    member: uuid.UUID,
    asset: str,
    amount: int,
    reason: str | None = None,
) -> PoolPlan:
    """Check reach, and open the pool (for a donation) or the member's account (for a grant)
    before the posting's transaction."""
    async with sessions() as session:
        await ledger.get_book(session, book)
        await reachable_member(session, caller, member, book)
        await require_asset(session, asset)
    if reason is None:
        await book_account(sessions, book, PUBLIC_POOL, asset)
    else:  # the reason was screened for personal data with the body (`JournalText`)
        await member_account(sessions, book, member, asset)
    return PoolPlan(posting, book, member, asset, amount, reason)


async def _require_open(session: AsyncSession, plan: PoolPlan, account_id: str) -> None:
    status = await session.scalar(
        text("SELECT status FROM accounts WHERE id = CAST(:id AS uuid)"), {"id": account_id}
    )
    if status != "open":
        raise ledger_errors.AccountNotOpen(
            f"member {plan.member}'s {plan.asset} account is {status}",
            account_id=account_id,
            account_status=status,
            member_id=str(plan.member),
        )


async def donate(
    session: AsyncSession,
    sequencer: Sequencer,
    plan: PoolPlan,
    caller: Caller,
    request_hash: str,
) -> schemas.DonationPosted:
    """A member's donation to the pool: the answer, with the donation and its entry."""
    member = await lock_member(session, plan.member)
    ref = posting_ref(KIND_DONATION, plan.id, request_hash)
    account = await find_member_account(session, plan.book, plan.member, plan.asset)
    pool = await find_book_account(session, plan.book, PUBLIC_POOL, plan.asset)
    assert pool is not None  # opened by plan()
    if account is None or not await posted_before(session, ref):
        require_not_erased(plan.member, member.status)
        if account is None:
            raise ledger_errors.InsufficientFunds(
                f"member {plan.member} holds no {plan.asset}", account_id=None, available=0
            )
        await _require_open(session, plan, account)
    draft = Draft(
        plan.book,
        "post",
        KIND_DONATION,
        [(account, -plan.amount), (pool, plan.amount)],
        "",
        {},
        actor=caller.actor(),
    )
    # In this transaction (the member locked above): the entry and the answer commit together.
    outcome = await InTransaction(session, sequencer).submit(draft, ref)
    if outcome.status_code >= 400:
        raise refusal(outcome)
    fault_point("public_pool.donate.posted")
    donation = schemas.PublicPoolDonationRead(
        id=plan.id, book=plan.book, member_id=plan.member, asset=plan.asset, amount=plan.amount
    )
    return schemas.DonationPosted(donation=donation, entry=entry_ref(outcome.body))


async def _pool_available(session: AsyncSession, pool: str) -> int:
    available = await session.scalar(
        text("SELECT posted - pending_debits FROM accounts WHERE id = CAST(:id AS uuid)"),
        {"id": pool},
    )
    return int(available or 0)


def _empty(plan: PoolPlan, available: int) -> errors.PublicPoolEmpty:
    return errors.PublicPoolEmpty(
        f"the public time pool of book {plan.book!r} holds {available} {plan.asset}; "
        f"{plan.amount} asked",
        available=available,
    )


async def grant(
    session: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    sequencer: Sequencer,
    plan: PoolPlan,
    caller: Caller,
    request_hash: str,
) -> schemas.GrantPosted:
    """A grant from the pool to a member (within the member's storage cap): the answer, with
    the grant and its entry."""
    member = await lock_member(session, plan.member)
    ref = posting_ref(KIND_GRANT, plan.id, request_hash)
    account = await find_member_account(session, plan.book, plan.member, plan.asset)
    assert account is not None  # opened by plan()
    pool = await find_book_account(session, plan.book, PUBLIC_POOL, plan.asset)
    if pool is None or not await posted_before(session, ref):
        require_not_erased(plan.member, member.status)
        await _require_open(session, plan, account)
        available = 0 if pool is None else await _pool_available(session, pool)
        if pool is None or available < plan.amount:
            raise _empty(plan, available)
    limits = await storage_limits(session, sessions, plan.book, plan.asset, [account])
    draft = Draft(
        plan.book,
        "post",
        KIND_GRANT,
        [(pool, -plan.amount), (account, plan.amount)],
        "",
        {"reason": plan.reason},
        actor=caller.actor(),
        storage_caps=limits.storage_caps,
        overflow_to=limits.overflow_to,
        beneficiary=account,
    )
    # In this transaction (the member locked above): the entry and the answer commit together.
    outcome = await InTransaction(session, sequencer).submit(draft, ref)
    if outcome.status_code >= 400:
        refused = refusal(outcome)
        if is_problem(refused, ledger_errors.InsufficientFunds) and (
            refused.extra.get("account_id") == pool
        ):
            raise _empty(plan, int(refused.extra.get("available", 0)))
        raise refused
    fault_point("public_pool.grant.posted")
    posting = outcome.body
    overflow = overflow_of(posting["entry"]["meta"], account)
    assert plan.reason is not None  # a grant's plan carries its reason
    grant = schemas.GrantRead(
        id=plan.id,
        book=plan.book,
        member_id=plan.member,
        asset=plan.asset,
        amount=plan.amount,
        received=plan.amount - overflow,
        overflow=overflow,
        reason=plan.reason,
    )
    return schemas.GrantPosted(grant=grant, entry=entry_ref(posting))


POOL_ENTRIES_SQL = """
SELECT l.seq, e.tx_id, e.kind, e.posted_at, sum(l.amount) AS amount,
       (array_agg(l.posted_after ORDER BY l.leg_index DESC))[1] AS posted_after
  FROM journal_legs l
  JOIN journal_entries e ON e.book_code = l.book_code AND e.seq = l.seq
 WHERE l.account_id = CAST(:pool AS uuid)
 GROUP BY l.seq, e.tx_id, e.kind, e.posted_at
 ORDER BY l.seq DESC
 LIMIT :limit
"""


async def pools(session: AsyncSession, book: str, limit: int) -> schemas.PublicPools:
    """Each public pool of the book (by asset): its balance and its latest entries."""
    await ledger.get_book(session, book)
    rows = await session.execute(
        text(
            "SELECT id::text AS id, asset, posted, posted - pending_debits AS available "
            "FROM accounts WHERE book_code = :b AND owner = :owner "
            "AND meta ->> 'purpose' = :purpose ORDER BY asset"
        ),
        {"b": book, "owner": book_owner(book), "purpose": PUBLIC_POOL},
    )
    result = []
    for row in rows.all():
        recent = await session.execute(text(POOL_ENTRIES_SQL), {"pool": row.id, "limit": limit})
        result.append(
            schemas.PublicPool(
                asset=row.asset,
                account_id=row.id,
                posted=row.posted,
                available=row.available,
                recent=[
                    schemas.PoolEntry(**{**entry._asdict(), "amount": int(entry.amount)})
                    for entry in recent.all()
                ],
            )
        )
    return schemas.PublicPools(book=book, pools=result)
