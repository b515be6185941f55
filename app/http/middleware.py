"""ASGI middleware: request ids, body limits, media types, request logs and metrics in one
pass."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics
from app.http.caller import CREDENTIAL_STATE
from app.http.responses import json_response
from app.kit import input_policy
from app.kit.outages import describe
from app.kit.problems import (
    PROBLEM_BASE,
    PROBLEM_MEDIA_TYPE,
    BodyTooLarge,
    InternalError,
    MalformedJson,
    TimebankError,
    UnsupportedMediaType,
    ValidationFailed,
)

log = structlog.get_logger("timebank.http")
BODY_METHODS = {"POST", "PUT", "PATCH"}
REQUEST_ID_HEADER = "X-Request-Id"
# A caller's own request id is kept when it is short and plain (it goes into every log line).
_CALLERS_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower()
_PROBLEM_MEDIA = PROBLEM_MEDIA_TYPE.encode()
_LONGEST_PROBLEM = 64 * 1024


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


def request_id(headers: dict[str, str]) -> str:
    """The request's id: the caller's `X-Request-Id` if it is 1-64 of `[A-Za-z0-9._:-]`, else a
    new one."""
    sent = headers.get(_REQUEST_ID_KEY)
    if sent is not None and _CALLERS_REQUEST_ID.fullmatch(sent):
        return sent
    return uuid.uuid4().hex


def _problem_slug(body: bytes) -> str | None:
    try:
        kind = json.loads(body).get("type")
    except (ValueError, AttributeError):
        return None
    if isinstance(kind, str) and kind.startswith(PROBLEM_BASE):
        return kind[len(PROBLEM_BASE) :]
    return None


class _Answer:
    """What the request was answered, seen on its way out: status, problem type, and the
    request id added to the response's headers."""

    __slots__ = ("_watch", "id", "problem", "send", "started", "status")

    def __init__(self, rid: str, send: Send) -> None:
        self.id = rid
        self.send = send
        self.status = 500
        self.started = False
        self.problem: str | None = None
        self._watch = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.started = True
            headers = list(message.get("headers", ()))
            self._watch = self.status >= 400 and any(
                k.lower() == b"content-type" and v.startswith(_PROBLEM_MEDIA) for k, v in headers
            )
            headers.append((_REQUEST_ID_KEY.encode(), self.id.encode()))
            message = {**message, "headers": headers}
        elif message["type"] == "http.response.body" and self._watch:
            # A problem document is one small body: its type names the refusal in the log.
            self._watch = False
            body = message.get("body", b"")
            if not message.get("more_body", False) and len(body) <= _LONGEST_PROBLEM:
                self.problem = _problem_slug(body)
        await self.send(message)


def _internal(_exc: Exception) -> TimebankError:
    return InternalError("an unexpected error occurred; it has been logged")


def _listed(violations: list[input_policy.Violation]) -> list[dict[str, str]]:
    return [{"field": v.field, "message": v.message, "code": v.code} for v in violations]


class EdgeMiddleware:
    """Refuses oversized or non-JSON bodies and input against the input policy before routing
    (app/kit/input_policy.py); answers what the routes raise and nothing else handled
    (`on_error` chooses the problem); logs and measures every request."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        csv_uploads: dict[str, int] | None = None,
        on_error: Callable[[Exception], TimebankError] = _internal,
    ) -> None:
        self.app = app
        self.max_body = max_body_bytes
        # Paths that take a CSV file instead of JSON, each with its own size limit.
        self.csv_uploads = csv_uploads or {}
        self.on_error = on_error
        # Route templates, not raw paths: as many entries as routes × methods × statuses.
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        answer = _Answer(request_id(headers), send)
        scope.setdefault("state", {})
        # Every line logged while serving the request carries its id; unbound afterwards (a
        # task may serve several requests, as in-process clients do).
        bound = structlog.contextvars.bind_contextvars(request_id=answer.id, credential_id=None)
        try:
            await self._serve(scope, receive, answer, headers, started)
        finally:
            structlog.contextvars.reset_contextvars(**bound)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        answer: _Answer,
        headers: dict[str, str],
        started: float,
    ) -> None:
        csv_limit = self.csv_uploads.get(scope["path"])
        limit = self.max_body if csv_limit is None else csv_limit
        refusal = self._refuse(scope["method"], headers, limit, csv_limit is not None)
        if refusal is None:
            refusal = self._refuse_url(scope)
        if refusal is not None:
            await self._answer(refusal, scope, receive, answer)
            self._observe(scope, answer, started)
            return

        app_receive = receive
        if scope["method"] in BODY_METHODS:
            # The whole body is read before the app runs, to check it; the app then receives
            # the same bytes in one message.
            try:
                body = await self._read_body(receive, limit)
            except _TooLarge:
                refusal = BodyTooLarge(f"the body exceeds {limit} bytes")
            except _Disconnected:
                answer.status = 499  # the client left; nobody to answer
                self._observe(scope, answer, started)
                return
            else:
                refusal = self._refuse_body(body, csv_limit is not None)
            if refusal is not None:
                await self._answer(refusal, scope, receive, answer)
                self._observe(scope, answer, started)
                return
            app_receive = self._replay(body, receive)

        failure: Exception | None = None
        try:
            await self.app(scope, app_receive, answer)
        except Exception as exc:
            if answer.started:
                # Cut short mid-answer (a stream): only closing the connection tells the client.
                # uvicorn does that, and logs the traceback (one JSON line, see app/logging.py).
                self._observe(scope, answer, started, failure=exc, cut_short=True)
                raise
            # Answered here rather than by Starlette's ServerErrorMiddleware, which re-raises
            # after answering: uvicorn would then log a second traceback and close the
            # connection, resetting the client's next request on it.
            failure = exc
            error = self.on_error(exc)
            response = json_response(error.status, error.problem(scope["path"]), error.headers)
            await response(scope, receive, answer)
        self._observe(scope, answer, started, failure=failure)

    def _refuse(
        self, method: str, headers: dict[str, str], limit: int, csv: bool
    ) -> TimebankError | None:
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return BodyTooLarge(f"the body exceeds {limit} bytes")
        has_body = (length not in (None, "0")) or "transfer-encoding" in headers
        if method in BODY_METHODS and has_body:
            media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if csv and media != "text/csv":
                return UnsupportedMediaType("send the file as text/csv")
            if not csv and media != "application/json" and not media.endswith("+json"):
                return UnsupportedMediaType("send the body as application/json")
        return None

    @staticmethod
    async def _answer(error: TimebankError, scope: Scope, receive: Receive, send: Send) -> None:
        # Refusals of the request's size or media type carry no `instance` (docs/errors.md).
        instance = scope["path"] if isinstance(error, MalformedJson | ValidationFailed) else None
        await json_response(error.status, error.problem(instance), error.headers)(
            scope, receive, send
        )

    @staticmethod
    async def _read_body(receive: Receive, limit: int) -> bytes:
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    @staticmethod
    def _replay(body: bytes, receive: Receive) -> Receive:
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:  # later calls wait for the disconnect, as the server's receive does
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay

    @staticmethod
    def _refuse_body(body: bytes, csv: bool) -> TimebankError | None:
        if not body:
            return None
        if csv:
            found = input_policy.check_csv_body(body)
            if found:
                return ValidationFailed("the file holds a NUL character", errors=_listed(found))
            return None
        violations = input_policy.check_json_body(body)
        if not violations:
            return None
        return MalformedJson(
            "the body breaks the input policy (nesting depth, duplicate keys or text)",
            errors=_listed(violations),
        )

    @staticmethod
    def _refuse_url(scope: Scope) -> TimebankError | None:
        violations = input_policy.check_path(scope["path"]) + input_policy.check_query_string(
            scope.get("query_string", b"")
        )
        if not violations:
            return None
        return ValidationFailed("the URL holds a NUL character", errors=_listed(violations))

    def _observe(
        self,
        scope: Scope,
        answer: _Answer,
        started: float,
        failure: Exception | None = None,
        cut_short: bool = False,
    ) -> None:
        elapsed = time.perf_counter() - started
        status = answer.status
        route: Any = scope.get("route")
        path = getattr(route, "path", "unmatched")
        series = self._series.get((scope["method"], path, status))
        if series is None:  # a labels() lookup takes a lock: once per route and status
            series = self._series[(scope["method"], path, status)] = (
                metrics.REQUESTS.labels(scope["method"], path, str(status)),
                metrics.LATENCY.labels(scope["method"], path),
            )
        series[0].inc()
        series[1].observe(elapsed)
        fields: dict[str, Any] = {}
        if answer.problem is not None:
            fields["problem"] = answer.problem
        if cut_short and failure is not None:  # uvicorn logs its traceback
            fields["error"] = f"the answer was cut short: {type(failure).__name__}"
        elif failure is not None and status == 500:  # a bug: its traceback, in this one line
            fields["exc_info"] = failure
        elif failure is not None:  # an outage: what failed is enough, it may fail many times
            fields["error"] = describe(failure)
        emit = (
            log.error if status == 500 or cut_short else log.warning if status >= 500 else log.info
        )
        # The route's template, never the path or query: they may name a member or carry
        # personal data.
        emit(
            "http.request",
            method=scope["method"],
            route=path,
            status=status,
            duration_ms=round(elapsed * 1000, 2),
            credential_id=scope["state"].get(CREDENTIAL_STATE),
            request_id=answer.id,
            **fields,
        )
