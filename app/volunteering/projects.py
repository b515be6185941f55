"""Service projects (项目库): what an organisation publishes, who signs up, who might serve.

Capacity holds under concurrent sign-ups because the one counter that admits a member is
raised by a single conditional UPDATE, checked again by the table's CHECK constraint.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.volunteering import errors, needs, schemas
from app.volunteering.schemas import ProjectRead, SignupRead, VolunteerCandidate

_SELECT = """
SELECT p.id, p.book_code AS book, p.organisation_id, p.community_id, p.title, p.category,
       p.place, p.starts_at, p.ends_at, p.capacity, p.signed_up, p.credit_policy,
       p.fixed_minutes, p.cap_minutes_per_day, p.status, p.created_at, p.updated_at,
       coalesce(array_agg(pn.need_id ORDER BY pn.need_id)
                FILTER (WHERE pn.need_id IS NOT NULL), '{}') AS need_ids
FROM projects p LEFT JOIN project_needs pn ON pn.project_id = p.id
"""


@dataclass(frozen=True, slots=True)
class ProjectRow:
    """A project as the rules read it: its window, credit policy, caps and check-in key (which
    no answer shows)."""

    id: uuid.UUID
    book: str
    organisation_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    status: str
    credit_policy: str
    fixed_minutes: int | None
    cap_minutes_per_day: int | None
    checkin_key: bytes
    category: str


async def get_project(session: AsyncSession, project_id: uuid.UUID) -> ProjectRead:
    """A project and the needs it addresses."""
    row = (
        await session.execute(text(_SELECT + " WHERE p.id = :id GROUP BY p.id"), {"id": project_id})
    ).one_or_none()
    if row is None:
        raise errors.ProjectNotFound(f"project {project_id} does not exist")
    return ProjectRead.model_validate(row._asdict())


@dataclass(frozen=True, slots=True)
class ProjectTitle:
    """What a history line names of a project."""

    id: uuid.UUID
    title: str
    organisation_id: uuid.UUID


async def titles_of(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, ProjectTitle]:
    """The titles and organisations of these projects (those that exist)."""
    if not ids:
        return {}
    rows = await session.execute(
        text(
            "SELECT id, title, organisation_id FROM projects WHERE id = ANY(CAST(:ids AS uuid[]))"
        ),
        {"ids": list(ids)},
    )
    return {row.id: ProjectTitle(row.id, row.title, row.organisation_id) for row in rows}


async def project_row(
    session: AsyncSession, project_id: uuid.UUID, lock: bool = True
) -> ProjectRow:
    """The project row as the rules read it (its check-in key included), locked for this
    transaction unless `lock` is false."""
    row = (
        await session.execute(
            text(
                "SELECT id, book_code AS book, organisation_id, starts_at, ends_at, status, "
                "credit_policy, fixed_minutes, cap_minutes_per_day, checkin_key, category "
                "FROM projects WHERE id = :id" + (" FOR UPDATE" if lock else "")
            ),
            {"id": project_id},
        )
    ).one_or_none()
    if row is None:
        raise errors.ProjectNotFound(f"project {project_id} does not exist")
    checkin_key = bytes(row.checkin_key)
    return ProjectRow(**{**row._asdict(), "checkin_key": checkin_key})


async def create_project(
    session: AsyncSession, data: schemas.ProjectCreate, organisation_id: uuid.UUID, created_by: str
) -> ProjectRead:
    """Publish a project of `organisation_id`, linked to the needs it addresses."""
    await needs.require_listed(session, "service_categories", "category", data.category)
    await needs.require_community(session, data.book, data.community_id)
    project_id = uuid.uuid4()
    await session.execute(
        text(
            "INSERT INTO projects (id, book_code, organisation_id, community_id, title, category, "
            "place, starts_at, ends_at, capacity, credit_policy, fixed_minutes, "
            "cap_minutes_per_day, checkin_key, created_by) VALUES (:id, :b, :o, :c, :t, :cat, "
            ":pl, :s, :e, :cap, :cp, :fm, :cpd, :k, CAST(:by AS uuid))"
        ),
        {
            "id": project_id,
            "b": data.book,
            "o": organisation_id,
            "c": data.community_id,
            "t": data.title,
            "cat": data.category,
            "pl": data.place,
            "s": data.starts_at,
            "e": data.ends_at,
            "cap": data.capacity,
            "cp": data.credit_policy,
            "fm": data.fixed_minutes,
            "cpd": data.cap_minutes_per_day,
            "k": secrets.token_bytes(32),
            "by": created_by,
        },
    )
    for need_id in dict.fromkeys(data.need_ids):
        need = await needs.get_need(session, need_id)
        if need.book != data.book:
            raise errors.NeedNotFound(f"need {need_id} does not exist")
        await session.execute(
            text("INSERT INTO project_needs (project_id, need_id) VALUES (:p, :n)"),
            {"p": project_id, "n": need_id},
        )
        if need.status == "open":
            await needs.set_need_status(session, need_id, "matched")
    return await get_project(session, project_id)


async def set_project_status(
    session: AsyncSession, project_id: uuid.UUID, status: str
) -> ProjectRead:
    """Close a project to new sign-ups and check-ins (or publish it again)."""
    await session.execute(
        text("UPDATE projects SET status = :s, updated_at = now() WHERE id = :id"),
        {"s": status, "id": project_id},
    )
    return await get_project(session, project_id)


async def list_projects(
    session: AsyncSession,
    book: str | None,
    organisation_id: uuid.UUID | None,
    status: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[ProjectRead]:
    """Projects in id order (keyset pages)."""
    where: list[str] = ["true"]
    params: dict[str, Any] = {"limit": limit + 1}
    for column, value in (
        ("p.book_code", book),
        ("p.organisation_id", organisation_id),
        ("p.status", status),
    ):
        if value is not None:
            where.append(f"{column} = :{column[2:]}")
            params[column[2:]] = value
    if after is not None:
        where.append("p.id > :after")
        params["after"] = after
    query = f"{_SELECT} WHERE {' AND '.join(where)} GROUP BY p.id ORDER BY p.id LIMIT :limit"
    rows = await session.execute(text(query), params)
    return [ProjectRead.model_validate(row._asdict()) for row in rows]


async def candidates(
    session: AsyncSession, project: ProjectRead, limit: int
) -> list[VolunteerCandidate]:
    """Members of the project's community (or, without one, of its organisation) who served in
    its category before and have not signed up: most experienced, most recent first."""
    pool = project.community_id or project.organisation_id
    rows = await session.execute(
        text(
            "SELECT m.id AS member_id, m.volunteer_number, count(*) AS records, "
            "sum(r.credited_minutes) AS minutes, max(r.service_day) AS last_served "
            "FROM organisation_members om JOIN members m ON m.id = om.member_id "
            "JOIN service_records r ON r.member_id = m.id AND r.status = 'approved' "
            "JOIN projects p ON p.id = r.project_id AND p.category = :cat "
            "WHERE om.organisation_id = :pool AND m.status = 'active' "
            "AND NOT EXISTS (SELECT 1 FROM signups s WHERE s.project_id = :project "
            "                AND s.member_id = m.id AND s.status = 'active') "
            "GROUP BY m.id ORDER BY count(*) DESC, max(r.service_day) DESC, m.id LIMIT :limit"
        ),
        {"cat": project.category, "pool": pool, "project": project.id, "limit": limit},
    )
    return [VolunteerCandidate.model_validate(row._asdict()) for row in rows]


async def sign_up(
    session: AsyncSession, project_id: uuid.UUID, member_id: uuid.UUID, now: datetime
) -> tuple[SignupRead, bool]:
    """Sign a member up (idempotent); the bool says whether a place was taken just now."""
    # Sign-ups of a project queue on its row: each sees the count and the sign-ups the
    # previous one left (the same member twice at once takes one place).
    project = await project_row(session, project_id)
    if project.status != "published" or now >= project.ends_at:
        raise errors.ProjectNotOpen(f"project {project_id} takes no sign-ups now")
    existing = await _signup(session, project_id, member_id)
    if existing is not None and existing.status == "active":
        return existing, False
    taken = await session.execute(
        text(
            "UPDATE projects SET signed_up = signed_up + 1 WHERE id = :id "
            "AND signed_up < capacity RETURNING signed_up"
        ),
        {"id": project_id},
    )
    if taken.first() is None:
        raise errors.ProjectFull("every place of the project is taken")
    await session.execute(
        text(
            "INSERT INTO signups (project_id, member_id) VALUES (:p, :m) "
            "ON CONFLICT (project_id, member_id) DO UPDATE SET status = 'active', "
            "updated_at = now()"
        ),
        {"p": project_id, "m": member_id},
    )
    signup = await _signup(session, project_id, member_id)
    assert signup is not None
    return signup, True


async def cancel_signup(
    session: AsyncSession, project_id: uuid.UUID, member_id: uuid.UUID
) -> SignupRead:
    """Give a place back (idempotent)."""
    await project_row(session, project_id)
    existing = await _signup(session, project_id, member_id)
    if existing is None:
        raise errors.NotSignedUp(f"member {member_id} has not signed up for {project_id}")
    if existing.status == "active":
        await session.execute(
            text(
                "UPDATE signups SET status = 'cancelled', updated_at = now() "
                "WHERE project_id = :p AND member_id = :m"
            ),
            {"p": project_id, "m": member_id},
        )
        await session.execute(
            text("UPDATE projects SET signed_up = signed_up - 1 WHERE id = :id"), {"id": project_id}
        )
    signup = await _signup(session, project_id, member_id)
    assert signup is not None
    return signup


async def list_signups(session: AsyncSession, project_id: uuid.UUID) -> list[SignupRead]:
    """The project's sign-ups, oldest first."""
    rows = await session.execute(
        text(
            "SELECT project_id, member_id, status, created_at, updated_at FROM signups "
            "WHERE project_id = :p ORDER BY created_at, member_id"
        ),
        {"p": project_id},
    )
    return [SignupRead.model_validate(row._asdict()) for row in rows]


async def is_signed_up(session: AsyncSession, project_id: uuid.UUID, member_id: uuid.UUID) -> bool:
    """Whether the member holds an active place in the project."""
    signup = await _signup(session, project_id, member_id)
    return signup is not None and signup.status == "active"


async def _signup(
    session: AsyncSession, project_id: uuid.UUID, member_id: uuid.UUID
) -> SignupRead | None:
    row = (
        await session.execute(
            text(
                "SELECT project_id, member_id, status, created_at, updated_at FROM signups "
                "WHERE project_id = :p AND member_id = :m"
            ),
            {"p": project_id, "m": member_id},
        )
    ).one_or_none()
    return None if row is None else SignupRead.model_validate(row._asdict())
