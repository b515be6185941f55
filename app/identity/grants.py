"""Issuing credentials: the one path used by the API and by `timebank credentials create`."""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.http.actions import ActionAnswer, ActionResult, Notice, run_action
from app.http.caller import SYSTEM_CREDENTIAL
from app.identity import credentials, errors, schemas
from app.kit.canonical_json import JsonObject
from app.ledger.outcomes import IdempotencyRef
from app.ledger.sequencer import Sequencer

log = structlog.get_logger("timebank.identity")


def credential_json(credential: schemas.CredentialRead) -> JsonObject:
    """A credential as plain JSON (what an action's answer stores)."""
    return credential.model_dump(mode="json")


def credential_notice(
    credential: schemas.CredentialRead, what: str, actor: dict[str, str]
) -> Notice | None:
    """The journal notice of a credential change; a platform credential has no book."""
    if credential.book is None:
        return None
    return Notice(credential.book, what, credentials.notice_facts(credential), actor)


def log_credential_change(event: str, answer: ActionAnswer, by: str, **fields: str) -> None:
    """One line for a credential granted, revoked or rotated, once it has committed (not for
    a replay): ids, role and reach; never the token, nor the credential's name."""
    if answer.replayed or answer.status_code >= 300:
        return
    body = answer.body
    # `subject_id`: the credential changed (`credential_id`, as on every line of a request,
    # is the caller's).
    log.info(
        event,
        subject_id=body["id"],
        role=body["role"],
        book=body["book"],
        organisation_id=body.get("organisation_id"),
        by=by,
        **fields,
    )


async def issue_credential(
    sessions: async_sessionmaker[AsyncSession],
    sequencer: Sequencer,
    idem: IdempotencyRef,
    spec: schemas.CredentialCreate,
    actor: dict[str, str],
) -> ActionAnswer:
    """Create a credential once per key; its token is in the first answer only."""

    async def issue(session: AsyncSession) -> ActionResult:
        return await grant(session, spec, actor)

    answer = await run_action(sessions, sequencer, idem, issue)
    log_credential_change("identity.credential_granted", answer, actor["credential"])
    return answer


async def grant(
    session: AsyncSession, spec: schemas.CredentialCreate, actor: dict[str, str]
) -> ActionResult:
    """Inside an action's transaction: create the credential `actor` grants, with its
    `notice.credential_granted`; the token is in the first answer only."""
    org = None if spec.organisation_id is None else str(spec.organisation_id)
    try:
        credential, token = await credentials.create_credential(
            session,
            spec.role,
            spec.book,
            spec.name,
            org,
            created_by=actor["credential"],
            rate_limit_per_s=spec.rate_limit_per_s,
        )
    except credentials.CredentialRefused as exc:
        raise errors.CredentialNotAllowed(str(exc)) from None
    notice = credential_notice(credential, "credential_granted", actor)
    return ActionResult(201, credential_json(credential), notice, {"token": token})


async def grant_credential(
    sessions: async_sessionmaker[AsyncSession],
    sequencer: Sequencer,
    spec: schemas.CredentialCreate,
) -> tuple[schemas.CredentialRead, str]:
    """An operator's grant from the command line: returns the credential and its token."""
    actor = {"credential": SYSTEM_CREDENTIAL}
    idem = IdempotencyRef(SYSTEM_CREDENTIAL, f"cli:{uuid.uuid4()}", "")
    answer = await issue_credential(sessions, sequencer, idem, spec, actor)
    return schemas.CredentialRead.model_validate(answer.body), str(answer.body["token"])
