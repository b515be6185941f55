"""The settings the service-record rules read, resolved once per process."""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo

from app.config import Settings
from app.volunteering.records import Rules


@lru_cache(maxsize=8)
def _rules(timezone: str, daily_cap_minutes: int, code_ttl_s: int) -> Rules:
    return Rules(ZoneInfo(timezone), daily_cap_minutes, code_ttl_s)


def rules_of(settings: Settings) -> Rules:
    """The time zone of service days, the daily cap and the check-in code lifetime."""
    return _rules(
        settings.service_timezone, settings.service_daily_cap_minutes, settings.checkin_code_ttl_s
    )
