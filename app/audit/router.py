"""HTTP routes of the transparency log: keys, receipts, checkpoints, proofs and the export.

Who may read what (docs/audit-format.md §8.1): a transaction's receipt and proof bundle, whoever
may read the transaction; a book's checkpoints, log keys and proofs by seq, every role within
the book's reach; signing a checkpoint, admins; the export, admins and auditors.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import segno
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response, StreamingResponse

from app.audit import export as audit_export
from app.audit import schemas, tlog
from app.audit.errors import BeyondLogSize, CheckpointNotFound, ReceiptTooLarge
from app.audit.note import Verifier
from app.audit.receipting import StoredEntry
from app.audit.receipts import ALG
from app.audit.service import AuditLog, checkpoint_read
from app.audit.tlog import SignedCheckpoint
from app.audit.witness_config import witness_statuses
from app.http.caller import Caller, CallerDep
from app.http.context import SessionDep
from app.http.reads import READ_HEADERS, ReadsDep
from app.http.responses import json_response, problems
from app.identity.authorization import ALL_ROLES, require_book, require_role, sees_any_account
from app.identity.dependencies import allow
from app.kit import deep_json
from app.kit.clock import rfc3339_micro
from app.kit.pg_pool import acquire
from app.ledger import service as ledger_service
from app.ledger.errors import TransactionNotFound

router = APIRouter(tags=["audit"])
# The routes that sign or prove against checkpoints: 500 log-inconsistent is an alarm.
LOG_ERRORS = problems(500)
SeqParam = Annotated[int, Query(ge=1, le=2**62)]
SizeParam = Annotated[int, Query(ge=0, le=2**62)]
JWKS_URI = "/.well-known/jwks.json"
# QR version 40 at error correction level M holds 2,331 bytes (docs/audit-format.md §6.5).
QR_MAX_BYTES = 2331


def get_audit(request: Request) -> AuditLog:
    """The process's transparency log (opened in the app's lifespan)."""
    audit: AuditLog = request.app.state.audit
    return audit


AuditDep = Annotated[AuditLog, Depends(get_audit)]


async def _book(
    caller: Caller, session: AsyncSession, code: str, roles: tuple[str, ...], action: str
) -> None:
    require_role(caller, roles, action)
    require_book(caller, code, f"book {code!r}")
    await ledger_service.get_book(session, code)


async def _entry(session: AsyncSession, caller: Caller, tx_id: UUID) -> StoredEntry:
    """A transaction the caller may read: its entry, JCS bytes and hash (404 otherwise)."""
    row = (
        await session.execute(
            text("SELECT body, entry_hash FROM journal_entries WHERE tx_id = :id"), {"id": tx_id}
        )
    ).one_or_none()
    missing = TransactionNotFound(f"transaction {tx_id} does not exist")
    if row is None:
        raise missing
    body = bytes(row.body)
    entry: dict[str, Any] = deep_json.loads(body)
    accounts = [leg["account_id"] for leg in entry["legs"]]
    if not await sees_any_account(session, caller, entry["book"], accounts):
        raise missing
    return StoredEntry(entry, body, row.entry_hash)


def _checkpoint(
    checkpoint: SignedCheckpoint, audit_keys: dict[str, Ed25519PublicKey]
) -> schemas.CheckpointRead:
    """The checkpoint with the vkey of the key that signed it (none if that key is unknown)."""
    key = audit_keys.get(checkpoint.kid)
    vkey = None if key is None else Verifier.from_public_key(checkpoint.origin, key).vkey()
    return checkpoint_read(checkpoint, vkey)


async def _with_vkey(audit: AuditLog, checkpoint: SignedCheckpoint) -> dict[str, Any]:
    """The checkpoint's JSON document, with its vkey."""
    read = _checkpoint(checkpoint, {k.kid: k.public_key for k in await audit.keys()})
    return read.model_dump(exclude_none=True)


@router.get("/.well-known/jwks.json", response_model=schemas.JwkSet)
async def jwks(audit: AuditDep) -> Response:
    """Every public key that ever signed receipts or checkpoints, with its validity period
    (no authentication)."""
    return json_response(200, await audit.jwks())


@router.get(
    "/v1/books/{code}/log-keys",
    responses={200: {"content": {"text/plain": {}}, "description": "vkeys"}},
    response_class=Response,
)
async def log_keys(code: str, caller: CallerDep, session: SessionDep, audit: AuditDep) -> Response:
    """The book's checkpoint verifier keys in C2SP vkey form, one per line."""
    await _book(caller, session, code, ALL_ROLES, "read the log")
    lines = "".join(f"{vkey}\n" for vkey in await audit.vkeys(code))
    return Response(lines, media_type="text/plain; charset=utf-8")


@router.get("/v1/books/{code}/witnesses", response_model=schemas.WitnessList)
async def witnesses(code: str, caller: CallerDep, session: SessionDep, audit: AuditDep) -> Response:
    """The book's witnesses: the size each last cosigned, and any refusal (an alarm)."""
    await _book(caller, session, code, ALL_ROLES, "read the log")
    async with acquire(audit.pool) as conn:
        found = await witness_statuses(conn, code)
    items = [
        schemas.WitnessRead(
            name=w.name,
            vkey=w.vkey,
            url=w.url,
            cosigned_size=w.cosigned_size,
            cosigned_at=_stamp(w.cosigned_at),
            failures=w.failures,
            last_error=w.last_error,
            alarm=w.alarm,
            refused_at=_stamp(w.refused_at),
            refusal=w.refusal,
        ).model_dump()
        for w in found
    ]
    return json_response(200, {"book": code, "alarm": any(w.alarm for w in found), "items": items})


def _stamp(at: datetime | None) -> str | None:
    return None if at is None else rfc3339_micro(at)


@router.get(
    "/v1/books/{code}/checkpoint", response_model=schemas.CheckpointRead, responses=LOG_ERRORS
)
async def latest_checkpoint(
    code: str, caller: CallerDep, session: SessionDep, audit: AuditDep
) -> Response:
    """The book's latest signed checkpoint (signed now if the book has none yet)."""
    await _book(caller, session, code, ALL_ROLES, "read the log")
    checkpoint = await audit.covering(code, 0)
    return json_response(200, await _with_vkey(audit, checkpoint))


@router.post(
    "/v1/books/{code}/checkpoints",
    status_code=201,
    response_model=schemas.CheckpointRead,
    responses={
        **LOG_ERRORS,
        201: {"description": "a new checkpoint, of the book's size now"},
        200: {
            "model": schemas.CheckpointRead,
            "description": "the book's size was already signed: that checkpoint, unchanged",
        },
    },
    dependencies=[allow(("admin",), "sign checkpoints")],
)
async def sign_checkpoint(
    code: str, caller: CallerDep, session: SessionDep, audit: AuditDep
) -> Response:
    """Bring the book's tree up to its journal and sign a checkpoint now (admins); 200 with
    the latest one when its size is already signed."""
    await _book(caller, session, code, ("admin",), "sign checkpoints")
    checkpoint, new = await audit.sign_checkpoint(code)
    return json_response(201 if new else 200, await _with_vkey(audit, checkpoint))


@router.get("/v1/books/{code}/checkpoints", response_model=schemas.CheckpointPage)
async def list_checkpoints(
    code: str,
    caller: CallerDep,
    session: SessionDep,
    audit: AuditDep,
    tree_size: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    after_tree_size: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    """The book's checkpoints by tree size, smallest first (keyset pages); `tree_size` asks
    for the one of that size (404 if none was signed)."""
    await _book(caller, session, code, ALL_ROLES, "read the log")
    low, high = (tree_size, tree_size) if tree_size is not None else (0, 2**62)
    if after_tree_size is not None:
        low = max(low, after_tree_size + 1)
    async with acquire(audit.pool) as conn:
        found = await tlog.checkpoints_between(conn, code, low, high, limit + 1)
    if tree_size is not None and not found:
        heads = await audit.heads(code)
        if tree_size > heads.journal_seq:
            raise BeyondLogSize(code, "tree_size", tree_size, heads.journal_seq, heads.tree_size)
        raise CheckpointNotFound(f"book {code!r} has no checkpoint of size {tree_size}")
    public = {k.kid: k.public_key for k in await audit.keys()}
    items = [_checkpoint(checkpoint, public) for checkpoint in found[:limit]]
    more = len(found) > limit
    page = {
        "items": [item.model_dump(exclude_none=True) for item in items],
        "next_after_tree_size": items[-1].tree_size if more else None,
    }
    return json_response(200, page)


@router.get(
    "/v1/books/{code}/proofs/inclusion",
    response_model=schemas.InclusionProofRead,
    responses=LOG_ERRORS,
)
async def inclusion_proof(
    code: str,
    seq: SeqParam,
    caller: CallerDep,
    session: SessionDep,
    audit: AuditDep,
    tree_size: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Response:
    """RFC 9162 inclusion proof of entry `seq` (leaf seq - 1) in the tree of `tree_size`
    entries (default: the latest checkpoint, signed now if it does not cover `seq`)."""
    await _book(caller, session, code, ALL_ROLES, "read the log")
    return json_response(200, (await audit.inclusion(code, seq, tree_size)).model_dump())


@router.get(
    "/v1/books/{code}/proofs/consistency",
    response_model=schemas.ConsistencyProofRead,
    responses=LOG_ERRORS,
)
async def consistency_proof(
    code: str,
    first: SizeParam,
    caller: CallerDep,
    session: SessionDep,
    audit: AuditDep,
    second: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> Response:
    """RFC 9162 consistency proof from the tree of `first` entries to that of `second`
    (default: the latest checkpoint's size)."""
    await _book(caller, session, code, ALL_ROLES, "read the log")
    return json_response(200, (await audit.consistency(code, first, second)).model_dump())


@router.get("/v1/transactions/{tx_id}/receipt", response_model=schemas.ReceiptRead)
async def receipt(tx_id: UUID, caller: CallerDep, session: SessionDep, audit: AuditDep) -> Response:
    """The transaction's signed receipt (JWS), with what it states."""
    signed = await audit.receipts.sign(*await _entry(session, caller, tx_id))
    claims = signed.claims
    answer = schemas.ReceiptRead(
        receipt=signed.token,
        kid=signed.key.kid,
        alg=ALG,
        book=claims["book"],
        seq=claims["seq"],
        tx_id=claims["tx_id"],
        entry_hash=claims["entry_hash"],
        leaf_hash=claims["leaf_hash"],
        iat=claims["iat"],
        size_bytes=len(signed.token),
        jwks_uri=JWKS_URI,
    )
    return json_response(200, answer.model_dump())


@router.get(
    "/v1/transactions/{tx_id}/receipt.svg",
    responses={200: {"content": {"image/svg+xml": {}}, "description": "QR code"}},
    response_class=Response,
)
async def receipt_qr(
    tx_id: UUID, caller: CallerDep, session: SessionDep, audit: AuditDep
) -> Response:
    """The receipt as a QR code (SVG, error correction level M) for a kiosk to print."""
    token = (await audit.receipts.sign(*await _entry(session, caller, tx_id))).token
    if len(token) > QR_MAX_BYTES:
        raise ReceiptTooLarge(
            f"the receipt is {len(token)} bytes; one QR code holds {QR_MAX_BYTES}; "
            "use GET /v1/transactions/{id}/receipt"
        )
    out = io.BytesIO()
    segno.make(token, error="m", micro=False, boost_error=False).save(
        out, kind="svg", scale=3, border=4, xmldecl=False
    )
    return Response(out.getvalue(), media_type="image/svg+xml")


@router.get(
    "/v1/transactions/{tx_id}/proof",
    responses={**LOG_ERRORS, 200: {"content": {"text/plain": {}}, "description": "tlog-proof"}},
    response_class=Response,
)
async def transaction_proof(
    tx_id: UUID, caller: CallerDep, session: SessionDep, audit: AuditDep
) -> Response:
    """An offline proof bundle (C2SP tlog-proof) of the transaction in the book's latest
    checkpoint, which is signed now if it does not cover the transaction yet."""
    entry = (await _entry(session, caller, tx_id)).entry
    bundle = await audit.bundle(entry["book"], entry["seq"])
    return Response(bundle, media_type="text/plain; charset=utf-8")


@router.get(
    "/v1/books/{code}/export",
    responses={
        **LOG_ERRORS,
        200: {
            "content": {"application/jsonl": {}, "text/csv": {}},
            "description": "JSON Lines (entries, then the checkpoint) or CSV (one row per leg)",
            "headers": READ_HEADERS,
        },
    },
    response_class=Response,
    dependencies=[allow(("admin", "auditor"), "export books")],
)
async def export(
    code: str,
    caller: CallerDep,
    session: SessionDep,
    audit: AuditDep,
    reads: ReadsDep,
    from_seq: SeqParam = 1,
    to_seq: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    fmt: Annotated[Literal["jsonl", "csv"], Query(alias="format")] = "jsonl",
    receipts: Annotated[
        bool,
        Query(description="JSON Lines: each entry line with its receipt (CSV has none)"),
    ] = True,
) -> Response:
    """Entries `from_seq` to `to_seq` (default: to the head) with their receipts (unless
    `receipts=false`), then the checkpoint that covers them, its proofs and the JWKS; or CSV
    (admins and auditors). The range and its checkpoint are decided on the primary; the
    entries may then be read from the standby, when it is within the bound and holds them all
    (the same bytes)."""
    await _book(caller, session, code, ("admin", "auditor"), "export books")
    jsonl = fmt == "jsonl"
    plan = await audit_export.plan_export(audit, code, from_seq, to_seq, jsonl, receipts)
    name = f"{code}-{plan.from_seq}-{plan.to_seq}.{fmt}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    source = await reads.choose(lambda standby: audit_export.holds(standby, plan))
    if source is not None:
        headers |= source.headers()
    connection = reads.connection(source, lambda: acquire(audit.pool))
    if fmt == "csv":
        body = audit_export.csv_rows(plan, connection)
        return StreamingResponse(body, media_type="text/csv; charset=utf-8", headers=headers)
    body = audit_export.jsonl(audit, plan, connection)
    return StreamingResponse(body, media_type="application/jsonl", headers=headers)
