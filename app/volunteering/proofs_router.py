"""HTTP routes of volunteer service proofs (志愿服务记录证明, docs/service-proof.md).

Issuing: admin, auditor, org and mini-program callers, for a member within reach (kiosks
403); an organisation's proof lists only what it certified. Checking: public, by the proof's
random id, which is printed on the paper with its QR code.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from starlette.responses import HTMLResponse, Response

from app.audit.service import AuditLog
from app.config import Settings
from app.http.caller import CallerDep
from app.http.context import SessionDep
from app.http.responses import json_response
from app.identity.access import visible_member
from app.identity.authorization import SEES_PERSONAL_DATA
from app.identity.dependencies import allow
from app.identity.members import member_view
from app.identity.personal import PersonalDataCipher
from app.kit.schemas import Day
from app.volunteering import proof_page, proofs
from app.volunteering.figures import check_period
from app.volunteering.proof_schemas import ServiceProofIssued, ServiceProofRead

router = APIRouter(tags=["service proofs"])

# A proof names a person: no cache keeps it; the page loads nothing from elsewhere.
NO_STORE = {"Cache-Control": "no-store"}
PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}


def _cipher(request: Request) -> PersonalDataCipher:
    cipher: PersonalDataCipher = request.app.state.personal_data
    return cipher


def _audit(request: Request) -> AuditLog:
    audit: AuditLog = request.app.state.audit
    return audit


@router.get(
    "/v1/members/{member_id}/service-proof",
    response_model=ServiceProofIssued,
    responses={
        200: {
            "content": {"text/html": {}},
            "description": "the signed proof (JSON), or with format=html (or Accept: "
            "text/html) the printable page with its QR code",
        },
    },
    dependencies=[allow(proofs.ISSUING_ROLES, "issue service proofs")],
)
async def issue_service_proof(
    member_id: UUID,
    caller: CallerDep,
    session: SessionDep,
    request: Request,
    period_from: Annotated[
        Day | None, Query(alias="from", description="first service day (inclusive)")
    ] = None,
    period_to: Annotated[
        Day | None, Query(alias="to", description="last service day (inclusive)")
    ] = None,
    organisation_id: Annotated[
        UUID | None, Query(description="the issuing organisation (org callers: their own)")
    ] = None,
    fmt: Annotated[Literal["json", "html"] | None, Query(alias="format")] = None,
) -> Response:
    """Issue a new signed proof of the member's certified service hours (every call issues
    and stores a new proof with its own number)."""
    member = await visible_member(session, caller, member_id)
    issuer = await proofs.resolve_issuer(session, caller, member, organisation_id)
    check_period(period_from, period_to)
    view = member_view(member, _cipher(request), caller.role in SEES_PERSONAL_DATA)
    settings: Settings = request.app.state.settings
    issued = await proofs.issue_proof(
        session,
        _audit(request).receipts.ring,
        _cipher(request),
        caller,
        member,
        view.display_name,
        view.masked,
        issuer,
        period_from,
        period_to,
        timezone=settings.service_timezone,
        public_url=settings.public_url,
    )
    if fmt == "html" or (fmt is None and "text/html" in request.headers.get("accept", "")):
        page = proof_page.render_html(issued.document, settings.service_timezone)
        return HTMLResponse(page, headers=PAGE_HEADERS)
    body = {
        "proof_id": issued.proof_id,
        "number": issued.number,
        "token": issued.token,
        "document": issued.document,
        "verify_url": issued.verify_url,
        "jwks_uri": proofs.JWKS_URI,
    }
    return json_response(200, body, NO_STORE)


@router.get(
    "/v1/service-proofs/{proof_id}",
    response_model=ServiceProofRead,
    responses={
        200: {
            "content": {"text/html": {}},
            "description": "the proof and whether it verifies (JSON), or with format=html (or "
            "Accept: text/html, as a browser following the printed link sends) a page in "
            "Chinese that says so",
        },
    },
)
async def check_service_proof(
    proof_id: UUID,
    session: SessionDep,
    request: Request,
    fmt: Annotated[Literal["json", "html"] | None, Query(alias="format")] = None,
) -> Response:
    """A stored proof and whether its signature verifies now with the JWKS (no
    authentication: the proof's random id, printed on it, is what lets one ask)."""
    jwks = await _audit(request).jwks()
    stored = await proofs.read_proof(session, _cipher(request), proof_id, jwks)
    if fmt == "html" or (fmt is None and "text/html" in request.headers.get("accept", "")):
        zone = request.app.state.settings.service_timezone
        return HTMLResponse(proof_page.render_check_html(stored, zone), headers=PAGE_HEADERS)
    return json_response(200, dataclasses.asdict(stored), NO_STORE)
