"""Disputes: a member reports an error in a record; the organisation must check and answer.

A dispute, its answer and the record that corrects it (if any) are kept for good: answered
disputes are never reopened or edited, and auditors read them all.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.volunteering import errors, schemas
from app.volunteering.records import add_event, get_record
from app.volunteering.schemas import DisputeRead

_COLUMNS = (
    "id, record_id, member_id, organisation_id, reason, status, answer, answered_by, "
    "answered_at, corrected_record_id, opened_by, opened_at"
)


async def get_dispute(session: AsyncSession, dispute_id: uuid.UUID) -> DisputeRead:
    """A dispute and its answer."""
    row = (
        await session.execute(
            text(f"SELECT {_COLUMNS} FROM service_disputes WHERE id = :id"),
            {"id": dispute_id},
        )
    ).one_or_none()
    if row is None:
        raise errors.DisputeNotFound(f"dispute {dispute_id} does not exist")
    return DisputeRead.model_validate(row._asdict())


async def disputes_of(session: AsyncSession, record_id: uuid.UUID) -> list[DisputeRead]:
    """Every dispute of a record, oldest first."""
    rows = await session.execute(
        text(
            f"SELECT {_COLUMNS} FROM service_disputes WHERE record_id = :r ORDER BY opened_at, id"
        ),
        {"r": record_id},
    )
    return [DisputeRead.model_validate(row._asdict()) for row in rows]


async def open_dispute(
    session: AsyncSession, record_id: uuid.UUID, reason: str, actor: dict[str, str]
) -> DisputeRead:
    """The member disputes a record (one open dispute per record at a time)."""
    record = await get_record(session, record_id, lock=True)
    if await session.scalar(
        text("SELECT 1 FROM service_disputes WHERE record_id = :r AND status = 'open'"),
        {"r": record_id},
    ):
        raise errors.DisputeOpen(f"record {record_id} already has an open dispute")
    dispute_id = uuid.uuid4()
    await session.execute(
        text(
            "INSERT INTO service_disputes (id, record_id, member_id, organisation_id, reason, "
            "opened_by) VALUES (:id, :r, :m, :o, :reason, CAST(:by AS uuid))"
        ),
        {
            "id": dispute_id,
            "r": record_id,
            "m": record.member_id,
            "o": record.organisation_id,
            "reason": reason,
            "by": actor["credential"],
        },
    )
    await add_event(session, record_id, "disputed", actor, {"dispute_id": str(dispute_id)})
    return await get_dispute(session, dispute_id)


async def answer_dispute(
    session: AsyncSession,
    dispute: DisputeRead,
    data: schemas.DisputeAnswer,
    actor: dict[str, str],
) -> DisputeRead:
    """The organisation's answer; an upheld dispute may name the record that corrects it."""
    locked = (
        await session.execute(
            text("SELECT status FROM service_disputes WHERE id = :id FOR UPDATE"),
            {"id": dispute.id},
        )
    ).scalar_one()
    if locked != "open":
        raise errors.RecordNotPending(f"dispute {dispute.id} was already answered")
    if data.corrected_record_id is not None:
        correction = await get_record(session, data.corrected_record_id)
        if (
            correction.member_id != dispute.member_id
            or correction.organisation_id != dispute.organisation_id
        ):
            raise errors.ServiceRecordNotFound(
                f"service record {data.corrected_record_id} does not exist",
                errors=[
                    {
                        "field": "body/corrected_record_id",
                        "message": "not a record of this member and organisation",
                        "code": "not_found",
                    }
                ],
            )
    await session.execute(
        text(
            "UPDATE service_disputes SET status = :s, answer = :a, "
            "answered_by = CAST(:by AS uuid), answered_at = now(), corrected_record_id = :c "
            "WHERE id = :id"
        ),
        {
            "s": data.outcome,
            "a": data.answer,
            "by": actor["credential"],
            "c": data.corrected_record_id,
            "id": dispute.id,
        },
    )
    detail = {"dispute_id": str(dispute.id), "outcome": data.outcome}
    if data.corrected_record_id is not None:
        detail["corrected_record_id"] = str(data.corrected_record_id)
    await add_event(session, dispute.record_id, "dispute_answered", actor, detail)
    return await get_dispute(session, dispute.id)


async def list_disputes(
    session: AsyncSession,
    book: str | None,
    organisation_id: uuid.UUID | None,
    member_id: uuid.UUID | None,
    status: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[DisputeRead]:
    """Disputes in id order (keyset pages), filtered."""
    where: list[str] = ["true"]
    params: dict[str, Any] = {"limit": limit + 1}
    if book is not None:
        where.append(
            "EXISTS (SELECT 1 FROM service_records r WHERE r.id = d.record_id "
            "AND r.book_code = :book)"
        )
        params["book"] = book
    for column, value in (
        ("organisation_id", organisation_id),
        ("member_id", member_id),
        ("status", status),
    ):
        if value is not None:
            where.append(f"d.{column} = :{column}")
            params[column] = value
    if after is not None:
        where.append("d.id > :after")
        params["after"] = after
    cols = ", ".join(f"d.{c.strip()}" for c in _COLUMNS.split(","))
    rows = await session.execute(
        text(
            f"SELECT {cols} FROM service_disputes d "
            f"WHERE {' AND '.join(where)} ORDER BY d.id LIMIT :limit"
        ),
        params,
    )
    return [DisputeRead.model_validate(row._asdict()) for row in rows]
