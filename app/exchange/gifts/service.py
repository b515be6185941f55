"""Gifts (转赠) of a member's units to another member, in one book (no HTTP).

A gift is one `gift` entry: the giver's account to the receiver's (and, beyond the receiver's
storage cap, to the book's public time pool). The book's policy for the asset may cap what a
member gives per calendar year and list the relationships a gift may name. The giver's
`members` row stays locked from the checks to the commit, so concurrent gifts of one giver
(from any server process) are checked one after the other against the journal's own figure.
The entry is appended inside the request's own transaction (`ledger.InTransaction`), so the
gift's entry and its answer under the Idempotency-Key commit together or not at all.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.exchange.accounts import (
    PUBLIC_POOL,
    asset_policy,
    book_owner,
    credit_limits,
    find_member_account,
    member_account,
    storage_limits,
)
from app.exchange.assets.service import require_asset
from app.exchange.gifts import errors, schemas
from app.exchange.postings import (
    entry_ref,
    lock_member,
    overflow_of,
    posting_ref,
    require_not_erased,
)
from app.exchange.usage import debited_since, period_start
from app.http.caller import Caller
from app.identity.authorization import acts_in_book_for, sees_member
from app.identity.errors import MemberNotFound
from app.identity.members import MemberRow, get_member_row, member_accounts_in
from app.kit.faults import fault_point
from app.ledger import errors as ledger_errors
from app.ledger.outcomes import refusal
from app.ledger.posting import Draft
from app.ledger.sequencer import Sequencer
from app.ledger.service import InTransaction, posted_before

KIND_GIFT = "gift"


@dataclass(frozen=True, slots=True)
class GiftPlan:
    """A gift asked for, with what was looked up before its transaction."""

    id: uuid.UUID
    book: str
    giver: uuid.UUID
    receiver: uuid.UUID
    asset: str
    amount: int
    relationship: str | None
    receiver_account: str


async def _present(
    session: AsyncSession, caller: Caller | None, member: MemberRow, book: str, asset: str
) -> bool:
    """Whether a member takes part in gifts of `asset` in `book`: registered there, or holding
    an account of it there (hours moved in from another book); and, for the giver (`caller`
    given), within the caller's reach: as for the member in their own book, else the book's
    admins or the member's own mini-program of that book."""
    if member.book == book:
        return caller is None or await sees_member(session, caller, member)
    if caller is not None and not acts_in_book_for(caller, book, str(member.id)):
        return False
    return await find_member_account(session, book, member.id, asset) is not None


async def plan_gift(
    sessions: async_sessionmaker[AsyncSession],
    caller: Caller,
    gift_id: uuid.UUID,
    giver: uuid.UUID,
    receiver: uuid.UUID,
    book: str | None,
    asset: str,
    amount: int,
    relationship: str | None,
) -> GiftPlan:
    """Check reach and open what the gift needs, before its transaction (which then needs no
    connection besides its own): the receiver's account, and the book's public pool if the
    asset has a storage cap."""
    if giver == receiver:
        raise errors.GiftToSelf("a member cannot give to themselves", member_id=str(giver))
    async with sessions() as session:
        giver_row = await get_member_row(session, giver)
        book = book or giver_row.book
        if not await _present(session, caller, giver_row, book, asset):
            raise MemberNotFound(f"member {giver} does not exist in book {book!r}")
        try:
            receiver_row = await get_member_row(session, receiver)
        except MemberNotFound:
            receiver_row = None
        if receiver_row is None or not await _present(session, None, receiver_row, book, asset):
            raise MemberNotFound(f"member {receiver} does not exist in book {book!r}")
        await require_asset(session, asset)
    receiver_account = await member_account(sessions, book, receiver, asset)
    await credit_limits(sessions, book, asset, [receiver_account])
    return GiftPlan(gift_id, book, giver, receiver, asset, amount, relationship, receiver_account)


async def _account_status(session: AsyncSession, account_id: str) -> str:
    status = await session.scalar(
        text("SELECT status FROM accounts WHERE id = CAST(:id AS uuid)"), {"id": account_id}
    )
    return str(status)


async def _check(
    session: AsyncSession,
    plan: GiftPlan,
    giver_status: str,
    giver_account: str | None,
    now: datetime,
    zone: ZoneInfo,
) -> str:
    """The gift's rules, in order; the giver's account."""
    receiver_status = await session.scalar(
        text("SELECT status FROM members WHERE id = :id"), {"id": plan.receiver}
    )
    require_not_erased(plan.giver, giver_status)
    require_not_erased(plan.receiver, str(receiver_status))
    if giver_account is None:
        raise ledger_errors.InsufficientFunds(
            f"member {plan.giver} holds no {plan.asset}", account_id=None, available=0
        )
    for member, account in ((plan.giver, giver_account), (plan.receiver, plan.receiver_account)):
        status = await _account_status(session, account)
        if status != "open":
            raise ledger_errors.AccountNotOpen(
                f"member {member}'s {plan.asset} account is {status}",
                account_id=account,
                account_status=status,
                member_id=str(member),
            )
    policy = await asset_policy(session, plan.book, plan.asset)
    allowed = policy.gift_relations
    if allowed is not None and plan.relationship is None:
        raise errors.GiftRelationshipRequired(
            f"gifts of {plan.asset} in book {plan.book!r} must name the relationship, one of "
            f"{', '.join(allowed)}",
            allowed_relations=allowed,
        )
    if allowed is not None and plan.relationship not in allowed:
        raise errors.GiftRelationshipNotAllowed(
            f"gifts of {plan.asset} in book {plan.book!r} are allowed only to {', '.join(allowed)}",
            relationship=plan.relationship,
            allowed_relations=allowed,
        )
    if policy.gift_yearly_cap is not None:
        since = period_start(now, zone, "year")
        given = await debited_since(session, giver_account, KIND_GIFT, since)
        if given + plan.amount > policy.gift_yearly_cap:
            raise errors.GiftYearlyCapExceeded(
                f"member {plan.giver} gave {given} {plan.asset} since {since.date()}; "
                f"{plan.amount} more would pass the yearly cap of {policy.gift_yearly_cap}",
                cap=policy.gift_yearly_cap,
                given=given,
                remaining=max(0, policy.gift_yearly_cap - given),
                period_start=since.isoformat(),
            )
    return giver_account


async def give(
    session: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    sequencer: Sequencer,
    plan: GiftPlan,
    caller: Caller,
    request_hash: str,
    now: datetime,
    zone: ZoneInfo,
) -> schemas.GiftPosted:
    """Check and post a gift in `session`'s transaction (which must commit promptly after
    it): the answer, with the gift and its entry."""
    giver = await lock_member(session, plan.giver)
    ref = posting_ref(KIND_GIFT, plan.id, request_hash)
    found = await find_member_account(session, plan.book, plan.giver, plan.asset)
    if found is not None and await posted_before(session, ref):
        # Posted and not answered: only an earlier version, which posted before its
        # transaction, left that; its checks passed then, and the ledger replays it.
        giver_account = found
    else:
        giver_account = await _check(session, plan, giver.status, found, now, zone)
    limits = await storage_limits(session, sessions, plan.book, plan.asset, [plan.receiver_account])
    draft = Draft(
        plan.book,
        "post",
        KIND_GIFT,
        [(giver_account, -plan.amount), (plan.receiver_account, plan.amount)],
        "",
        {"gift": str(plan.id), "relationship": plan.relationship},
        actor=caller.actor(),
        storage_caps=limits.storage_caps,
        overflow_to=limits.overflow_to,
        beneficiary=plan.receiver_account,
    )
    # In this transaction (the giver locked above): the entry and the answer commit together.
    outcome = await InTransaction(session, sequencer).submit(draft, ref)
    if outcome.status_code >= 400:
        raise refusal(outcome)
    fault_point("gift.give.posted")
    posting = outcome.body
    overflow = overflow_of(posting["entry"]["meta"], plan.receiver_account)
    gift = schemas.GiftRead(
        id=plan.id,
        book=plan.book,
        from_member_id=plan.giver,
        to_member_id=plan.receiver,
        asset=plan.asset,
        amount=plan.amount,
        received=plan.amount - overflow,
        overflow=overflow,
        relationship=plan.relationship,
    )
    return schemas.GiftPosted(gift=gift, entry=entry_ref(posting))


# A member's gifts: the entries that move one of its accounts, and those whose whole amount a
# storage cap sent to the public pool (their legs do not name the receiver's account: their
# `meta.overflow` does; only gift entries that credit the pool are parsed).
GIFTS_SQL = """
SELECT e.seq, e.tx_id::text AS tx_id, convert_from(e.body, 'UTF8') AS body
  FROM journal_entries e
 WHERE e.book_code = :book AND e.kind = :kind AND e.seq < :before
   AND (e.seq IN (SELECT l.seq FROM journal_legs l
                   WHERE l.book_code = :book AND l.account_id = ANY(CAST(:ids AS uuid[])))
        OR (e.seq IN (SELECT l.seq FROM journal_legs l JOIN accounts a ON a.id = l.account_id
                       WHERE l.book_code = :book AND a.owner = :pool_owner
                         AND a.meta ->> 'purpose' = :pool)
            AND EXISTS (SELECT 1 FROM jsonb_array_elements(
                                 CAST(convert_from(e.body, 'UTF8') AS jsonb) #> '{meta,overflow}') o
                         WHERE o ->> 'account' = ANY(CAST(:ids AS text[])))))
 ORDER BY e.seq DESC
 LIMIT :limit
"""


async def list_gifts(
    session: AsyncSession, member: MemberRow, book: str, before_seq: int | None, limit: int
) -> schemas.GiftPage:
    """The gifts a member gave and received in `book`, newest first, read from the journal
    (keyset pagination on seq)."""
    ids = await member_accounts_in(session, member, book)
    rows = (
        await session.execute(
            text(GIFTS_SQL),
            {
                "book": book,
                "kind": KIND_GIFT,
                "before": before_seq or 2**62,
                "ids": ids,
                "pool_owner": book_owner(book),
                "pool": PUBLIC_POOL,
                "limit": limit + 1,
            },
        )
    ).all()
    page = rows[:limit]
    entries = [json.loads(row.body) for row in page]
    accounts = {leg["account_id"] for entry in entries for leg in entry["legs"]}
    accounts |= {o["account"] for e in entries for o in e["meta"].get("overflow") or []}
    owners: dict[str, str] = dict(
        (
            await session.execute(
                text("SELECT id::text, owner FROM accounts WHERE id = ANY(CAST(:ids AS uuid[]))"),
                {"ids": sorted(accounts)},
            )
        ).all()
    )
    mine = str(member.id)
    items = []
    for row, entry in zip(page, entries, strict=True):
        meta = entry["meta"]
        given = next(leg for leg in entry["legs"] if leg["amount"] < 0)
        # The receiver: the member credited, or the capped account the whole gift passed by.
        receiver_account = next(
            (
                leg["account_id"]
                for leg in entry["legs"]
                if leg["amount"] > 0 and owners.get(leg["account_id"], "").startswith("member:")
            ),
            None,
        ) or next(o["account"] for o in meta["overflow"])
        giver = owners[given["account_id"]].removeprefix("member:")
        receiver = owners[receiver_account].removeprefix("member:")
        overflow = overflow_of(meta, receiver_account)
        items.append(
            schemas.GiftListItem.model_validate(
                {
                    "id": meta.get("gift"),
                    "book": book,
                    "direction": "given" if giver == mine else "received",
                    "from_member_id": giver,
                    "to_member_id": receiver,
                    "asset": given["asset"],
                    "amount": -given["amount"],
                    "received": -given["amount"] - overflow,
                    "overflow": overflow,
                    "relationship": meta.get("relationship"),
                    "tx_id": row.tx_id,
                    "seq": row.seq,
                    "posted_at": entry["posted_at"],
                }
            )
        )
    more = len(rows) > limit
    return schemas.GiftPage(items=items, next_before_seq=page[-1].seq if more and page else None)
