"""HTTP routes of console sessions: sign in with a credential's token, read the session, sign
out. The page itself is static (`/console/`); everything it shows comes from the /v1 API,
under the same rules as every other client (docs/authorization.md, "The console")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response
from pydantic import Field

from app.http.caller import SESSION_COOKIE, CallerDep
from app.http.context import SessionDep
from app.http.responses import problems
from app.identity import console_sessions
from app.identity.console_sessions import ConsoleSessionRead
from app.identity.credentials import ROLES
from app.identity.dependencies import allow
from app.kit.schemas import InputModel

router = APIRouter(prefix="/v1", tags=["console"])


class ConsoleSignIn(InputModel):
    token: Annotated[str, Field(min_length=1, max_length=200)] = Field(
        description="an admin, org or auditor credential's bearer token, typed once"
    )


def _secure(request: Request) -> bool:
    """Whether the cookie may travel over HTTPS only: when the page was reached by HTTPS, or
    the service's public address is HTTPS (behind a proxy that ends TLS)."""
    public_url: str = request.app.state.settings.public_url
    return request.url.scheme == "https" or public_url.startswith("https://")


@router.post(
    "/console/sessions",
    status_code=201,
    response_model=ConsoleSessionRead,
    responses=problems(401, 403),
)
async def sign_in(
    data: ConsoleSignIn, session: SessionDep, request: Request, response: Response
) -> ConsoleSessionRead:
    """Trade a credential's token for a console session (no bearer token: the token in the
    body is the authority). The session is an HttpOnly cookie; the answer gives the CSRF token
    the page sends as X-CSRF-Token on every write. 401 for an unknown, revoked or rotated
    token; 403 for a kiosk or mini-program credential."""
    state = request.app.state
    opened = await console_sessions.open_session(
        session, data.token, state.settings.console_session_ttl_s
    )
    response.set_cookie(
        SESSION_COOKIE,
        opened.secret,
        max_age=state.settings.console_session_ttl_s,
        path="/",
        secure=_secure(request),
        httponly=True,
        samesite="strict",
    )
    response.headers["Cache-Control"] = "no-store"
    return opened.read


@router.get(
    "/console/session",
    response_model=ConsoleSessionRead,
    dependencies=[allow(ROLES, "read its session")],
)
async def current_session(
    caller: CallerDep, session: SessionDep, response: Response
) -> ConsoleSessionRead:
    """Who is signed in, the session's CSRF token and when it ends (with a bearer token: the
    credential, and no session)."""
    response.headers["Cache-Control"] = "no-store"
    return await console_sessions.session_read(
        session, caller.credential.id, caller.console_session
    )


@router.delete("/console/session", status_code=204, dependencies=[allow(ROLES, "sign out")])
async def sign_out(request: Request, session: SessionDep, caller: CallerDep) -> Response:
    """End the console session at once and clear its cookie (with a bearer token: nothing to
    end)."""
    secret = request.cookies.get(SESSION_COOKIE)
    if secret and caller.console_session is not None:
        await console_sessions.end_session(session, secret)
    response = Response(status_code=204)
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=_secure(request), httponly=True, samesite="strict"
    )
    return response
