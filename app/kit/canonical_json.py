"""RFC 8785 (JCS) canonical JSON, the one serialisation that is hashed and signed."""

from __future__ import annotations

from typing import Any

import orjson
import rfc8785

# orjson writes compact UTF-8 with JCS's string escapes; with sorted keys its bytes are the JCS
# bytes for every plain value (tests/kit/test_canonical_json.py compares it with rfc8785).
_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER


def _encode(value: Any) -> bytes:
    return orjson.dumps(value, option=_SORTED)


def _plain(value: Any) -> bool:
    """True when orjson writes exactly the JCS bytes for `value`.

    They agree on strings (same escapes, UTF-8 output), safe integers, booleans and null, and
    on key order when every key is ASCII; floats (number formatting) and non-ASCII keys (JCS
    sorts by UTF-16 code units) go to the reference implementation. (Loops, not all() over
    generators: every request body passes here.)
    """
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**53) < value < 2**53
    if isinstance(value, dict):
        for key, item in value.items():  # noqa: SIM110 - a loop: no generator per call
            if not (key.isascii() and _plain(item)):
                return False
        return True
    if isinstance(value, list):
        for item in value:  # noqa: SIM110
            if not _plain(item):
                return False
        return True
    return False


def canonical_object_bytes(value: dict[str, Any], checked: dict[str, Any]) -> bytes:
    """JCS bytes of an object whose members other than `checked` are known to be plain
    (ASCII keys, strings, safe integers): only `checked` needs the walk."""
    if _plain(checked):
        try:
            return _encode(value)
        except orjson.JSONEncodeError:  # lone surrogates: let the reference refuse them
            pass
    return bytes(rfc8785.dumps(value))


def canonical_bytes(value: Any) -> bytes:
    """The RFC 8785 bytes of a JSON value."""
    if _plain(value):
        try:
            return _encode(value)
        except orjson.JSONEncodeError:  # lone surrogates: let the reference refuse them
            pass
    return bytes(rfc8785.dumps(value))
