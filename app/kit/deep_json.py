"""JSON parsing at any depth: the standard parser, and an explicit-stack one where it gives up.

`json.loads` recurses once per level of nesting and raises RecursionError at about 1,000
levels less the caller's stack (its C scanner counts its depth against the interpreter's
limit, so it fails cleanly). Entries the service accepted in the past may nest deeper (about
2,000 levels fit the 4 KiB of a caller's meta), and a journal is immutable: everything that
reads entries or what verifiers are handed must read those too. `loads` keeps the C parser
for everything it can parse and hands only what is too deep to `parse`, which accepts and
refuses exactly what `json.loads` does (tests/kit/test_deep_json.py) with no recursion.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from json import decoder as _decoder
from json.decoder import JSONDecodeError
from typing import Any

PairsHook = Callable[[list[tuple[str, Any]]], Any]
ConstantHook = Callable[[str], Any]

# The standard library's string reader (its C version): the same escapes and errors.
_scanstring: Callable[[str, int, bool], tuple[str, int]] = _decoder.scanstring  # type: ignore[attr-defined]
_WS = re.compile(r"[ \t\n\r]*")
# json.scanner.NUMBER_RE: integer part, fraction, exponent.
_NUMBER = re.compile(r"(-?(?:0|[1-9]\d*))(\.\d+)?([eE][-+]?\d+)?")
_CONSTANTS = (("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"))
_LITERALS = {"null": None, "true": True, "false": False}


def loads(
    data: str | bytes,
    *,
    object_pairs_hook: PairsHook | None = None,
    parse_constant: ConstantHook | None = None,
) -> Any:
    """`json.loads(data, ...)` for JSON of any depth."""
    try:
        return json.loads(data, object_pairs_hook=object_pairs_hook, parse_constant=parse_constant)
    except RecursionError:
        pass
    if isinstance(data, bytes):  # as json.loads decodes bytes
        data = data.decode(json.detect_encoding(data), "surrogatepass")
    return parse(data, object_pairs_hook=object_pairs_hook, parse_constant=parse_constant)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate member")
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_loads(data: str | bytes) -> Any:
    """JSON (UTF-8 when bytes) of any depth, with no duplicate member and no NaN or Infinity;
    ValueError otherwise (UnicodeDecodeError and JSONDecodeError are ValueErrors too)."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    return loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)


class _Object:
    """An object being read: its members so far and the name of the one being read."""

    __slots__ = ("key", "pairs")

    def __init__(self, key: str) -> None:
        self.pairs: list[tuple[str, Any]] = []
        self.key = key


def parse(
    text: str,
    *,
    object_pairs_hook: PairsHook | None = None,
    parse_constant: ConstantHook | None = None,
) -> Any:
    """Parse JSON text as `json.loads` does (strict strings, the same numbers, constants and
    errors), with an explicit stack instead of recursion."""
    if text.startswith("\ufeff"):
        raise JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    constant: ConstantHook = parse_constant or float
    finish: PairsHook = object_pairs_hook or dict
    stack: list[list[Any] | _Object] = []
    end = len(text)
    idx = _ws(text, 0)

    def member_name(at: int) -> tuple[str, int]:
        if text[at : at + 1] != '"':
            raise JSONDecodeError("Expecting property name enclosed in double quotes", text, at)
        name, at = _scanstring(text, at + 1, True)
        at = _ws(text, at)
        if text[at : at + 1] != ":":
            raise JSONDecodeError("Expecting ':' delimiter", text, at)
        return name, _ws(text, at + 1)

    while True:
        # A value starts at idx (whitespace skipped).
        char = text[idx : idx + 1]
        value: Any
        if char == "{":
            idx = _ws(text, idx + 1)
            if text[idx : idx + 1] == "}":
                value, idx = finish([]), idx + 1
            else:
                name, idx = member_name(idx)
                stack.append(_Object(name))
                continue
        elif char == "[":
            idx = _ws(text, idx + 1)
            if text[idx : idx + 1] == "]":
                value, idx = [], idx + 1
            else:
                stack.append([])
                continue
        else:
            value, idx = _scalar(text, idx, constant)
        # A value ended at idx: add it to the containers it completes.
        while True:
            if not stack:
                idx = _ws(text, idx)
                if idx != end:
                    raise JSONDecodeError("Extra data", text, idx)
                return value
            top = stack[-1]
            idx = _ws(text, idx)
            char = text[idx : idx + 1]
            if isinstance(top, list):
                top.append(value)
                if char == ",":
                    idx = _ws(text, idx + 1)
                    break
                if char != "]":
                    raise JSONDecodeError("Expecting ',' delimiter", text, idx)
                value = stack.pop()
            else:
                top.pairs.append((top.key, value))
                if char == ",":
                    top.key, idx = member_name(_ws(text, idx + 1))
                    break
                if char != "}":
                    raise JSONDecodeError("Expecting ',' delimiter", text, idx)
                stack.pop()
                value = finish(top.pairs)
            idx += 1


def _ws(text: str, at: int) -> int:
    """Where the whitespace at `at` ends."""
    match = _WS.match(text, at)
    return at if match is None else match.end()


def _scalar(text: str, idx: int, constant: ConstantHook) -> tuple[Any, int]:
    """A string, number or literal at idx, as json.scanner reads it, and where it ends."""
    char = text[idx : idx + 1]
    if char == '"':
        return _scanstring(text, idx + 1, True)
    for word, value in _LITERALS.items():
        if text.startswith(word, idx):
            return value, idx + len(word)
    number = _NUMBER.match(text, idx)
    if number is not None:
        integer, fraction, exponent = number.groups()
        if fraction or exponent:
            return float(integer + (fraction or "") + (exponent or "")), number.end()
        return int(integer), number.end()
    for word, name in _CONSTANTS:
        if text.startswith(word, idx):
            return constant(name), idx + len(word)
    raise JSONDecodeError("Expecting value", text, idx)
