"""Redemptions at a kiosk (no HTTP): a hold on the member's points and a reservation of stock,
then confirmed (the hold posted, the stock taken), cancelled or expired (both given back).

Each step appends its posting inside its own database transaction (`ledger.InTransaction`):
the hold with the redemption row, the code used and the stock reserved; the hold.post with the
stock taken; the hold.void with the stock given back. Each commits whole or not at all,
whatever fails or is killed between the posting and the rows (docs/kiosk.md §3.4), so nothing
waits for a retry to finish it. A step locks its own rows first (the code or the redemption,
then the items in id order), then appends (the book's head stays locked until the commit),
then only updates those rows or inserts new ones: a confirmation and a cancellation or expiry
of one redemption happen one after the other, and concurrent baskets cannot deadlock. Each
posting keeps a ledger key derived from the redemption id, so no step can post twice.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.exchange.accounts import find_member_account, purpose_account
from app.exchange.postings import require_not_erased
from app.http.caller import SYSTEM_CREDENTIAL, Caller
from app.identity.authorization import member_owner, org_owner
from app.identity.errors import MemberNotFound
from app.identity.members import get_member_row
from app.identity.personal import PersonalDataCipher
from app.kiosk import catalogue, codes, errors, schemas
from app.kiosk.catalogue import Site
from app.kiosk.schemas import (
    CodeCheckRead,
    PointsAvailable,
    RedemptionLine,
    RedemptionRead,
    RedemptionSettled,
)
from app.kit.faults import fault_point
from app.kit.problems import is_problem
from app.ledger import errors as ledger_errors
from app.ledger import service as ledger
from app.ledger.journal import KIND_HOLD
from app.ledger.outcomes import IdempotencyRef, Outcome, refusal
from app.ledger.posting import Draft
from app.ledger.sequencer import Sequencer

log = structlog.get_logger(__name__)

# The purpose of a kiosk site's account that redeemed units are posted to.
REDEMPTION_ACCOUNT = "redemption"
# The ledger's hold outlives the redemption by this much, so that the ledger's own sweeper
# never voids a hold that a confirmation may still post: the redemption's expiry voids it.
HOLD_GRACE_S = 60

# Signs the receipt of a journal entry (the entry, its stored bytes, its hash).
ReceiptSigner = Callable[[dict[str, Any], bytes, str], Awaitable[str]]

COLUMNS = (
    "id, site_id, book_code AS book, member_id, asset, total, lines, hold_id, status, "
    "expires_at, tx_id, created_at, resolved_at"
)


def _ref(step: str, redemption_id: uuid.UUID) -> IdempotencyRef:
    """The ledger key of a step's posting: one per redemption and step, whichever request
    (or the expiry sweeper) makes it."""
    key = f"kiosk_{step}:{redemption_id}"
    return IdempotencyRef(SYSTEM_CREDENTIAL, key, key)


async def site_account(sessions: async_sessionmaker[AsyncSession], site: Site, asset: str) -> str:
    """The site's redemption account for an asset, opened (in a committed transaction of its
    own, before the posting that needs it) if missing."""
    owner = org_owner(str(site.id))
    return await purpose_account(sessions, site.book, owner, REDEMPTION_ACCOUNT, asset)


@dataclass(frozen=True, slots=True)
class Prepared:
    """What a redemption needs opened or read before its transaction."""

    code_id: uuid.UUID
    site: Site
    asset: str
    site_account: str


async def prepare(
    sessions: async_sessionmaker[AsyncSession],
    cipher: PersonalDataCipher,
    site: Site,
    data: schemas.RedemptionCreate,
) -> Prepared:
    """Check the code's signature and open the site's account for the basket's asset."""
    code_id = codes.decode(cipher, data.code)
    async with sessions() as session:
        asset = await session.scalar(
            text("SELECT asset FROM kiosk_items WHERE id = :id AND site_id = :site"),
            {"id": data.items[0].item_id, "site": site.id},
        )
    if asset is None:
        raise errors.ItemNotFound(f"item {data.items[0].item_id} does not exist at this site")
    return Prepared(code_id, site, str(asset), await site_account(sessions, site, str(asset)))


async def points_of(
    session: AsyncSession, site: Site, member_id: uuid.UUID, expires_at: datetime
) -> CodeCheckRead:
    """The member's spendable balance in each asset the site sells, in the site's book (a
    member of another book holds none there: 404, as for any member out of reach)."""
    member = await get_member_row(session, member_id)
    require_not_erased(member_id, member.status)
    rows = await session.execute(
        text(
            "SELECT a.asset, a.posted - a.pending_debits AS available FROM accounts a "
            "WHERE a.book_code = :book AND a.owner = :owner AND a.asset IN "
            "(SELECT DISTINCT asset FROM kiosk_items WHERE site_id = :site) ORDER BY a.asset"
        ),
        {"book": site.book, "owner": member_owner(str(member_id)), "site": site.id},
    )
    points = [PointsAvailable(asset=row.asset, available=row.available) for row in rows]
    if member.book != site.book and not points:
        raise MemberNotFound(f"member {member_id} does not exist")
    return CodeCheckRead(
        member_id=member_id,
        volunteer_number=member.volunteer_number,
        expires_at=expires_at,
        points=points,
    )


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A confirmed redemption and the hold.post entry that took its points."""

    redemption: RedemptionRead
    book: str
    seq: int
    tx_id: str
    entry_hash: str


def _redemption(row: Row[Any]) -> RedemptionRead:
    """A redemption's row as the API shows it."""
    found = row._asdict()
    if isinstance(found["lines"], str):
        found["lines"] = json.loads(found["lines"])
    return RedemptionRead.model_validate(found)


async def get(
    session: AsyncSession, redemption_id: uuid.UUID, lock: bool = False
) -> RedemptionRead:
    """A redemption (locked for this transaction if `lock`); 404 if unknown."""
    row = (
        await session.execute(
            text(
                f"SELECT {COLUMNS} FROM kiosk_redemptions WHERE id = :id"
                + (" FOR UPDATE" if lock else "")
            ),
            {"id": redemption_id},
        )
    ).one_or_none()
    if row is None:
        raise errors.RedemptionNotFound(f"redemption {redemption_id} does not exist")
    return _redemption(row)


async def of_holds(
    session: AsyncSession, hold_ids: set[uuid.UUID]
) -> dict[uuid.UUID, RedemptionRead]:
    """The redemptions whose ledger holds these are, by hold id (a hold of no redemption is
    absent)."""
    if not hold_ids:
        return {}
    rows = await session.execute(
        text(f"SELECT {COLUMNS} FROM kiosk_redemptions WHERE hold_id = ANY(CAST(:ids AS uuid[]))"),
        {"ids": list(hold_ids)},
    )
    found = [_redemption(row) for row in rows]
    return {r.hold_id: r for r in found}


async def list_for_site(
    session: AsyncSession, site_id: uuid.UUID, status: str | None, limit: int
) -> list[RedemptionRead]:
    """The site's redemptions, newest first (only those of `status`, if given)."""
    rows = await session.execute(
        text(
            f"SELECT {COLUMNS} FROM kiosk_redemptions WHERE site_id = :site "
            "AND (CAST(:status AS text) IS NULL OR status = :status) "
            "ORDER BY created_at DESC, id LIMIT :limit"
        ),
        {"site": site_id, "status": status, "limit": limit},
    )
    return [_redemption(row) for row in rows]


async def redeem(
    session: AsyncSession,
    sequencer: Sequencer,
    caller: Caller,
    redemption_id: uuid.UUID,
    prepared: Prepared,
    data: schemas.RedemptionCreate,
    now: datetime,
    ttl_s: int,
) -> RedemptionRead:
    """Claim the code, lock the basket, hold the member's points and reserve the stock."""
    site = prepared.site
    member_id = await codes.claim(session, prepared.code_id, data.member_id, now)
    status = await session.scalar(
        text("SELECT status FROM members WHERE id = :id"), {"id": member_id}
    )
    if status is None:
        raise MemberNotFound(f"member {member_id} does not exist")
    require_not_erased(member_id, str(status))
    # One asset, that of the first item (`prepare` opened the site's account for it).
    basket = await catalogue.lock_basket(session, site.id, data.items)
    lines = [
        RedemptionLine(
            item_id=item.id,
            name=item.name,
            quantity=quantity,
            price=item.price,
            amount=item.price * quantity,
        )
        for item, quantity in basket
    ]
    total = sum(line.amount for line in lines)
    # The member spends in the site's book: their own, or one they moved units to.
    account = await find_member_account(session, site.book, member_id, prepared.asset)
    if account is None:
        raise ledger_errors.InsufficientFunds(
            f"the member holds no {prepared.asset} in book {site.book!r}",
            account_id=None,
            available=0,
        )
    draft = Draft(
        site.book,
        "hold",
        KIND_HOLD,
        [(account, -total), (prepared.site_account, total)],
        "",
        {"redemption": str(redemption_id)},
        expires_in_s=ttl_s + HOLD_GRACE_S,
        actor=caller.actor(),
    )
    # In this transaction: the hold commits with the redemption, the code and the reservation.
    outcome = await ledger.InTransaction(session, sequencer).submit(
        draft, _ref("redemption", redemption_id)
    )
    if outcome.status_code >= 400:
        raise refusal(outcome)
    fault_point("kiosk.redeem.posted")
    for item, quantity in basket:
        await catalogue.reserve(session, item.id, quantity)
    await codes.use(session, prepared.code_id, redemption_id)
    await session.execute(
        text(
            "INSERT INTO kiosk_redemptions (id, site_id, book_code, member_id, code_id, asset, "
            "total, lines, hold_id, status, expires_at, created_by) VALUES (:id, :site, :book, "
            ":member, :code, :asset, :total, CAST(:lines AS jsonb), CAST(:hold AS uuid), "
            "'pending', :expires, CAST(:by AS uuid))"
        ),
        {
            "id": redemption_id,
            "site": site.id,
            "book": site.book,
            "member": member_id,
            "code": prepared.code_id,
            "asset": prepared.asset,
            "total": total,
            "lines": json.dumps([line.model_dump(mode="json") for line in lines]),
            "hold": outcome.body["id"],
            "expires": now + timedelta(seconds=ttl_s),
            "by": caller.credential.id,
        },
    )
    return await get(session, redemption_id)


async def _settle(
    session: AsyncSession,
    row: RedemptionRead,
    status: str,
    tx_id: str | None,
    created_by: str,
) -> None:
    if status == "confirmed":
        await catalogue.take(session, row.lines, row.id, created_by)
    else:
        await catalogue.release(session, row.lines)
    await session.execute(
        text(
            "UPDATE kiosk_redemptions SET status = :status, tx_id = CAST(:tx AS uuid), "
            "resolved_at = now() WHERE id = :id"
        ),
        {"status": status, "tx": tx_id, "id": row.id},
    )


async def _resolve_hold(
    session: AsyncSession,
    sequencer: Sequencer,
    row: RedemptionRead,
    ref: IdempotencyRef,
    void: bool,
    actor: dict[str, str] | None,
) -> Outcome:
    hold = await ledger.get_hold(session, row.hold_id)
    in_transaction = ledger.InTransaction(session, sequencer)
    return await ledger.resolve_hold(in_transaction, hold, ref, void=void, actor=actor)


async def confirm(
    session: AsyncSession,
    sequencer: Sequencer,
    caller: Caller,
    row: RedemptionRead,
    now: datetime,
) -> Confirmation:
    """Post the hold and take the stock (the redemption locked by the caller); the answer
    without its receipt, which `receipt` signs once this transaction has committed."""
    if row.status == "expired" or (row.status == "pending" and now >= row.expires_at):
        raise errors.RedemptionExpired(f"the redemption expired at {row.expires_at}")
    if row.status != "pending":
        raise errors.RedemptionNotPending(
            f"the redemption is {row.status}", redemption_status=row.status
        )
    await catalogue.lock_lines(session, row.lines)
    ref = _ref("confirm", row.id)
    outcome = await _resolve_hold(session, sequencer, row, ref, False, caller.actor())
    if outcome.status_code >= 400:
        problem = refusal(outcome)
        if is_problem(problem, ledger_errors.HoldExpired, ledger_errors.HoldNotPending):
            raise errors.RedemptionExpired("the redemption's hold is no longer pending")
        raise problem
    fault_point("kiosk.confirm.posted")
    posting = outcome.body
    await _settle(session, row, "confirmed", posting["id"], caller.credential.id)
    return Confirmation(
        await get(session, row.id),
        posting["book"],
        posting["seq"],
        posting["id"],
        posting["entry_hash"],
    )


async def receipt(session: AsyncSession, sign: ReceiptSigner, tx_id: str) -> str:
    """The signed receipt of a confirmation's hold.post entry, read from the journal: signed
    after the confirmation commits (the same receipt on every answer, never stored)."""
    row = (
        await session.execute(
            text("SELECT body, entry_hash FROM journal_entries WHERE tx_id = CAST(:id AS uuid)"),
            {"id": tx_id},
        )
    ).one()
    body = bytes(row.body)
    return await sign(json.loads(body), body, str(row.entry_hash))


async def cancel(
    session: AsyncSession, sequencer: Sequencer, caller: Caller, row: RedemptionRead
) -> RedemptionSettled:
    """Void the hold and give the stock back (the redemption locked by the caller)."""
    if row.status != "pending":
        raise errors.RedemptionNotPending(
            f"the redemption is {row.status}", redemption_status=row.status
        )
    await catalogue.lock_lines(session, row.lines)
    tx_id = await _void(session, sequencer, row, _ref("cancel", row.id), caller.actor())
    fault_point("kiosk.cancel.posted")
    await _settle(session, row, "cancelled", tx_id, caller.credential.id)
    return RedemptionSettled(redemption=await get(session, row.id))


async def _void(
    session: AsyncSession,
    sequencer: Sequencer,
    row: RedemptionRead,
    ref: IdempotencyRef,
    actor: dict[str, str] | None,
) -> str | None:
    """Void the redemption's hold; the hold.void's tx id (None if the ledger had voided it
    already, at the hold's own expiry)."""
    outcome = await _resolve_hold(session, sequencer, row, ref, True, actor)
    if outcome.status_code < 400:
        return str(outcome.body["id"])
    hold = await ledger.get_hold(session, row.hold_id)
    if hold.status in ("voided", "expired"):
        return None
    raise refusal(outcome)


async def expire_due(
    sessions: async_sessionmaker[AsyncSession],
    sequencer: Sequencer,
    now: datetime,
    limit: int = 200,
) -> int:
    """Void the pending redemptions whose time is up and give their stock back; how many.
    Every server process may run it: each redemption is settled once, under its row lock, in
    a transaction of its own with its hold.void."""
    async with sessions() as session:
        due = (
            await session.scalars(
                text(
                    "SELECT id FROM kiosk_redemptions WHERE status = 'pending' "
                    "AND expires_at <= :now ORDER BY expires_at LIMIT :limit"
                ),
                {"now": now, "limit": limit},
            )
        ).all()
    settled = 0
    for redemption_id in due:
        async with sessions() as session, session.begin():
            found = (
                await session.execute(
                    text(
                        f"SELECT {COLUMNS} FROM kiosk_redemptions WHERE id = :id "
                        "AND status = 'pending' FOR UPDATE SKIP LOCKED"
                    ),
                    {"id": redemption_id},
                )
            ).one_or_none()
            if found is None:
                continue
            row = _redemption(found)
            await catalogue.lock_lines(session, row.lines)
            hold = await ledger.get_hold(session, row.hold_id)
            if hold.status == "posted":
                # Posted without this redemption: by a confirmation of an earlier version that
                # did not finish, or through the holds API. The points were taken: so are the
                # goods, and the report reconciles.
                await _settle(session, row, "confirmed", str(hold.resolved_by), SYSTEM_CREDENTIAL)
                continue
            tx_id = await _void(session, sequencer, row, _ref("expiry", row.id), None)
            fault_point("kiosk.expire.posted")
            await _settle(session, row, "expired", tx_id, SYSTEM_CREDENTIAL)
            settled += 1
    return settled
