"""Transfers of a member's units from one book to another under a recognition agreement
(no HTTP).

A transfer moves a member's units out of `from_book` into `to_book` as two linked entries,
each naming the other in `meta.counterpart`, appended inside the request's own database
transaction (`ledger.InTransaction.submit_linked`) together with the transfer's row: both
entries and the row commit together or nothing does:

- `recognition.out` in from_book: the member's account → from_book's clearing account for
  to_book (`amount`, from_asset);
- `recognition.in` in to_book: to_book's clearing account for from_book → the member's account
  there (`floor(amount × num / den)`, to_asset; what a storage cap turns away goes to to_book's
  public time pool as a third leg).

So each book's clearing account for the other mirrors what crossed (`reconciliation.py`
checks that from the journal itself).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.exchange.accounts import (
    book_account,
    clearing_purpose,
    credit_limits,
    find_member_account,
    member_account,
)
from app.exchange.errors import MemberNotEligible
from app.exchange.ratios import convert
from app.exchange.recognition import errors, schemas
from app.exchange.recognition.agreements import agreement_row, visible_agreement
from app.http.caller import SYSTEM_CREDENTIAL, Caller
from app.identity import members
from app.identity.access import acting_member, sees_member_between_books
from app.identity.authorization import require_admin_reach
from app.identity.errors import MemberNotFound
from app.kit.faults import fault_point
from app.kit.problems import (
    IdempotencyInFlight,
    IdempotencyKeyReused,
    ServiceUnavailable,
    TimebankError,
    is_problem,
)
from app.ledger import errors as ledger_errors
from app.ledger.outcomes import IdempotencyRef, Outcome, refusal
from app.ledger.posting import Draft
from app.ledger.sequencer import Sequencer
from app.ledger.service import InTransaction

KIND_OUT = "recognition.out"
KIND_IN = "recognition.in"

TRANSFER_SQL = """
SELECT t.*, a.from_book, a.from_asset, a.to_book, a.to_asset, a.ratio_num, a.ratio_den,
       f.seq AS from_seq, f.entry_hash AS from_hash, i.seq AS to_seq, i.entry_hash AS to_hash,
       convert_from(i.body, 'UTF8')::jsonb -> 'meta' -> 'overflow' AS overflow
  FROM recognition_transfers t
  JOIN recognition_agreements a ON a.id = t.agreement_id
  JOIN journal_entries f ON f.tx_id = t.from_tx
  JOIN journal_entries i ON i.tx_id = t.to_tx
"""


def transfer_view(row: Row[Any]) -> schemas.TransferRead:
    """A transfer as the API shows it, with where its two entries sit in their chains."""
    overflow = row.overflow
    if isinstance(overflow, str):
        overflow = json.loads(overflow)
    diverted = sum(int(item["amount"]) for item in overflow or [])
    return schemas.TransferRead.model_validate(
        {
            "id": row.id,
            "agreement_id": row.agreement_id,
            "member_id": row.member_id,
            "from_book": row.from_book,
            "from_asset": row.from_asset,
            "from_amount": row.from_amount,
            "to_book": row.to_book,
            "to_asset": row.to_asset,
            "to_amount": row.to_amount,
            "ratio": {"num": row.ratio_num, "den": row.ratio_den},
            "credited": row.to_amount - diverted,
            "overflow": diverted,
            "from_entry": {
                "book": row.from_book,
                "seq": row.from_seq,
                "tx_id": row.from_tx,
                "entry_hash": row.from_hash,
            },
            "to_entry": {
                "book": row.to_book,
                "seq": row.to_seq,
                "tx_id": row.to_tx,
                "entry_hash": row.to_hash,
            },
            "created_by": row.created_by,
            "created_at": row.created_at,
        }
    )


async def transfer_row(session: AsyncSession, transfer_id: uuid.UUID) -> Row[Any] | None:
    """A transfer's row, with its agreement's terms and its entries' places; None if unknown."""
    return (
        await session.execute(text(f"{TRANSFER_SQL} WHERE t.id = :id"), {"id": transfer_id})
    ).one_or_none()


async def get_transfer(
    session: AsyncSession, caller: Caller, transfer_id: uuid.UUID
) -> schemas.TransferRead:
    """A transfer within the caller's reach; 404 otherwise."""
    row = await transfer_row(session, transfer_id)
    if row is None or not await sees_member_between_books(
        session, caller, row.member_id, (row.from_book, row.to_book)
    ):
        raise errors.TransferNotFound(f"recognition transfer {transfer_id} does not exist")
    return transfer_view(row)


async def member_transfers(
    session: AsyncSession, member_id: uuid.UUID, after: uuid.UUID | None, limit: int
) -> schemas.TransferPage:
    """A member's transfers, oldest first (keyset on created_at, id): a page of up to `limit`
    after `after`."""
    rows = await session.execute(
        text(
            f"{TRANSFER_SQL} WHERE t.member_id = :member "
            "AND (CAST(:after AS uuid) IS NULL OR (t.created_at, t.id) > "
            "(SELECT created_at, id FROM recognition_transfers WHERE id = CAST(:after AS uuid))) "
            "ORDER BY t.created_at, t.id LIMIT :limit"
        ),
        {"member": member_id, "after": after, "limit": limit + 1},
    )
    items = [transfer_view(row) for row in rows]
    more = len(items) > limit
    return schemas.TransferPage(
        items=items[:limit], next_after=items[limit - 1].id if more else None
    )


@dataclass(slots=True)
class PreparedTransfer:
    """What a transfer needs that is read or opened before its transaction: the accounts are
    opened in committed transactions of their own, so the transfer's transaction, which holds
    both books' heads once it appends, needs no second connection."""

    agreement_id: uuid.UUID
    member_id: uuid.UUID
    amount: int
    to_amount: int
    from_book: str
    to_book: str
    active: bool
    from_account: str = ""
    to_account: str = ""
    out_clearing: str = ""
    in_clearing: str = ""
    storage_caps: dict[str, int] = field(default_factory=dict)
    overflow_to: str | None = None


async def prepare_transfer(
    sessions: async_sessionmaker[AsyncSession], caller: Caller, data: schemas.TransferCreate
) -> PreparedTransfer:
    """Check reach and the request, and open the accounts the transfer will use."""
    async with sessions() as session:
        row = await visible_agreement(session, caller, data.agreement_id)
        require_admin_reach(
            caller,
            row.from_book,
            f"only an admin reaching book {row.from_book!r} may move hours out of it",
        )
        member_id = acting_member(caller, data.member_id)
        member = await members.get_member_row(session, member_id)
        from_account = await find_member_account(session, row.from_book, member_id, row.from_asset)
        # An admin reaches the members whose hours are in its book (or who registered there).
        if caller.role == "admin" and from_account is None and member.book != row.from_book:
            raise MemberNotFound(f"member {member_id} does not exist")
    if from_account is None:
        raise errors.NoAccountInBook(
            f"member {member_id} has no {row.from_asset} account in book {row.from_book!r}"
        )
    to_amount = convert(data.amount, row.ratio_num, row.ratio_den)
    if to_amount < 1:
        raise errors.AmountTooSmall(
            f"{data.amount} {row.from_asset} at {row.ratio_num}/{row.ratio_den} is less than one "
            f"{row.to_asset}",
            minimum=-(-row.ratio_den // row.ratio_num),
        )
    prepared = PreparedTransfer(
        row.id,
        member_id,
        data.amount,
        to_amount,
        row.from_book,
        row.to_book,
        # Nothing to open for a transfer that will be refused (or answered from a replay).
        row.status == "active" and member.status == "active",
        from_account,
    )
    if prepared.active:
        prepared.to_account = await member_account(sessions, row.to_book, member_id, row.to_asset)
        prepared.out_clearing = await book_account(
            sessions, row.from_book, clearing_purpose(row.to_book), row.from_asset
        )
        prepared.in_clearing = await book_account(
            sessions, row.to_book, clearing_purpose(row.from_book), row.to_asset
        )
        limits = await credit_limits(sessions, row.to_book, row.to_asset, [prepared.to_account])
        prepared.storage_caps, prepared.overflow_to = limits.storage_caps, limits.overflow_to
    return prepared


# Refusals of the ledger answered with the ledger's own problem type.
_LEDGER_PROBLEMS: tuple[type[TimebankError], ...] = (
    ledger_errors.InsufficientFunds,
    ledger_errors.NothingToMove,
    ledger_errors.AccountNotOpen,
    IdempotencyKeyReused,
    IdempotencyInFlight,
)


def ledger_refusal(outcome: Outcome) -> TimebankError:
    """The error that answers a refused linked posting (nothing was written in either book)."""
    refused = refusal(outcome)
    if is_problem(refused, *_LEDGER_PROBLEMS):
        return refused
    detail = refused.detail or refused.title
    if outcome.status_code >= 500:
        return ServiceUnavailable(
            f"the transfer could not be stored ({detail}); retry with the same Idempotency-Key"
        )
    return errors.TransferRefused(
        f"the ledger refused the transfer: {detail}", ledger_problem=refused.problem()
    )


def transfer_ref(transfer_id: uuid.UUID, request_hash: str) -> IdempotencyRef:
    """The idempotency key of a transfer's one linked posting."""
    return IdempotencyRef(SYSTEM_CREDENTIAL, f"recognition_transfer:{transfer_id}", request_hash)


async def execute_transfer(
    session: AsyncSession,
    sequencer: Sequencer,
    caller: Caller,
    prepared: PreparedTransfer,
    transfer_id: uuid.UUID,
    request_hash: str,
) -> schemas.TransferRead:
    """Post the transfer's two linked entries once (idempotent on `transfer_id`) and record it,
    all in `session`'s transaction.

    The agreement and the member stay locked (shared) until this transaction ends: ending the
    agreement or erasing the member waits for the transfers under way.
    """
    done = await transfer_row(session, transfer_id)
    if done is not None:  # recorded by an earlier attempt with the same key
        return transfer_view(done)
    row = await agreement_row(session, prepared.agreement_id, "FOR SHARE")
    if row is None or row.status != "active":
        raise errors.AgreementEnded(f"recognition agreement {prepared.agreement_id} has ended")
    status = await session.scalar(
        text("SELECT status FROM members WHERE id = :id FOR SHARE"), {"id": prepared.member_id}
    )
    if status != "active":
        raise MemberNotEligible(f"member {prepared.member_id} is {status}")
    if not prepared.active:  # the agreement or the member changed since: retry afresh
        raise ServiceUnavailable("the transfer's accounts are not open; retry")
    meta = {"agreement": str(prepared.agreement_id), "transfer": str(transfer_id)}
    out = Draft(
        prepared.from_book,
        "post",
        KIND_OUT,
        [(prepared.from_account, -prepared.amount), (prepared.out_clearing, prepared.amount)],
        "",
        dict(meta),
        actor=caller.actor(),
    )
    into = Draft(
        prepared.to_book,
        "post",
        KIND_IN,
        [(prepared.in_clearing, -prepared.to_amount), (prepared.to_account, prepared.to_amount)],
        "",
        dict(meta),
        actor=caller.actor(),
        storage_caps=prepared.storage_caps,
        overflow_to=prepared.overflow_to,
        beneficiary=prepared.to_account,
    )
    # In this transaction (agreement and member locked above): both entries and the transfer's
    # row commit together or not at all.
    outcomes = await InTransaction(session, sequencer).submit_linked(
        [out, into], transfer_ref(transfer_id, request_hash)
    )
    for outcome in outcomes:
        if outcome.status_code >= 400:
            raise ledger_refusal(outcome)
    fault_point("recognition.transfer.posted")
    await session.execute(
        text(
            "INSERT INTO recognition_transfers (id, agreement_id, member_id, from_amount, "
            "to_amount, from_tx, to_tx, created_by) VALUES (:id, :agreement, :member, :amount, "
            ":to_amount, CAST(:from_tx AS uuid), CAST(:to_tx AS uuid), CAST(:by AS uuid))"
        ),
        {
            "id": transfer_id,
            "agreement": prepared.agreement_id,
            "member": prepared.member_id,
            "amount": prepared.amount,
            "to_amount": prepared.to_amount,
            "from_tx": outcomes[0].body["id"],
            "to_tx": outcomes[1].body["id"],
            "by": caller.credential.id,
        },
    )
    recorded = await transfer_row(session, transfer_id)
    assert recorded is not None  # inserted above, in this transaction
    return transfer_view(recorded)
