"""FastAPI dependencies: who is calling, and the idempotency key of a posting request."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated

from fastapi import Depends, Header, Request

from app.errors import Forbidden, MissingIdempotencyKey, Unauthorized, ValidationFailed
from app.identity.credentials import Credential, CredentialCache
from app.kit.canonical_json import canonical_bytes
from app.ledger.sequencer import IdempotencyRef


async def authenticate(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Credential:
    """The caller's credential from `Authorization: Bearer <token>`."""
    if not authorization or not authorization.startswith("Bearer "):
        raise Unauthorized("send Authorization: Bearer <token>")
    cache: CredentialCache = request.app.state.credentials
    return await cache.authenticate(authorization[len("Bearer ") :].strip())


Caller = Annotated[Credential, Depends(authenticate)]


def _reach(caller: Credential, book: str | None) -> None:
    if caller.book is not None and book is not None and caller.book != book:
        raise Forbidden(f"this credential is bound to book {caller.book!r}")


async def reader(caller: Caller) -> Credential:
    """Any valid credential may read (within its book, checked where the book is known)."""
    return caller


async def writer(caller: Caller) -> Credential:
    """Only admins write in this release; other roles arrive with their own routes."""
    if caller.role != "admin":
        raise Forbidden(f"role {caller.role!r} may not change the ledger here")
    return caller


Reader = Annotated[Credential, Depends(reader)]
Writer = Annotated[Credential, Depends(writer)]


def check_book(caller: Credential, book: str) -> None:
    """Refuse a credential bound to another book."""
    _reach(caller, book)


async def idempotency(
    request: Request,
    caller: Writer,
    idempotency_key: Annotated[
        str | None,
        Header(
            description="1-255 printable ASCII characters; a retry with the same key and body "
            "gets the first answer",
        ),
    ] = None,
) -> IdempotencyRef:
    """The key, scoped to the caller, and a hash of what is asked (method, path, body)."""
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
    return IdempotencyRef(caller.id, idempotency_key, digest.hexdigest())


Idempotency = Annotated[IdempotencyRef, Depends(idempotency)]
