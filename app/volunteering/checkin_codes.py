"""Short-lived check-in codes an organisation displays at the site (pure: no I/O).

`v1.<project id, 32 hex>.<expiry, Unix seconds>.<MAC>`, the MAC being the first 16 bytes of
HMAC-SHA256 under the project's own random key over the text before it, base64url. The
organisation's screen asks for a new code before the last expires, so the code rotates; a code
proves that whoever sends it saw the screen within its lifetime, and only for that project.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from app.volunteering import errors

VERSION = "v1"
MAC_BYTES = 16
# A code may name an expiry this far beyond its lifetime (clocks of several servers differ).
CLOCK_SKEW_S = 30


@dataclass(frozen=True, slots=True)
class Code:
    project_id: uuid.UUID
    expires: int
    mac: bytes


def _mac(key: bytes, project_id: uuid.UUID, expires: int) -> bytes:
    message = f"{VERSION}.{project_id.hex}.{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).digest()[:MAC_BYTES]


def make_code(project_id: uuid.UUID, key: bytes, now: datetime, ttl_s: int) -> tuple[str, datetime]:
    """A new code for the project, valid for `ttl_s` seconds; and when it expires."""
    expires = int(now.timestamp()) + ttl_s
    mac = base64.urlsafe_b64encode(_mac(key, project_id, expires)).rstrip(b"=").decode()
    return f"{VERSION}.{project_id.hex}.{expires}.{mac}", datetime.fromtimestamp(expires, UTC)


def parse_code(code: str) -> Code:
    """The parts of a code; 422 `invalid-checkin-code` if it is not one."""
    parts = code.strip().split(".")
    try:
        if len(parts) != 4 or parts[0] != VERSION or not parts[2].isdigit():
            raise ValueError
        mac = base64.urlsafe_b64decode(parts[3] + "=" * (-len(parts[3]) % 4))
        if len(mac) != MAC_BYTES:
            raise ValueError
        return Code(uuid.UUID(hex=parts[1]), int(parts[2]), mac)
    except (ValueError, binascii.Error):
        raise errors.InvalidCheckinCode("this is not a check-in code") from None


def check_code(code: str, project_id: uuid.UUID, key: bytes, now: datetime, ttl_s: int) -> None:
    """Accept a code shown for this project within its lifetime, else raise the rule it breaks."""
    parsed = parse_code(code)
    if parsed.project_id != project_id:
        raise errors.CheckinCodeOtherProject(
            "this code was shown for another project; scan the code at this project's site"
        )
    if not hmac.compare_digest(parsed.mac, _mac(key, project_id, parsed.expires)):
        raise errors.InvalidCheckinCode("this check-in code was not issued for this project")
    instant = int(now.timestamp())
    if parsed.expires <= instant:
        raise errors.CheckinCodeExpired("this check-in code has expired; scan the current one")
    if parsed.expires > instant + ttl_s + CLOCK_SKEW_S:
        raise errors.InvalidCheckinCode("this check-in code expires too late to be genuine")
