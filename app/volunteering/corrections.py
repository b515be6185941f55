"""Correcting an approved service record (no HTTP, docs/volunteering.md §6.1): a reversal of
its credit while what it credited is still held; else a `service_correction` that takes back
what is held and books the rest as owed by the member or written off by the organisation; what
a member owes settled first by their later credits; and writing off what is owed.

Each action posts through the ledger in the transaction that changes the record's own rows.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.http.caller import SYSTEM_CREDENTIAL, Caller
from app.identity.authorization import org_owner
from app.kit.faults import fault_point
from app.ledger import errors as ledger_errors
from app.ledger import service as ledger
from app.ledger.answers import StoredPosting
from app.ledger.journal import (
    KIND_SERVICE_CORRECTION,
    KIND_SERVICE_CORRECTION_SETTLE,
    KIND_SERVICE_CORRECTION_WRITE_OFF,
    MAX_SAFE_INTEGER,
)
from app.ledger.outcomes import IdempotencyRef, Outcome
from app.ledger.posting import Draft
from app.ledger.sequencer import Sequencer
from app.volunteering import crediting, errors
from app.volunteering.records import add_event, get_record
from app.volunteering.schemas import OwedWrittenOff, ServiceRecordRead

log = structlog.get_logger("timebank.volunteering")

# The LIKE is the partial index's predicate (accounts_receivables, migration 0015): with it the
# planner may use the index for a purpose given as a parameter.
RECEIVABLES = """
SELECT id::text AS id, -posted AS owed FROM accounts
 WHERE book_code = :book AND meta ->> 'purpose' LIKE 'receivable:%'
   AND meta ->> 'purpose' = :purpose AND asset = 'HOUR' AND owner LIKE 'org:%' AND posted < 0
 ORDER BY created_at, id
"""


async def settle_owed(
    session: AsyncSession,
    sequencer: Sequencer,
    record: ServiceRecordRead,
    credit_legs: list[dict[str, Any]],
    member: str,
    caller: Caller,
) -> None:
    """What a new credit gives the member settles first what corrections left them owing
    (oldest receivable first), in a `service_correction.settle` entry of the same
    transaction; the credit itself stays whole, as the statistics count it."""
    received = sum(int(leg["amount"]) for leg in credit_legs if leg["account_id"] == member)
    if received <= 0:
        return
    # The credit just appended holds the book's head until commit: these balances stand.
    rows = await session.execute(
        text(RECEIVABLES),
        {"book": record.book, "purpose": receivable_purpose(record.member_id)},
    )
    legs: list[tuple[str, int]] = []
    left = received
    for row in rows:
        amount = min(left, int(row.owed))
        if amount <= 0:
            break
        legs.append((row.id, amount))
        left -= amount
    if not legs:
        return
    settled = received - left
    draft = Draft(
        record.book,
        "post",
        KIND_SERVICE_CORRECTION_SETTLE,
        [(member, -settled), *legs],
        "",
        {"record": str(record.id), "settled": settled},
        actor=caller.actor(),
    )
    ref = IdempotencyRef(SYSTEM_CREDENTIAL, f"service_settle:{record.id}", str(record.id))
    outcome = await ledger.InTransaction(session, sequencer).submit(draft, ref)
    if outcome.status_code >= 400:
        raise crediting.refused(outcome)


Remainder = Literal["owed", "written_off"]
# The purposes of an organisation's accounts that a correction debits (they may go below
# zero): what a member owes it (one account per member), and what it wrote off.
RECEIVABLE_PREFIX = "receivable:"
WRITE_OFF = "write_off"
# A correction reads balances before the ledger locks the book's head; a posting in between
# makes the ledger refuse it (account-moved, or insufficient-funds for a plain reversal), and
# the next reading, under the head's lock that the refused try left held, stands.
CORRECTION_TRIES = 3


ORG_PURPOSE_ACCOUNT = """
SELECT id::text FROM accounts
 WHERE book_code = :book AND owner = :owner AND asset = 'HOUR' AND meta ->> 'purpose' = :purpose
 ORDER BY created_at, id LIMIT 1
"""


async def correction_account(
    sessions: async_sessionmaker[AsyncSession], book: str, organisation_id: str, purpose: str
) -> str:
    """The id of the organisation's HOUR account for `purpose` (its `write_off` account, or
    what a member owes it), opened if missing; it may go below zero. Committed at once (the
    sequencer must see it); an advisory lock makes concurrent openings open one, since no
    unique index covers organisations' accounts."""
    owner = org_owner(organisation_id)
    params = {"book": book, "owner": owner, "purpose": purpose}
    async with sessions() as session, session.begin():
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
            {"k": f"correction_account:{book}:{owner}:{purpose}"},
        )
        found = await session.scalar(text(ORG_PURPOSE_ACCOUNT), params)
        if found is not None:
            return str(found)
        account_id = uuid.uuid4()
        await session.execute(
            text(
                "INSERT INTO accounts (id, book_code, asset, owner, overdraft_limit, meta) "
                "VALUES (:id, :book, 'HOUR', :owner, :limit, CAST(:meta AS jsonb))"
            ),
            params
            | {
                "id": account_id,
                "limit": MAX_SAFE_INTEGER,
                "meta": json.dumps({"purpose": purpose}),
            },
        )
        return str(account_id)


def receivable_purpose(member_id: uuid.UUID | str) -> str:
    """The purpose of an organisation's account of what a member owes it."""
    return f"{RECEIVABLE_PREFIX}{member_id}"


async def _available(session: AsyncSession, account_ids: list[str]) -> dict[str, tuple[int, int]]:
    """Each account's available balance and last seq, as committed now."""
    rows = await session.execute(
        text(
            "SELECT id::text AS id, posted - pending_debits AS available, last_seq "
            "FROM accounts WHERE id = ANY(CAST(:ids AS uuid[]))"
        ),
        {"ids": account_ids},
    )
    return {row.id: (int(row.available), int(row.last_seq)) for row in rows}


@dataclass(frozen=True)
class CorrectionPlan:
    """How a credit is taken back: from each credited account what it still holds (never more
    than it received), the member's rest owed or written off, the pool's rest written off."""

    legs: list[tuple[str, int]]
    taken_back: int
    owed: int
    written_off: int
    read: dict[str, int]


def plan_correction(
    credit_legs: list[tuple[str, int]],
    member_account: str,
    available: dict[str, tuple[int, int]],
    remainder: Remainder,
) -> CorrectionPlan:
    """The split of a correction (pure): the debit legs are restored in full; each credited
    account gives back min(what it received, what it holds)."""
    legs: list[tuple[str, int]] = []
    taken = owed = written_off = 0
    for account_id, amount in credit_legs:
        if amount <= 0:
            legs.append((account_id, -amount))
            continue
        holds = max(0, available[account_id][0])
        take = min(amount, holds)
        if take:
            legs.append((account_id, -take))
        taken += take
        if account_id == member_account and remainder == "owed":
            owed += amount - take
        else:
            written_off += amount - take
    read = {a: available[a][1] for a, amount in credit_legs if amount > 0}
    return CorrectionPlan(legs, taken, owed, written_off, read)


async def reverse(
    session: AsyncSession,
    sequencer: Sequencer,
    record_id: uuid.UUID,
    reason: str,
    caller: Caller,
    sessions: async_sessionmaker[AsyncSession],
    remainder: Remainder | None = None,
) -> ServiceRecordRead:
    """Correct an approved record and mark it reversed (it stays, with its history; a new
    record may replace it): a reversal of its credit while what it credited is still held,
    else (with `remainder`) a `service_correction` taking back what is left and recording the
    rest as owed by the member or written off by the organisation."""
    record = await get_record(session, record_id, lock=True)
    if record.status == "reversed":
        return record
    if record.status != "approved":
        raise errors.RecordNotPending(f"record {record_id} is {record.status}, not approved")
    assert record.tx_id is not None  # an approved record has its credit (a CHECK of the table)
    original = await ledger.get_transaction(session, record.tx_id)
    in_transaction = ledger.InTransaction(session, sequencer)
    credited = [a for a, amount in original.legs if amount > 0]
    # The accounts a correction books its rest to, opened once: a retry holds the book's head,
    # and must not wait for another connection of the pool to open them.
    opened: dict[str, str] = {}
    for _ in range(CORRECTION_TRIES):
        detail: dict[str, Any] = {"reason": reason}
        available = await _available(session, credited)
        amounts = dict(original.legs)
        if all(available[a][0] >= amounts[a] for a in credited):
            outcome = await ledger.reverse_transaction(
                in_transaction, original, crediting.reversal_ref(record_id), caller.actor()
            )
            event = "reversed"
        else:
            if remainder is None:
                held = sum(min(amounts[a], max(0, available[a][0])) for a in credited)
                raise errors.CorrectionNeedsRemainder(
                    f"record {record_id} credited {sum(amounts[a] for a in credited)} "
                    f"minutes, of which {held} are still held: say whether the rest is "
                    "'owed' by the member or 'written_off' by the organisation",
                    credited=sum(amounts[a] for a in credited),
                    held=held,
                )
            _, member = await crediting.hour_accounts(
                session, record.book, record.organisation_id, record.member_id
            )
            draft = await _correction_draft(
                sessions, record, original, member, available, remainder, caller, opened
            )
            outcome = await in_transaction.submit(draft, crediting.reversal_ref(record_id))
            event = "corrected"
            detail |= {k: draft.meta[k] for k in ("taken_back", "owed", "written_off")}
        # Spent meanwhile (a reversal refused, a correction's reading stale): read again.
        if not isinstance(
            outcome.error, (ledger_errors.AccountMoved, ledger_errors.InsufficientFunds)
        ):
            break
    if outcome.status_code >= 400:
        raise crediting.refused(outcome)
    fault_point("service_record.reverse.posted")
    reversal_id = outcome.body["id"]
    await session.execute(
        text(
            "UPDATE service_records SET status = 'reversed', reversed_by = CAST(:by AS uuid), "
            "reversed_at = now(), reversal_tx_id = CAST(:tx AS uuid), reversal_reason = :r, "
            "updated_at = now() WHERE id = :id"
        ),
        {"by": caller.credential.id, "tx": reversal_id, "r": reason, "id": record_id},
    )
    await add_event(session, record_id, event, caller.actor(), {"tx_id": reversal_id, **detail})
    # Ids and minutes only: the reason is free text, kept with the record.
    log.info(
        f"volunteering.record_{event}",
        record_id=str(record_id),
        book=record.book,
        tx_id=reversal_id,
        **{k: v for k, v in detail.items() if k != "reason"},
    )
    return await get_record(session, record_id)


async def _correction_draft(
    sessions: async_sessionmaker[AsyncSession],
    record: ServiceRecordRead,
    original: StoredPosting,
    member_account: str,
    available: dict[str, tuple[int, int]],
    remainder: Remainder,
    caller: Caller,
    opened: dict[str, str],
) -> Draft:
    plan = plan_correction(original.legs, member_account, available, remainder)
    organisation = str(record.organisation_id)
    legs = list(plan.legs)

    async def account(purpose: str) -> str:
        if purpose not in opened:
            opened[purpose] = await correction_account(sessions, record.book, organisation, purpose)
        return opened[purpose]

    if plan.owed:
        legs.append((await account(receivable_purpose(record.member_id)), -plan.owed))
    if plan.written_off:
        legs.append((await account(WRITE_OFF), -plan.written_off))
    return Draft(
        record.book,
        "post",
        KIND_SERVICE_CORRECTION,
        legs,
        "",
        {
            "record": str(record.id),
            "project": str(record.project_id),
            "credit": original.tx_id,
            "taken_back": plan.taken_back,
            "owed": plan.owed,
            "written_off": plan.written_off,
        },
        actor=caller.actor(),
        unmoved_since=plan.read,
    )


async def write_off_owed(
    session: AsyncSession,
    sequencer: Sequencer,
    sessions: async_sessionmaker[AsyncSession],
    book: str,
    organisation_id: uuid.UUID,
    member_id: uuid.UUID,
    reason: str,
    caller: Caller,
    ref: IdempotencyRef,
) -> OwedWrittenOff:
    """Write off all that a member owes an organisation after corrections (§6.1): one
    `service_correction.write_off` entry from its `write_off` account to the receivable, in
    `session`'s transaction; 409 nothing-owed when nothing is."""
    owner = org_owner(str(organisation_id))
    purpose = receivable_purpose(member_id)
    outcome: Outcome | None = None
    for _ in range(CORRECTION_TRIES):
        row = (
            await session.execute(
                text(
                    "SELECT id::text AS id, -posted AS owed, last_seq FROM accounts "
                    "WHERE book_code = :b AND owner = :o AND asset = 'HOUR' "
                    "AND meta ->> 'purpose' = :p ORDER BY created_at, id LIMIT 1"
                ),
                {"b": book, "o": owner, "p": purpose},
            )
        ).one_or_none()
        if row is None or row.owed <= 0:
            raise errors.NothingOwed(
                f"member {member_id} owes organisation {organisation_id} nothing"
            )
        write_off = await correction_account(sessions, book, str(organisation_id), WRITE_OFF)
        owed = int(row.owed)
        draft = Draft(
            book,
            "post",
            KIND_SERVICE_CORRECTION_WRITE_OFF,
            [(write_off, -owed), (row.id, owed)],
            "",
            {"member": str(member_id), "written_off": owed, "reason": reason},
            actor=caller.actor(),
            unmoved_since={row.id: int(row.last_seq)},
        )
        outcome = await ledger.InTransaction(session, sequencer).submit(draft, ref)
        if not isinstance(outcome.error, ledger_errors.AccountMoved):
            break
    assert outcome is not None
    if outcome.status_code >= 400:
        raise crediting.refused(outcome)
    log.info(
        "volunteering.owed_written_off",
        book=book,
        organisation_id=str(organisation_id),
        member_id=str(member_id),
        tx_id=outcome.body["id"],
        minutes=draft.meta["written_off"],
    )
    return OwedWrittenOff(
        organisation_id=organisation_id,
        member_id=member_id,
        written_off_minutes=int(draft.meta["written_off"]),
        tx_id=uuid.UUID(outcome.body["id"]),
    )
