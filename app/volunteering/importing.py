"""Bulk import of historical service records from another system (CSV).

Each row is checked by the same rules as a record entered by hand, in a savepoint of its own,
in file order (so rows of one file that overlap each other are caught too). A dry run rolls
everything back and reports every row's problems; a real run keeps the rows that pass and
reports the others. Rows are idempotent on `external_id`: sending the file again records
nothing twice, so a corrected file can be sent whole.

The answer is written for the person who keeps the spreadsheet: rows are named by the line a
spreadsheet shows (the header is line 1), columns as the header names them, times in the
service time zone the file's times are read in; a dry run names no record that does not exist.
"""

from __future__ import annotations

import csv
import io
import unicodedata
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.identity.errors import MemberNotFound
from app.kit.problems import TimebankError, ValidationFailed
from app.kit.schemas import instant_in_range
from app.volunteering import records, schemas
from app.volunteering.records import Rules, local_time

log = structlog.get_logger(__name__)

COLUMNS = ("external_id", "volunteer_number", "project_id", "started_at", "ended_at", "attested_by")
MAX_ROWS = 5000
SAVE_AS_UTF8 = 'save it as "CSV UTF-8 (逗号分隔)" in Excel (File > Save As)'
# Checks the caller's reach over a row's project and member; raises a TimebankError.
ReachCheck = Callable[[AsyncSession, uuid.UUID, uuid.UUID], Awaitable[None]]
Problem = dict[str, object]


def _problem(field: str, message: str, code: str) -> Problem:
    return {"field": field, "message": message, "code": code}


@dataclass(frozen=True, slots=True)
class Row:
    """One data row: the line it starts on, its values by column, and what it lacks."""

    line: int
    values: dict[str, str]
    cells: int
    missing: list[str] = field(default_factory=list)
    extra: bool = False  # values beyond the header's columns


@dataclass(frozen=True, slots=True)
class CsvFile:
    """A file's data rows, the import's columns as its header names them, and warnings."""

    header: dict[str, str]
    width: int
    rows: list[Row]
    warnings: list[schemas.ImportWarning]


def _decode(payload: bytes) -> tuple[str, list[schemas.ImportWarning]]:
    try:
        return payload.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        pass
    try:
        # What Chinese Excel saves as "CSV" is GBK, which GB18030 contains.
        content = payload.decode("gb18030").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise ValidationFailed(
            f"the file is not UTF-8 text (nor GB18030): {SAVE_AS_UTF8} and send it again",
            errors=[_problem("body", f"not UTF-8: {SAVE_AS_UTF8}", "encoding")],
        ) from None
    warning = schemas.ImportWarning(
        code="encoding_gb18030",
        message="the file is not UTF-8; it was read as GB18030 (GBK, what Chinese Excel saves "
        f"as CSV): check that names read correctly, and next time {SAVE_AS_UTF8}",
    )
    return content, [warning]


def _header(names: list[str]) -> dict[str, str]:
    """The import's columns, each as the header spells it (matched without case or spaces)."""
    found: dict[str, str] = {}
    for name in names:
        key = name.strip().lower()
        if key in COLUMNS and key in found:
            raise ValidationFailed(
                f"the header names the column {name.strip()} twice",
                errors=[_problem("body", f"column {name.strip()} repeated", "duplicate")],
            )
        found.setdefault(key, name.strip())
    missing = [name for name in COLUMNS if name not in found]
    if missing:
        raise ValidationFailed(
            f"the header (line 1) must name the columns {', '.join(COLUMNS)}; missing "
            + ", ".join(missing),
            errors=[_problem("body", f"missing column {name}", "missing") for name in missing],
        )
    return {name: found[name] for name in COLUMNS}


def read_rows(payload: bytes) -> CsvFile:
    """The data rows of a CSV file with the import's header; 422 if the file is not one."""
    content, warnings = _decode(payload)
    reader = csv.reader(io.StringIO(content, newline=""))
    try:
        names = next(reader, [])
        header = _header(names)
        index = {column: [n.strip().lower() for n in names].index(column) for column in COLUMNS}
        rows: list[Row] = []
        ended = reader.line_num
        for cells in reader:
            # A quoted value spanning lines moves the next rows' line numbers, as it would
            # in a text editor; a row starts on the line after the previous one ended.
            line, ended = ended + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue  # an empty line, or a row of empty cells a spreadsheet left behind
            if len(rows) == MAX_ROWS:
                raise ValidationFailed(
                    f"at most {MAX_ROWS} rows per file; send the rest in another",
                    errors=[_problem("body", "too many rows", "too_many")],
                )
            values = {c: cells[i].strip() for c, i in index.items() if i < len(cells)}
            missing = [c for c in COLUMNS if c not in values]
            extra = any(cell.strip() for cell in cells[len(names) :])
            rows.append(Row(line, values, len(cells), missing, extra))
    except csv.Error as error:
        raise ValidationFailed(
            f"line {reader.line_num} of the file is not CSV: {error}",
            errors=[_problem("body", f"line {reader.line_num}: {error}", "csv")],
        ) from None
    return CsvFile(header, len(names), rows, warnings)


def _number(value: str) -> str:
    """A volunteer number as issued: full-width characters folded, in capitals."""
    return unicodedata.normalize("NFKC", value).strip().upper()


async def _member_id(session: AsyncSession, project_id: uuid.UUID, number: str) -> uuid.UUID | None:
    found = await session.execute(
        text(
            "SELECT m.id FROM members m JOIN projects p ON p.book_code = m.book_code "
            "WHERE p.id = :p AND m.volunteer_number = :n AND m.status = 'active'"
        ),
        {"p": project_id, "n": _number(number)},
    )
    member: uuid.UUID | None = found.scalar_one_or_none()
    return member


# How Excel writes a date and time in Chinese settings (2025/11/20 9:00), besides ISO 8601.
SPREADSHEET_FORMATS = ("%Y/%m/%d %H:%M", "%Y/%m/%d %H:%M:%S")


def _moment(value: str, rules: Rules) -> datetime:
    """RFC 3339 with an offset, or a local time of the service's time zone."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        for pattern in SPREADSHEET_FORMATS:
            try:
                moment = datetime.strptime(value, pattern)
                break
            except ValueError:
                continue
        else:
            raise
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=rules.timezone)


# Pydantic's wording of a validator's own message, which the file's reader does not need.
LIBRARY_PREFIXES = ("Value error, ", "Assertion failed, ")


def _library_message(message: str) -> str:
    for prefix in LIBRARY_PREFIXES:
        message = message.removeprefix(prefix)
    return message


@dataclass(slots=True)
class _Reading:
    """What the checks of one file know: its header, the rules, and the rows recorded so far."""

    file: CsvFile
    rules: Rules
    # Records this run created: id -> (line, external_id), to name them by their line.
    created: dict[str, tuple[int, str | None]] = field(default_factory=dict)

    def column(self, name: str) -> str:
        return self.file.header.get(name, name)

    def unknown_number(self) -> Problem:
        return _problem(
            self.column("volunteer_number"),
            "no active member of the project's book has this volunteer number",
            "unknown",
        )

    def shape(self, row: Row) -> list[Problem]:
        if row.missing:
            named = ", ".join(self.column(c) for c in row.missing)
            return [
                _problem(
                    "row",
                    f"the row has {row.cells} columns, the header {self.file.width}: "
                    f"{named} missing (a value with a comma needs double quotes)",
                    "missing_columns",
                )
            ]
        if row.extra:
            return [
                _problem(
                    "row",
                    f"the row has {row.cells} columns, the header {self.file.width}: a value "
                    "with a comma needs double quotes",
                    "extra_columns",
                )
            ]
        return []

    def rule(self, error: TimebankError) -> Problem:
        problem = error.problem()
        message = error.detail
        other = problem.get("record_id")
        if isinstance(other, str) and other in self.created:
            # A record this file made (in a dry run it was never kept): named by its line.
            line, external_id = self.created[other]
            message = (
                f"the member is already credited for part of this time by line {line} of this "
                f"file ({self.column('external_id')} {external_id})"
            )
        return {"field": "row", "message": message, "code": problem["type"]}


async def _row_record(
    session: AsyncSession, reading: _Reading, row: Row
) -> tuple[schemas.ServiceRecordCreate | None, list[Problem]]:
    problems = reading.shape(row)
    if problems:
        return None, problems
    values, column = row.values, reading.column
    project_id: uuid.UUID | None = None
    try:
        project_id = uuid.UUID(values["project_id"])
    except ValueError:
        problems.append(_problem(column("project_id"), "not a project id (UUID)", "uuid"))
    moments: dict[str, datetime] = {}
    for name in ("started_at", "ended_at"):
        try:
            moment = _moment(values[name], reading.rules)
        except ValueError:
            problems.append(
                _problem(
                    column(name),
                    f"{values[name]!r} is not a date and time (YYYY-MM-DD HH:MM or "
                    f"YYYY/MM/DD HH:MM in {reading.rules.timezone.key}, or ISO 8601 with an "
                    "offset)",
                    "datetime",
                )
            )
            continue
        if not instant_in_range(moment):
            # Before anything shows it in local time: near year 1 or 9999 that overflows.
            problems.append(
                _problem(
                    column(name),
                    "the instant must be between 1900-01-01T00:00:00Z and "
                    "2999-12-31T23:59:59.999999Z (UTC)",
                    "datetime_out_of_range",
                )
            )
            continue
        moments[name] = moment
    if not values["external_id"]:
        problems.append(
            _problem(
                column("external_id"),
                "empty: each row needs the record's id in the other system, so that sending "
                "the file again records nothing twice",
                "missing",
            )
        )
    if len(moments) == 2 and moments["ended_at"] <= moments["started_at"]:
        zone = reading.rules.timezone
        problems.append(
            _problem(
                column("ended_at"),
                f"{column('ended_at')} ({local_time(moments['ended_at'], zone)}) is not after "
                f"{column('started_at')} ({local_time(moments['started_at'], zone)}), "
                f"{zone.key}",
                "order",
            )
        )
    member_id = None
    if project_id is not None:
        member_id = await _member_id(session, project_id, values["volunteer_number"])
        if member_id is None:
            problems.append(reading.unknown_number())
    if problems or member_id is None or project_id is None:
        return None, problems
    try:
        data = schemas.ServiceRecordCreate(
            project_id=project_id,
            member_id=member_id,
            started_at=moments["started_at"],
            ended_at=moments["ended_at"],
            attested_by=values["attested_by"],
            external_id=values["external_id"],
        )
    except ValidationError as error:
        for item in error.errors():
            name = str(item["loc"][0]) if item["loc"] else "row"
            name = "volunteer_number" if name == "member_id" else name
            problems.append(_problem(column(name), _library_message(item["msg"]), item["type"]))
        return None, problems
    return data, problems


async def import_records(
    session: AsyncSession,
    rules: Rules,
    file: CsvFile,
    actor: dict[str, str],
    reach: ReachCheck,
    dry_run: bool,
) -> schemas.ImportReport:
    """Check (and unless `dry_run`, record) each row; the report of every row's problems."""
    report = schemas.ImportReport(
        dry_run=dry_run,
        rows=len(file.rows),
        accepted=0,
        already_imported=0,
        refused=0,
        warnings=file.warnings,
        problems=[],
        recorded=[],
        record_ids=[],
    )
    reading = _Reading(file, rules)
    seen: set[str] = set()
    for row in file.rows:
        external_id = row.values.get("external_id") or None
        data, problems = await _row_record(session, reading, row)
        if external_id is not None and external_id in seen:
            problems.append(
                _problem(reading.column("external_id"), "repeated in this file", "duplicate")
            )
            data = None
        if data is not None:
            try:
                async with session.begin_nested():
                    await reach(session, data.project_id, data.member_id)
                    record, created = await records.enter_manual(
                        session, rules, data, actor, source="import"
                    )
                _recorded(report, reading, row, record.id, created, dry_run)
            except MemberNotFound:
                # A member out of the caller's reach is answered as a number that does not
                # exist: a volunteer number never reveals who holds it (docs/authorization.md).
                problems.append(reading.unknown_number())
            except TimebankError as error:
                problems.append(reading.rule(error))
        if external_id is not None:
            seen.add(external_id)
        if problems:
            report.refused += 1
            report.problems.append(
                schemas.ImportRowProblem(row=row.line, external_id=external_id, problems=problems)
            )
    log.info(
        "volunteering.import_done",
        dry_run=dry_run,
        rows=report.rows,
        accepted=report.accepted,
        already_imported=report.already_imported,
        refused=report.refused,
        encoding="gb18030" if file.warnings else "utf-8",
    )
    return report


def _recorded(
    report: schemas.ImportReport,
    reading: _Reading,
    row: Row,
    record_id: uuid.UUID,
    created: bool,
    dry_run: bool,
) -> None:
    """Count a row that was (or would be) recorded; only records that exist are named."""
    external_id = row.values.get("external_id") or None
    if created:
        report.accepted += 1
        reading.created[str(record_id)] = (row.line, external_id)
    else:
        report.already_imported += 1
    kept = not (created and dry_run)
    report.recorded.append(
        schemas.ImportRowRecorded(
            row=row.line,
            external_id=external_id,
            status="accepted" if created else "already_imported",
            record_id=record_id if kept else None,
        )
    )
    if kept:
        report.record_ids.append(record_id)
