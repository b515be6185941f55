"""RFC 8785 (JCS) canonical JSON, the one serialisation that is hashed and signed."""

from __future__ import annotations

from typing import Any

import rfc8785


def canonical_bytes(value: Any) -> bytes:
    """The RFC 8785 bytes of a JSON value."""
    return bytes(rfc8785.dumps(value))
