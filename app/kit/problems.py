"""Problem details (RFC 9457): the one shape of every error the service returns."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from app.kit.canonical_json import JsonObject

PROBLEM_BASE = "urn:timebank:problem:"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class TimebankError(Exception):
    """A refusal with a stable problem type; subclasses name one domain rule each."""

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
        self.headers = headers

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.slug

    def problem(self, instance: str | None = None) -> JsonObject:
        """The problem document for this error."""
        # Extension members never replace the standard ones.
        body: dict[str, Any] = {
            **self.extra,
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        return body


class ValidationFailed(TimebankError):
    status, slug, title = 422, "validation", "The request is not valid"


class MalformedJson(TimebankError):
    status, slug, title = 400, "malformed-json", "Malformed JSON"


class NotFound(TimebankError):
    status, slug, title = 404, "not-found", "Not found"


class Unauthorized(TimebankError):
    status, slug, title = 401, "unauthorized", "Authentication required"


class Forbidden(TimebankError):
    status, slug, title = 403, "forbidden", "Not allowed"


class CsrfRefused(Forbidden):
    slug, title = "csrf-token-invalid", "The console session's CSRF token is missing or wrong"


class Conflict(TimebankError):
    status, slug, title = 409, "conflict", "Conflict"


class RateLimited(TimebankError):
    status, slug, title = 429, "rate-limited", "Too many requests"


class MissingIdempotencyKey(TimebankError):
    status, slug, title = 400, "idempotency-key-missing", "Idempotency-Key header required"


class IdempotencyKeyReused(TimebankError):
    status, slug, title = 422, "idempotency-key-reused", "Idempotency-Key used for another request"


class IdempotencyInFlight(TimebankError):
    status, slug, title = 409, "idempotency-in-flight", "The first request with this key is running"


class UnsupportedMediaType(TimebankError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class BodyTooLarge(TimebankError):
    status, slug, title = 413, "body-too-large", "Request body too large"


class MethodNotAllowed(TimebankError):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"


# Seconds a client waits before retrying a 503 `unavailable`: PostgreSQL restarts in about one.
RETRY_AFTER_S = 1


class ServiceUnavailable(TimebankError):
    status, slug, title = 503, "unavailable", "Service unavailable"

    def __init__(self, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail, {"Retry-After": str(RETRY_AFTER_S), **(headers or {})}, **extra)


class InternalError(TimebankError):
    status, slug, title = 500, "internal", "Internal error"


class RecordedProblem(TimebankError):
    """A refusal answered before and stored under its Idempotency-Key, answered again as stored
    (its type is the stored one; this class adds none of its own)."""

    def __init__(self, status: int, document: dict[str, Any]) -> None:
        standard = ("type", "title", "status", "detail", "instance")
        extra = {k: v for k, v in document.items() if k not in standard}
        super().__init__(str(document.get("detail", "")), **extra)
        self.document = document
        # The stored status and type are this refusal's, whatever the class says.
        self.status = status  # type: ignore[misc]

    @property
    def type_uri(self) -> str:
        return str(self.document.get("type", PROBLEM_BASE + self.slug))

    def problem(self, instance: str | None = None) -> JsonObject:
        """The stored problem document (with this request's `instance`)."""
        body = {k: v for k, v in self.document.items() if k != "instance"}
        if instance:
            body["instance"] = instance
        return body


def is_problem(error: TimebankError, *kinds: type[TimebankError]) -> bool:
    """Whether `error` is of one of these problem types (a recorded one by its stored type)."""
    return any(
        isinstance(error, kind) or error.type_uri == PROBLEM_BASE + kind.slug for kind in kinds
    )


def causes(exc: BaseException, limit: int = 8) -> Iterator[BaseException]:
    """`exc` and what caused it, nearest first: SQLAlchemy's `.orig` (the driver's error),
    `__cause__`, or an unsuppressed `__context__`; at most `limit` errors."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo and len(seen) < limit:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException):
            todo.append(orig)
        if current.__cause__ is not None:
            todo.append(current.__cause__)
        elif current.__context__ is not None and not current.__suppress_context__:
            todo.append(current.__context__)
