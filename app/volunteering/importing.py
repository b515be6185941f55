"""Bulk import of historical service records from another system (CSV).

Each row is checked by the same rules as a record entered by hand, in a savepoint of its own,
in file order (so rows of one file that overlap each other are caught too). A dry run rolls
everything back and reports every row's problems; a real run keeps the rows that pass and
reports the others. Rows are idempotent on `external_id`: sending the file again records
nothing twice, so a corrected file can be sent whole.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.identity.errors import MemberNotFound
from app.kit.problems import TimebankError, ValidationFailed
from app.volunteering import records, schemas
from app.volunteering.records import Rules

COLUMNS = ("external_id", "volunteer_number", "project_id", "started_at", "ended_at", "attested_by")
MAX_ROWS = 5000
# Checks the caller's reach over a row's project and member; raises a TimebankError.
ReachCheck = Callable[[AsyncSession, uuid.UUID, uuid.UUID], Awaitable[None]]


def _problem(field: str, message: str, code: str) -> dict[str, object]:
    return {"field": field, "message": message, "code": code}


def _moment(value: str, rules: Rules) -> datetime:
    """RFC 3339 with an offset, or a local time of the service's time zone."""
    moment = datetime.fromisoformat(value.strip())
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=rules.timezone)


def read_rows(payload: bytes) -> list[dict[str, str]]:
    """The data rows of a CSV file with the import's header; 422 if the file is not one."""
    try:
        content = payload.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationFailed(
            "the file is not UTF-8 text",
            errors=[_problem("body", "not UTF-8", "encoding")],
        ) from None
    reader = csv.DictReader(io.StringIO(content))
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        raise ValidationFailed(
            f"the header must name the columns {', '.join(COLUMNS)}; missing {', '.join(missing)}",
            errors=[_problem("body", f"missing column {name}", "missing") for name in missing],
        )
    rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    if len(rows) > MAX_ROWS:
        raise ValidationFailed(
            f"at most {MAX_ROWS} rows per file; send the rest in another",
            errors=[_problem("body", "too many rows", "too_many")],
        )
    return rows


def _unknown_number() -> dict[str, object]:
    return _problem("volunteer_number", "no active member of the project's book", "unknown")


async def _member_id(session: AsyncSession, project_id: uuid.UUID, number: str) -> uuid.UUID | None:
    found = await session.execute(
        text(
            "SELECT m.id FROM members m JOIN projects p ON p.book_code = m.book_code "
            "WHERE p.id = :p AND m.volunteer_number = :n AND m.status = 'active'"
        ),
        {"p": project_id, "n": number},
    )
    member: uuid.UUID | None = found.scalar_one_or_none()
    return member


async def _row_record(
    session: AsyncSession, rules: Rules, row: dict[str, str]
) -> tuple[schemas.ServiceRecordCreate | None, list[dict[str, object]]]:
    problems: list[dict[str, object]] = []
    project_id: uuid.UUID | None = None
    try:
        project_id = uuid.UUID(row["project_id"])
    except ValueError:
        problems.append(_problem("project_id", "not a project id (UUID)", "uuid"))
    moments: dict[str, datetime] = {}
    for name in ("started_at", "ended_at"):
        try:
            moments[name] = _moment(row[name], rules)
        except ValueError:
            problems.append(_problem(name, "not an ISO 8601 date and time", "datetime"))
    member_id = None
    if project_id is not None:
        member_id = await _member_id(session, project_id, row["volunteer_number"])
        if member_id is None:
            problems.append(_unknown_number())
    if problems or member_id is None or project_id is None:
        return None, problems
    try:
        data = schemas.ServiceRecordCreate(
            project_id=project_id,
            member_id=member_id,
            started_at=moments["started_at"],
            ended_at=moments["ended_at"],
            attested_by=row["attested_by"],
            external_id=row["external_id"],
        )
    except ValidationError as error:
        for item in error.errors():
            field = ".".join(str(p) for p in item["loc"]) or "row"
            problems.append(_problem(field, item["msg"], item["type"]))
        return None, problems
    return data, problems


async def import_records(
    session: AsyncSession,
    rules: Rules,
    rows: list[dict[str, str]],
    actor: dict[str, str],
    reach: ReachCheck,
    dry_run: bool,
) -> schemas.ImportReport:
    """Check (and unless `dry_run`, record) each row; the report of every row's problems."""
    report = schemas.ImportReport(
        dry_run=dry_run,
        rows=len(rows),
        accepted=0,
        already_imported=0,
        refused=0,
        problems=[],
        record_ids=[],
    )
    seen: set[str] = set()
    for number, row in enumerate(rows, start=1):
        external_id = row.get("external_id") or None
        data, problems = await _row_record(session, rules, row)
        if external_id is not None and external_id in seen:
            problems.append(_problem("external_id", "repeated in this file", "duplicate"))
            data = None
        if data is not None:
            try:
                async with session.begin_nested():
                    await reach(session, data.project_id, data.member_id)
                    record, created = await records.enter_manual(
                        session, rules, data, actor, source="import"
                    )
                if created:
                    report.accepted += 1
                else:
                    report.already_imported += 1
                report.record_ids.append(record.id)
            except MemberNotFound:
                # A member out of the caller's reach is answered as a number that does not
                # exist: a volunteer number never reveals who holds it (docs/authorization.md).
                problems.append(_unknown_number())
            except TimebankError as error:
                problem = error.problem()
                problems.append({"field": "row", "message": error.detail, "code": problem["type"]})
        if external_id is not None:
            seen.add(external_id)
        if problems:
            report.refused += 1
            report.problems.append(
                schemas.ImportRowProblem(row=number, external_id=external_id, problems=problems)
            )
    return report
