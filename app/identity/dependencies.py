"""FastAPI dependencies: who is calling, and the idempotency key of a posting request.

Each route has one dependency that does all of its checks: FastAPI's dependency resolution
costs more per node than the checks themselves, and postings are the hot path.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from app.errors import Forbidden, MissingIdempotencyKey, Unauthorized, ValidationFailed
from app.identity.credentials import Credential, CredentialCache
from app.kit.canonical_json import canonical_bytes
from app.ledger.sequencer import IdempotencyRef, Sequencer

BEARER = "Bearer "
AuthorizationHeader = Annotated[str | None, Header(include_in_schema=False)]


async def _authenticate(request: Request, authorization: str | None) -> Credential:
    if not authorization or not authorization.startswith(BEARER):
        raise Unauthorized("send Authorization: Bearer <token>")
    cache: CredentialCache = request.app.state.credentials
    return await cache.authenticate(authorization[len(BEARER) :].strip())


def _require_writer(caller: Credential) -> Credential:
    # Only admins write in this release; other roles arrive with their own routes.
    if caller.role != "admin":
        raise Forbidden(f"role {caller.role!r} may not change the ledger here")
    return caller


async def reader(request: Request, authorization: AuthorizationHeader = None) -> Credential:
    """Any valid credential may read (within its book, checked where the book is known)."""
    return await _authenticate(request, authorization)


async def writer(request: Request, authorization: AuthorizationHeader = None) -> Credential:
    """A credential allowed to change the ledger."""
    return _require_writer(await _authenticate(request, authorization))


Reader = Annotated[Credential, Depends(reader)]
Writer = Annotated[Credential, Depends(writer)]


def check_book(caller: Credential, book: str) -> None:
    """Refuse a credential bound to another book."""
    if caller.book is not None and caller.book != book:
        raise Forbidden(f"this credential is bound to book {caller.book!r}")


@dataclass(frozen=True, slots=True)
class PostingContext:
    """Everything a posting route needs besides its body."""

    caller: Credential
    idem: IdempotencyRef
    sequencer: Sequencer


async def posting_context(
    request: Request,
    authorization: AuthorizationHeader = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            description="1-255 printable ASCII characters; a retry with the same key and body "
            "gets the first answer",
        ),
    ] = None,
) -> PostingContext:
    """The writer, its idempotency key with a hash of the request, and the sequencer."""
    caller = _require_writer(await _authenticate(request, authorization))
    if idempotency_key is None:
        raise MissingIdempotencyKey("this request needs an Idempotency-Key header")
    if not (1 <= len(idempotency_key) <= 255) or not all(
        0x20 <= ord(c) <= 0x7E for c in idempotency_key
    ):
        raise ValidationFailed(
            "Idempotency-Key must be 1-255 printable ASCII characters",
            errors=[
                {
                    "field": "header/Idempotency-Key",
                    "message": "1-255 printable ASCII characters",
                    "code": "idempotency_key_invalid",
                }
            ],
        )
    raw = await request.body()
    try:
        body = canonical_bytes(json.loads(raw)) if raw else b""
    except Exception:  # not JSON: the raw bytes identify the request
        body = raw
    digest = hashlib.sha256()
    digest.update(f"{request.method} {request.url.path}\n".encode())
    digest.update(body)
    idem = IdempotencyRef(caller.id, idempotency_key, digest.hexdigest())
    return PostingContext(caller, idem, request.app.state.sequencer)


Posting = Annotated[PostingContext, Depends(posting_context)]
