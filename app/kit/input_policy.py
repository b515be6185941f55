"""The input policy every request meets at the door, before routing (README "Input policy").

A JSON body may nest objects and arrays at most `MAX_JSON_DEPTH` deep (the top-level value
is depth 1), may not repeat a key within one object, and may not hold U+0000 or an unpaired
surrogate in any string or key: PostgreSQL's text cannot store either, and the canonical
JSON of the journal and the offline verifiers must never meet what the service could not
store or check. The query string and the path may not hold U+0000 once percent-decoded.

Most bodies are fine, so the check is shaped for them: one `json.loads` whose object hook
only compares the number of keys with the number of pairs, and two byte scans that rule out
deep nesting and escaped NUL or surrogates without walking the document. Only a body that
fails one of those is walked again, to name each offending place.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl

MAX_JSON_DEPTH: Final = 32
NUL: Final = "nul_character"
DUPLICATE: Final = "duplicate_key"
# Most problems named in one answer: a hostile body could hold thousands.
MAX_REPORTED: Final = 20
# The escapes JSON can spell U+0000 and a surrogate with (a raw NUL byte is not valid JSON).
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


@dataclass(frozen=True, slots=True)
class Violation:
    """One breach of the policy: where (a `/`-separated path), why, and a stable code."""

    field: str
    message: str
    code: str


class _Duplicate(Exception):
    pass


class _Object(list[tuple[str, Any]]):
    """An object's members in order, duplicates kept, so that they can be reported."""


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Duplicate
    return obj


# One decoder for every body: `json.loads` with a hook builds a new one on each call.
_STRICT = json.JSONDecoder(object_pairs_hook=_strict_object)
_KEEPING_PAIRS = json.JSONDecoder(object_pairs_hook=_Object)


def _text(raw: bytes) -> str:
    # As json.loads reads bytes (UTF-8, -16 or -32); UnicodeDecodeError is a ValueError.
    return raw.decode(json.detect_encoding(raw), "surrogatepass")


def check_json_body(raw: bytes) -> list[Violation]:
    """The policy's violations in a JSON body; none for a body that is fine or not JSON at all
    (the route's own parsing answers `malformed-json` for the latter)."""
    try:
        _STRICT.decode(_text(raw))
    except _Duplicate:
        return _locate(raw)
    except RecursionError:
        return [_too_deep("")]
    except ValueError:  # not JSON, or not UTF-8/16/32: left to the route
        return []
    # Fewer brackets than the limit cannot nest deeper than it (brackets in strings only
    # add to the count), and without the escapes no string holds NUL or a surrogate.
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH or _SUSPECT_ESCAPE.search(raw):
        return _locate(raw)
    return []


def _too_deep(path: str) -> Violation:
    return Violation(path, f"JSON may nest at most {MAX_JSON_DEPTH} levels deep", "json_too_deep")


def _bad_text(value: str) -> str | None:
    """Why a string cannot be taken, or None."""
    if "\x00" in value:
        return NUL
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "unpaired_surrogate"
    return None


_TEXT_MESSAGES: Final = {
    "nul_character": "text must not contain U+0000 (NUL)",
    "unpaired_surrogate": "text must not contain an unpaired UTF-16 surrogate",
}


def _join(path: str, step: str | int) -> str:
    # A key may itself hold what the answer cannot carry: NUL and surrogates are spelt out.
    step = str(step).encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")
    return step if not path else f"{path}/{step}"


def _locate(raw: bytes) -> list[Violation]:
    """Every violation with its path (the slow walk, for bodies the fast check refused)."""
    try:
        document = _KEEPING_PAIRS.decode(_text(raw))
    except RecursionError:
        return [_too_deep("")]
    except ValueError:
        return []
    found: list[Violation] = []
    # Depth-first without recursion, in document order: (value, its depth, its path); a key's
    # own violation waits on the stack just before its value.
    stack: list[tuple[Any, int, str]] = [(document, 1, "")]
    while stack and len(found) < MAX_REPORTED:
        value, depth, path = stack.pop()
        if isinstance(value, Violation):
            found.append(value)
            continue
        if isinstance(value, str):
            why = _bad_text(value)
            if why is not None:
                found.append(Violation(path, _TEXT_MESSAGES[why], why))
            continue
        if not isinstance(value, list):  # numbers, booleans, null
            continue
        if depth > MAX_JSON_DEPTH:
            found.append(_too_deep(path))
            continue
        children: list[tuple[Any, int, str]] = []
        if isinstance(value, _Object):
            seen: set[str] = set()
            for key, member in value:
                at = _join(path, key)
                why = _bad_text(key)
                if why is not None:
                    children.append((Violation(at, f"a key: {_TEXT_MESSAGES[why]}", why), 0, at))
                elif key in seen:
                    duplicate = Violation(at, "a key may appear once in an object", DUPLICATE)
                    children.append((duplicate, 0, at))
                seen.add(key)
                children.append((member, depth + 1, at))
        else:
            children = [(item, depth + 1, _join(path, i)) for i, item in enumerate(value)]
        stack.extend(reversed(children))
    return found[:MAX_REPORTED]


def check_query_string(query_string: bytes) -> list[Violation]:
    """NUL in a query parameter's name or value, once percent-decoded."""
    if b"\x00" not in query_string and b"%00" not in query_string:
        return []
    found = []
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            label = name.replace("\x00", "\\u0000")
            found.append(Violation(f"query/{label}", _TEXT_MESSAGES[NUL], NUL))
    return found[:MAX_REPORTED]


def check_csv_body(raw: bytes) -> list[Violation]:
    """NUL in an uploaded CSV file (its other rules are the importer's)."""
    if b"\x00" not in raw:
        return []
    return [Violation("body", "U+0000 (NUL) in the file", NUL)]


def check_path(path: str) -> list[Violation]:
    """NUL in the (already percent-decoded) path; routing has not named its parameters yet."""
    if "\x00" not in path:
        return []
    return [Violation("path", _TEXT_MESSAGES[NUL], NUL)]
