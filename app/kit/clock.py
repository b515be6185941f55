"""Time in the one format the journal uses: UTC, RFC 3339, microseconds, `Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def rfc3339_micro(moment: datetime) -> str:
    """`2026-11-26T20:30:00.000000Z` for an aware datetime."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
