"""Service records: check-in and check-out on site, manual entry, and the rules they obey.

A record is credited only for time inside its project's window; no member is credited twice
for the same minutes (across every project); no member is credited more than the daily cap
of service starting on one day, nor more than a project's own cap per person per day. The
rules are checked with the member's row locked, so concurrent check-outs and entries for one
member take turns; the table's exclusion constraint holds the overlap rule regardless.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.identity.errors import MemberNotFound
from app.volunteering import checkin_codes, errors, projects, schemas
from app.volunteering.projects import ProjectRow
from app.volunteering.schemas import RecordEvent, ServiceRecordRead

# A member may check in this long before the activity starts (time before it is not credited).
EARLY_CHECKIN = timedelta(hours=1)
CREDITED = ("pending", "approved")


@dataclass(frozen=True, slots=True)
class Rules:
    """The settings the rules read."""

    timezone: ZoneInfo
    daily_cap_minutes: int
    code_ttl_s: int


async def get_record(
    session: AsyncSession, record_id: uuid.UUID, lock: bool = False
) -> ServiceRecordRead:
    """A service record (locked for this transaction if `lock`)."""
    row = (
        await session.execute(
            text(
                "SELECT *, book_code AS book FROM service_records WHERE id = :id"
                + (" FOR UPDATE" if lock else "")
            ),
            {"id": record_id},
        )
    ).one_or_none()
    if row is None:
        raise errors.ServiceRecordNotFound(f"service record {record_id} does not exist")
    return ServiceRecordRead.model_validate(row._asdict())


async def record_events(session: AsyncSession, record_id: uuid.UUID) -> list[RecordEvent]:
    """What happened to a record, in order."""
    rows = await session.execute(
        text(
            "SELECT event, actor::text AS actor, detail::text AS detail, at "
            "FROM service_record_events WHERE record_id = :id ORDER BY id"
        ),
        {"id": record_id},
    )
    return [
        RecordEvent(event=r.event, actor=json.loads(r.actor), detail=json.loads(r.detail), at=r.at)
        for r in rows
    ]


async def add_event(
    session: AsyncSession,
    record_id: uuid.UUID,
    event: str,
    actor: dict[str, str],
    detail: dict[str, Any] | None = None,
) -> None:
    """Append to a record's history (an append-only table: nobody rewrites it)."""
    await session.execute(
        text(
            "INSERT INTO service_record_events (record_id, event, actor, detail) "
            "VALUES (:r, :e, CAST(:a AS jsonb), CAST(:d AS jsonb))"
        ),
        {"r": record_id, "e": event, "a": json.dumps(actor), "d": json.dumps(detail or {})},
    )


async def list_records(
    session: AsyncSession,
    *,
    book: str | None,
    organisation_id: uuid.UUID | None = None,
    member_id: uuid.UUID | None = None,
    project_id: uuid.UUID | None = None,
    status: str | None = None,
    after: uuid.UUID | None = None,
    limit: int = 100,
) -> list[ServiceRecordRead]:
    """Records in id order (keyset pages), filtered."""
    where: list[str] = ["true"]
    params: dict[str, Any] = {"limit": limit + 1}
    for column, value in (
        ("book_code", book),
        ("organisation_id", organisation_id),
        ("member_id", member_id),
        ("project_id", project_id),
        ("status", status),
    ):
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value
    if after is not None:
        where.append("id > :after")
        params["after"] = after
    rows = await session.execute(
        text(
            "SELECT *, book_code AS book FROM service_records "
            f"WHERE {' AND '.join(where)} ORDER BY id LIMIT :limit"
        ),
        params,
    )
    return [ServiceRecordRead.model_validate(row._asdict()) for row in rows]


async def _lock_member(session: AsyncSession, member_id: uuid.UUID, book: str) -> None:
    found = await session.execute(
        text(
            "SELECT 1 FROM members WHERE id = :m AND book_code = :b AND status = 'active' "
            "FOR UPDATE"
        ),
        {"m": member_id, "b": book},
    )
    if found.first() is None:
        raise MemberNotFound(f"member {member_id} does not exist")


def local_time(moment: datetime, zone: ZoneInfo) -> str:
    """A moment as people of the service time zone read it (`2025-11-20 09:00`)."""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True, slots=True)
class Credit:
    """What a record is credited: its period inside the window, minutes, and service day."""

    started_at: datetime
    ended_at: datetime
    minutes: int
    service_day: date


async def settle(
    session: AsyncSession,
    rules: Rules,
    project: ProjectRow,
    member_id: uuid.UUID,
    started_at: datetime,
    ended_at: datetime,
    record_id: uuid.UUID | None,
) -> Credit:
    """Apply every rule to a period of service; the member's row stays locked until commit."""
    await _lock_member(session, member_id, project.book)
    start = max(started_at, project.starts_at)
    end = min(ended_at, project.ends_at)
    if end <= start:
        zone = rules.timezone
        raise errors.OutsideWindow(
            "the service lies outside the activity's window "
            f"({local_time(project.starts_at, zone)} to {local_time(project.ends_at, zone)}, "
            f"{zone.key})",
            rule="activity_window",
        )
    seconds = int((end - start).total_seconds())
    minutes = seconds // 60
    if minutes < 1:
        raise errors.ServiceTooShort(
            f"the service lasted {seconds} s inside the activity's window; a record needs at "
            "least one whole minute",
            rule="activity_window",
            seconds=seconds,
        )
    if project.credit_policy == "fixed" and project.fixed_minutes is not None:
        minutes = project.fixed_minutes
    other = (
        await session.execute(
            text(
                "SELECT id, project_id FROM service_records WHERE member_id = :m "
                "AND status IN ('pending', 'approved') AND id IS DISTINCT FROM :self "
                "AND tstzrange(started_at, ended_at, '[)') && tstzrange(:s, :e, '[)') LIMIT 1"
            ),
            {"m": member_id, "self": record_id, "s": start, "e": end},
        )
    ).one_or_none()
    if other is not None:
        raise errors.OverlappingService(
            f"the member is already credited for part of this time by record {other.id} "
            f"(project {other.project_id})",
            rule="no_overlap",
            record_id=str(other.id),
        )
    day = start.astimezone(rules.timezone).date()
    totals = (
        await session.execute(
            text(
                "SELECT coalesce(sum(credited_minutes), 0) AS day_total, "
                "coalesce(sum(credited_minutes) FILTER (WHERE project_id = :p), 0) AS in_project "
                "FROM service_records WHERE member_id = :m AND service_day = :d "
                "AND status IN ('pending', 'approved') AND id IS DISTINCT FROM :self"
            ),
            {"m": member_id, "p": project.id, "d": day, "self": record_id},
        )
    ).one()
    if totals.day_total + minutes > rules.daily_cap_minutes:
        raise errors.DailyCapExceeded(
            f"{minutes} more minutes on {day} would credit the member "
            f"{totals.day_total + minutes} minutes that day; the cap is "
            f"{rules.daily_cap_minutes}",
            rule="daily_cap",
            cap_minutes=rules.daily_cap_minutes,
            credited_minutes=totals.day_total,
        )
    cap = project.cap_minutes_per_day
    if cap is not None and totals.in_project + minutes > cap:
        raise errors.ProjectDailyCapExceeded(
            f"{minutes} more minutes on {day} would credit the member "
            f"{totals.in_project + minutes} minutes in this project that day; its cap is {cap}",
            rule="project_daily_cap",
            cap_minutes=cap,
            credited_minutes=totals.in_project,
        )
    return Credit(start, end, minutes, day)


async def check_in(
    session: AsyncSession,
    rules: Rules,
    project_id: uuid.UUID,
    member_id: uuid.UUID,
    code: str,
    now: datetime,
    actor: dict[str, str],
) -> tuple[ServiceRecordRead, bool]:
    """Open a record for a member at the site (idempotent while it is open)."""
    project = await projects.project_row(session, project_id)
    checkin_codes.check_code(code, project_id, project.checkin_key, now, rules.code_ttl_s)
    if project.status != "published":
        raise errors.ProjectNotOpen("the project is closed")
    if now < project.starts_at - EARLY_CHECKIN or now >= project.ends_at:
        raise errors.ProjectNotOpen(
            "check-in opens an hour before the activity starts and closes when it ends"
        )
    if not await projects.is_signed_up(session, project_id, member_id):
        raise errors.NotSignedUp("sign up for the project before checking in")
    await _lock_member(session, member_id, project.book)
    open_row = (
        await session.execute(
            text(
                "SELECT id, project_id FROM service_records "
                "WHERE member_id = :m AND status = 'open'"
            ),
            {"m": member_id},
        )
    ).one_or_none()
    if open_row is not None:
        if open_row.project_id == project_id:
            return await get_record(session, open_row.id), False
        raise errors.AlreadyCheckedIn(
            f"the member is checked in to project {open_row.project_id}; check out there first",
            record_id=str(open_row.id),
        )
    record_id = uuid.uuid4()
    await session.execute(
        text(
            "INSERT INTO service_records (id, book_code, project_id, organisation_id, member_id, "
            "evidence, started_at, status, entered_by) VALUES (:id, :b, :p, :o, :m, 'checkin', "
            ":s, 'open', CAST(:by AS uuid))"
        ),
        {
            "id": record_id,
            "b": project.book,
            "p": project_id,
            "o": project.organisation_id,
            "m": member_id,
            "s": now,
            "by": actor["credential"],
        },
    )
    await add_event(session, record_id, "checked_in", actor, {"at": now.isoformat()})
    return await get_record(session, record_id), True


async def check_out(
    session: AsyncSession,
    rules: Rules,
    record: ServiceRecordRead,
    code: str,
    now: datetime,
    actor: dict[str, str],
) -> ServiceRecordRead:
    """Close an open record at the site: credit the time inside the window, by the rules."""
    project = await projects.project_row(session, record.project_id)
    record = await get_record(session, record.id, lock=True)
    if record.status != "open":
        if record.evidence == "checkin" and record.ended_at is not None:
            return record  # a retry of a check-out that succeeded
        raise errors.RecordNotPending(f"record {record.id} is {record.status}")
    checkin_codes.check_code(code, record.project_id, project.checkin_key, now, rules.code_ttl_s)
    credit = await settle(
        session, rules, project, record.member_id, record.started_at, now, record.id
    )
    await session.execute(
        text(
            "UPDATE service_records SET status = 'pending', started_at = :s, ended_at = :e, "
            "credited_minutes = :min, service_day = :d, updated_at = now() WHERE id = :id"
        ),
        {
            "s": credit.started_at,
            "e": credit.ended_at,
            "min": credit.minutes,
            "d": credit.service_day,
            "id": record.id,
        },
    )
    await add_event(
        session,
        record.id,
        "checked_out",
        actor,
        {"at": now.isoformat(), "checked_in_at": record.started_at.isoformat()},
    )
    return await get_record(session, record.id)


async def enter_manual(
    session: AsyncSession,
    rules: Rules,
    data: schemas.ServiceRecordCreate,
    actor: dict[str, str],
    source: str = "api",
) -> tuple[ServiceRecordRead, bool]:
    """Record service the organisation attests by hand (荣誉时); idempotent on `external_id`."""
    project = await projects.project_row(session, data.project_id)
    if data.external_id is not None:
        existing = (
            await session.execute(
                text(
                    "SELECT id FROM service_records WHERE organisation_id = :o AND external_id = :x"
                ),
                {"o": project.organisation_id, "x": data.external_id},
            )
        ).scalar_one_or_none()
        if existing is not None:
            return await get_record(session, existing), False
    if data.corrects_record_id is not None:
        corrected = await get_record(session, data.corrects_record_id)
        if (
            corrected.organisation_id != project.organisation_id
            or corrected.member_id != data.member_id
            or corrected.status != "reversed"
        ):
            raise errors.RecordNotPending(
                "a correction replaces a reversed record of the same member and organisation",
                errors=[
                    {
                        "field": "body/corrects_record_id",
                        "message": "not a reversed record of this member and organisation",
                        "code": "not_reversed",
                    }
                ],
            )
    credit = await settle(
        session, rules, project, data.member_id, data.started_at, data.ended_at, None
    )
    record_id = uuid.uuid4()
    await session.execute(
        text(
            "INSERT INTO service_records (id, book_code, project_id, organisation_id, member_id, "
            "evidence, attested_by, source, external_id, started_at, ended_at, credited_minutes, "
            "service_day, status, entered_by, corrects_record_id) VALUES (:id, :b, :p, :o, :m, "
            "'manual', :att, :src, :x, :s, :e, :min, :d, 'pending', CAST(:by AS uuid), :corr)"
        ),
        {
            "id": record_id,
            "b": project.book,
            "p": project.id,
            "o": project.organisation_id,
            "m": data.member_id,
            "att": data.attested_by,
            "src": source,
            "x": data.external_id,
            "s": credit.started_at,
            "e": credit.ended_at,
            "min": credit.minutes,
            "d": credit.service_day,
            "by": actor["credential"],
            "corr": data.corrects_record_id,
        },
    )
    await add_event(
        session,
        record_id,
        "entered",
        actor,
        {"source": source, "corrects": str(data.corrects_record_id or "") or None},
    )
    return await get_record(session, record_id), True


async def reject(
    session: AsyncSession,
    record_id: uuid.UUID,
    reason: str,
    actor: dict[str, str],
    event: str,
    statuses: tuple[str, ...] = ("open", "pending"),
) -> ServiceRecordRead:
    """Refuse a record in one of `statuses` (open or pending), with the reason (kept in its
    history)."""
    record = await get_record(session, record_id, lock=True)
    if record.status not in statuses:
        raise errors.RecordNotPending(
            f"record {record_id} is {record.status}, not {' or '.join(statuses)}; an "
            "approved record is corrected by reversal and a new record"
        )
    await session.execute(
        text(
            "UPDATE service_records SET status = 'rejected', rejected_by = CAST(:by AS uuid), "
            "rejected_at = now(), reject_reason = :r, updated_at = now() WHERE id = :id"
        ),
        {"by": actor["credential"], "r": reason, "id": record_id},
    )
    await add_event(session, record_id, event, actor, {"reason": reason})
    return await get_record(session, record_id)
