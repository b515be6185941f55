"""HTTP routes of credentials: issue, list, rotate and revoke bearer tokens (admins)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from app.http.actions import ActionAnswer, ActionResult, run_action
from app.http.caller import Caller, CallerDep
from app.http.context import Posting, SessionDep
from app.http.responses import replayable_response
from app.identity import credentials, errors, schemas
from app.identity.authentication import Authenticator
from app.identity.authorization import listed_book, require_book
from app.identity.dependencies import allow
from app.identity.grants import (
    credential_json,
    credential_notice,
    issue_credential,
    log_credential_change,
)
from app.kit.problems import Forbidden
from app.ledger.schemas import BookCode

router = APIRouter(prefix="/v1", tags=["credentials"])
ADMINS = ("admin",)


def _answer(answer: ActionAnswer) -> Response:
    return replayable_response(answer.status_code, answer.body, answer.replayed)


def _forgotten(
    request: Request, credential_id: UUID, answer: ActionAnswer, event: str, by: str
) -> Response:
    log_credential_change(event, answer, by)
    # The NOTIFY of the change reaches this process too, but only after this answer: forget
    # the old token here so that the caller's very next request is refused.
    authenticator: Authenticator = request.app.state.authenticator
    authenticator.forget(str(credential_id))
    return _answer(answer)


def _require_reach(caller: Caller, book: str | None, what: str) -> None:
    """A book admin manages its book's credentials; platform ones are the platform's."""
    if book is None:
        if caller.book is not None:
            raise errors.CredentialNotFound(f"{what} does not exist")
    else:
        require_book(caller, book, what)


async def _visible(
    session: AsyncSession, caller: Caller, credential_id: UUID
) -> schemas.CredentialRead:
    credential = await credentials.get_credential(session, credential_id)
    if credential is None:
        raise errors.CredentialNotFound(f"credential {credential_id} does not exist")
    _require_reach(caller, credential.book, f"credential {credential_id}")
    return credential


@router.post(
    "/credentials",
    status_code=201,
    response_model=schemas.CredentialRead,
    dependencies=[allow(ADMINS, "issue credentials")],
)
async def create_credential(data: schemas.CredentialCreate, ctx: Posting) -> Response:
    """Issue a credential; its token is in this answer only (a replay answers without it)."""
    if data.book is None and ctx.caller.book is not None:
        raise Forbidden("only a platform admin issues credentials for every book")
    if data.book is not None:
        require_book(ctx.caller, data.book, f"book {data.book!r}")
    answer = await issue_credential(ctx.sessions, ctx.sequencer, ctx.idem, data, ctx.caller.actor())
    return _answer(answer)


@router.get(
    "/credentials",
    response_model=schemas.CredentialPage,
    dependencies=[allow(ADMINS, "list credentials")],
)
async def list_credentials(
    caller: CallerDep,
    session: SessionDep,
    book: BookCode | None = None,
    after: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> schemas.CredentialPage:
    """Credentials in the caller's reach, without secrets, with when each was last used."""
    return await credentials.list_credentials(session, listed_book(caller, book), after, limit)


@router.get(
    "/credentials/{credential_id}",
    response_model=schemas.CredentialRead,
    dependencies=[allow(ADMINS, "read credentials")],
)
async def get_credential(
    credential_id: UUID, caller: CallerDep, session: SessionDep
) -> schemas.CredentialRead:
    """One credential, without its secret."""
    return await _visible(session, caller, credential_id)


@router.post(
    "/credentials/{credential_id}/revoke",
    response_model=schemas.CredentialRead,
    dependencies=[allow(ADMINS, "revoke credentials")],
)
async def revoke_credential(credential_id: UUID, ctx: Posting, request: Request) -> Response:
    """Revoke a credential: its token is refused (401) from this answer on."""
    actor = ctx.caller.actor()

    async def revoke(session: AsyncSession) -> ActionResult:
        await _visible(session, ctx.caller, credential_id)
        credential = await credentials.revoke_credential(session, credential_id)
        return ActionResult(
            200,
            credential_json(credential),
            credential_notice(credential, "credential_revoked", actor),
        )

    answer = await run_action(ctx.sessions, ctx.sequencer, ctx.idem, revoke)
    return _forgotten(
        request, credential_id, answer, "identity.credential_revoked", actor["credential"]
    )


@router.post(
    "/credentials/{credential_id}/rotate",
    response_model=schemas.CredentialRead,
    dependencies=[allow(ADMINS, "rotate credentials")],
)
async def rotate_credential(credential_id: UUID, ctx: Posting, request: Request) -> Response:
    """Give a credential a new token (in this answer only); the old token stops at once."""
    actor = ctx.caller.actor()

    async def rotate(session: AsyncSession) -> ActionResult:
        await _visible(session, ctx.caller, credential_id)
        try:
            credential, token = await credentials.rotate_credential(session, credential_id)
        except credentials.CredentialRefused as exc:
            raise errors.CredentialNotAllowed(str(exc)) from None
        notice = credential_notice(credential, "credential_rotated", actor)
        return ActionResult(200, credential_json(credential), notice, {"token": token})

    answer = await run_action(ctx.sessions, ctx.sequencer, ctx.idem, rotate)
    return _forgotten(
        request, credential_id, answer, "identity.credential_rotated", actor["credential"]
    )
