"""Approving service records into the ledger (correcting them: app.volunteering.corrections).

Approval posts one `service_credit` transaction (HOUR minutes from the organisation's issuance
account to the member's HOUR account; what the book's storage cap for HOUR turns away goes to
the book's public time pool in the same entry, `meta.overflow` saying so) through the ledger's
one posting path, inside the record's own transaction (`ledger.InTransaction`): the entry and
the record's new status commit together or not at all, whatever fails or is killed between
them (docs/consistency.md). The record row stays locked from the check to the commit, so
approving twice (or approving while rejecting) posts once; the key is still the record's id.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.exchange.accounts import storage_limits
from app.http.caller import Caller
from app.kit.faults import fault_point
from app.kit.problems import TimebankError
from app.ledger import service as ledger
from app.ledger.journal import (
    KIND_SERVICE_CREDIT,
)
from app.ledger.posting import Draft
from app.ledger.sequencer import Sequencer
from app.volunteering import corrections, crediting, errors
from app.volunteering.records import add_event, get_record
from app.volunteering.schemas import BulkApproveItem, ServiceRecordRead

log = structlog.get_logger("timebank.volunteering")

# At most this many approvals of one bulk request wait on the ledger at once.
BULK_CONCURRENCY = 8


async def approve(
    session: AsyncSession,
    sequencer: Sequencer,
    record_id: uuid.UUID,
    caller: Caller,
    sessions: async_sessionmaker[AsyncSession],
) -> ServiceRecordRead:
    """Approve a pending record and post its credit; approving an approved record answers it
    unchanged. `sessions` opens the book's public time pool the first time a storage cap
    needs it."""
    record = await get_record(session, record_id, lock=True)
    if record.status == "approved":
        return record
    if record.status != "pending":
        raise errors.RecordNotPending(f"record {record_id} is {record.status}, not pending")
    if record.evidence == "manual" and str(record.entered_by) == caller.credential.id:
        checked = await session.execute(
            text("SELECT maker_checker FROM organisations WHERE id = :o"),
            {"o": record.organisation_id},
        )
        if checked.scalar_one():
            log.info(
                "volunteering.maker_checker_refused",
                record_id=str(record_id),
                organisation_id=str(record.organisation_id),
            )
            raise errors.MakerChecker(
                "this organisation requires another credential to approve a manual record "
                "than the one that entered it"
            )
    issuance, member = await crediting.hour_accounts(
        session, record.book, record.organisation_id, record.member_id
    )
    minutes = record.credited_minutes
    assert minutes is not None  # a pending record has its minutes (a CHECK of the table)
    limits = await storage_limits(session, sessions, record.book, "HOUR", [member])
    meta: dict[str, object] = {
        "record": str(record_id),
        "project": str(record.project_id),
        "evidence": record.evidence,
    }
    if record.service_day is not None:
        # The units count from the day of service, not of approval (lapse dates: expiry lots).
        meta["service_day"] = record.service_day.isoformat()
    draft = Draft(
        record.book,
        "post",
        KIND_SERVICE_CREDIT,
        [(issuance, -minutes), (member, minutes)],
        "",
        meta,
        actor=caller.actor(),
        storage_caps=limits.storage_caps,
        overflow_to=limits.overflow_to,
    )
    # In this transaction: the credit and the record's approval commit together or not at all.
    outcome = await ledger.InTransaction(session, sequencer).submit(
        draft, crediting.credit_ref(record_id)
    )
    if outcome.status_code >= 400:
        raise crediting.refused(outcome)
    fault_point("service_record.approve.posted")
    tx_id = outcome.body["id"]
    await corrections.settle_owed(
        session, sequencer, record, outcome.body["entry"]["legs"], member, caller
    )
    await session.execute(
        text(
            "UPDATE service_records SET status = 'approved', approved_by = CAST(:by AS uuid), "
            "approved_at = now(), tx_id = CAST(:tx AS uuid), updated_at = now() WHERE id = :id"
        ),
        {"by": caller.credential.id, "tx": tx_id, "id": record_id},
    )
    await add_event(session, record_id, "approved", caller.actor(), {"tx_id": tx_id})
    # Written before the caller's transaction commits: the request's line says whether it did.
    log.info(
        "volunteering.record_approved",
        record_id=str(record_id),
        tx_id=tx_id,
        book=record.book,
        organisation_id=str(record.organisation_id),
        minutes=minutes,
        evidence=record.evidence,
        entered_by=str(record.entered_by),
        approved_by=caller.credential.id,
    )
    return await get_record(session, record_id)


async def approve_many(
    sessions: async_sessionmaker[AsyncSession],
    sequencer: Sequencer,
    record_ids: list[uuid.UUID],
    caller: Caller,
    visible: Callable[[AsyncSession, uuid.UUID], Awaitable[None]],
) -> list[BulkApproveItem]:
    """Approve each record on its own (one refusal does not stop the others); `visible` is the
    caller's reach check for a record. One result per distinct id, in the order asked."""
    gate = asyncio.Semaphore(BULK_CONCURRENCY)

    async def one(record_id: uuid.UUID) -> BulkApproveItem:
        async with gate, sessions() as session:
            try:
                async with session.begin():
                    await visible(session, record_id)
                    record = await approve(session, sequencer, record_id, caller, sessions)
                return BulkApproveItem(record_id=record_id, status=200, record=record)
            except TimebankError as error:
                return BulkApproveItem(
                    record_id=record_id, status=error.status, problem=error.problem()
                )

    return list(await asyncio.gather(*(one(r) for r in dict.fromkeys(record_ids))))
