"""What of volunteering a caller sees, anything else answered as missing (404): needs and
projects of the books it reaches; the service records (and their disputes) identity's
`sees_service_record` lets it see."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.http.caller import Caller
from app.identity import access
from app.identity.authorization import reaches_book, sees_service_record
from app.identity.errors import MemberNotFound
from app.volunteering import disputes, errors, needs, projects
from app.volunteering.records import get_record
from app.volunteering.schemas import DisputeRead, NeedRead, ProjectRead, ServiceRecordRead


async def visible_need(session: AsyncSession, caller: Caller, need_id: uuid.UUID) -> NeedRead:
    """A need of a book within the caller's reach; 404 (as if missing) otherwise."""
    need = await needs.get_need(session, need_id)
    if not reaches_book(caller, need.book):
        raise errors.NeedNotFound(f"need {need_id} does not exist")
    return need


async def visible_project(
    session: AsyncSession, caller: Caller, project_id: uuid.UUID
) -> ProjectRead:
    """A project of a book within the caller's reach; 404 (as if missing) otherwise."""
    project = await projects.get_project(session, project_id)
    if not reaches_book(caller, project.book):
        raise errors.ProjectNotFound(f"project {project_id} does not exist")
    return project


async def require_recording_reach(
    session: AsyncSession, caller: Caller, project_id: uuid.UUID, member_id: uuid.UUID
) -> None:
    """The caller may record service of this member in this project: the project within
    reach (404), its own organisation's (403), the member within reach or signed up for the
    project (404 otherwise)."""
    project = await visible_project(session, caller, project_id)
    access.require_owner(caller, project.organisation_id, "record service in it")
    try:
        await access.reachable_member(session, caller, member_id, project.book)
    except MemberNotFound:
        # Signing up for a project is the member's consent to be recorded in it, enrolled in
        # the organisation or not. The answer for any other member is the same whether or not
        # the member exists (docs/authorization.md), and says what is likely wrong.
        if not await projects.is_signed_up(session, project_id, member_id):
            raise MemberNotFound(
                f"member {member_id} is not enrolled in this organisation and has not signed "
                "up for this project (or does not exist)"
            ) from None


def _sees(caller: Caller, record: ServiceRecordRead) -> bool:
    return sees_service_record(
        caller, record.book, str(record.organisation_id), str(record.member_id)
    )


async def visible_record(
    session: AsyncSession, caller: Caller, record_id: uuid.UUID, lock: bool = False
) -> ServiceRecordRead:
    """A record within the caller's reach; 404 (as if missing) otherwise."""
    record = await get_record(session, record_id, lock=lock)
    if not _sees(caller, record):
        raise errors.ServiceRecordNotFound(f"service record {record_id} does not exist")
    return record


async def visible_dispute(
    session: AsyncSession, caller: Caller, dispute_id: uuid.UUID
) -> DisputeRead:
    """A dispute of a record within the caller's reach; 404 (as if missing) otherwise."""
    dispute = await disputes.get_dispute(session, dispute_id)
    record = await get_record(session, dispute.record_id)
    if not _sees(caller, record):
        raise errors.DisputeNotFound(f"dispute {dispute_id} does not exist")
    return dispute


def listed_scope(
    caller: Caller, organisation_id: uuid.UUID | None, member_id: uuid.UUID | None
) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """The organisation and member a list of records or disputes covers: an organisation's
    own, a mini-program's member's, or those asked for (book-wide roles)."""
    if caller.role == "org":
        return uuid.UUID(str(caller.organisation_id)), member_id
    if caller.role == "miniprogram":
        return organisation_id, access.acting_member(caller, member_id)
    return organisation_id, member_id
