"""The witness's HTTP app (Starlette): tlog-witness's `POST /add-checkpoint` and
`GET /<origin hash>/checkpoint`, with `/healthz` and `/metrics`."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from app.kit.problems import PROBLEM_MEDIA_TYPE, TimebankError
from app.witness.config import WitnessDir, load_config, load_key
from app.witness.errors import (
    WitnessBodyTooLarge,
    WitnessInternal,
    WitnessMalformedRequest,
    WitnessMethodNotAllowed,
    WitnessNoCheckpoint,
    WitnessNotFound,
    WitnessUnavailable,
)
from app.witness.service import Witness, WitnessMetrics
from app.witness.store import Cosigned, WitnessStore

# A request holds at most 63 proof lines and a checkpoint with its signatures: a few KiB.
MAX_BODY_BYTES = 64 * 1024
SIZE_MEDIA_TYPE = "text/x.tlog.size"
NOTE_MEDIA_TYPE = "text/plain; charset=utf-8"
_ORIGIN_HASH = re.compile(r"[0-9a-f]{64}")
log = structlog.get_logger("timebank.witness")


def problem_response(error: TimebankError, instance: str | None = None) -> Response:
    """`error` as application/problem+json."""
    return JSONResponse(
        error.problem(instance),
        status_code=error.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=error.headers,
    )


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise WitnessMalformedRequest("Content-Length is not a number")
        if int(declared) > MAX_BODY_BYTES:
            raise WitnessBodyTooLarge(f"the body is over {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > MAX_BODY_BYTES:
            raise WitnessBodyTooLarge(f"the body is over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(witness: Witness) -> Starlette:
    """The HTTP app of `witness`."""

    async def add_checkpoint(request: Request) -> Response:
        try:
            body = await _read_body(request)
        except TimebankError as exc:
            witness.refused_early(exc)
            return problem_response(exc, request.url.path)
        try:
            outcome = await witness.add_checkpoint(body)
        except TimebankError as exc:
            return problem_response(exc, request.url.path)
        if isinstance(outcome, Cosigned):
            return PlainTextResponse(outcome.line, media_type=NOTE_MEDIA_TYPE)
        refusal = outcome.refusal
        if refusal.error is None:
            # Exactly the spec's type: a media_type would gain `; charset=utf-8`.
            size = f"{outcome.stored.size}\n"
            return Response(size, 409, headers={"content-type": SIZE_MEDIA_TYPE})
        return problem_response(refusal.error, request.url.path)

    async def checkpoint(request: Request) -> Response:
        hex_hash = request.path_params["origin_hash"]
        note = None
        if _ORIGIN_HASH.fullmatch(hex_hash):
            note = await witness.latest_note(hex_hash)
        if note is None:
            error = WitnessNoCheckpoint("this witness cosigned no checkpoint of that origin")
            return problem_response(error, request.url.path)
        return PlainTextResponse(note, media_type=NOTE_MEDIA_TYPE)

    async def healthz(request: Request) -> Response:
        try:
            await asyncio.to_thread(witness.store.check)
        except sqlite3.Error:
            return problem_response(WitnessUnavailable("the store cannot be read"), "/healthz")
        return JSONResponse({"status": "ok", "name": witness.config.name})

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(witness.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        error: TimebankError
        if status == 404:
            error = WitnessNotFound("no such path")
        elif status == 405:
            error = WitnessMethodNotAllowed(f"{request.method} is not allowed here")
            # Starlette's 405 names the allowed methods in `Allow`.
            error.headers = getattr(exc, "headers", None)
        else:
            error = WitnessInternal("unexpected failure")
        return problem_response(error, request.url.path)

    async def internal(request: Request, exc: Exception) -> Response:
        log.error("witness.internal", path=request.url.path, exc_info=exc)
        return problem_response(WitnessInternal("unexpected failure"), request.url.path)

    app = Starlette(
        routes=[
            Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/{origin_hash}/checkpoint", checkpoint, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: internal},
    )
    app.state.witness = witness
    return app


def create_app(directory: Path, clock: Callable[[], float] = time.time) -> Starlette:
    """The app of the witness in `directory` (its configuration, key and store); raises
    WitnessConfigError when they cannot be used."""
    files = WitnessDir(directory)
    config = load_config(files)
    key = load_key(files, config.name)
    witness = Witness(config, key, WitnessStore(files.db_path), WitnessMetrics(), clock)
    return build_app(witness)
