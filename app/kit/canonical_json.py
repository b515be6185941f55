"""JSON as bytes: RFC 8785 (JCS) canonical JSON, the one serialisation that is hashed and signed,
and compact JSON, as sent over HTTP."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeAlias

import orjson
import rfc8785

# orjson writes compact UTF-8 with JCS's string escapes; with sorted keys its bytes are the JCS
# bytes for every plain value (tests/kit/test_canonical_json.py compares it with rfc8785).
# A JSON object as parsed or about to be serialised: a journal entry, a problem document,
# the facts a notice records, an OpenAPI document. Domain results are typed models instead.
JsonObject: TypeAlias = dict[str, Any]

_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_LOW, _HIGH = -(2**53), 2**53


def _encode(value: Any) -> bytes:
    return orjson.dumps(value, option=_SORTED)


def _plain(value: Any) -> bool:
    """True when orjson writes exactly the JCS bytes for `value`.

    They agree on strings (same escapes, UTF-8 output), safe integers, booleans and null, and
    on key order when every key is ASCII; floats (number formatting) and non-ASCII keys (JCS
    sorts by UTF-16 code units) go to `jcs_bytes`. A walk with an explicit stack (journal
    entries of any depth pass here); scalars are checked where they are met, so a typical
    body pushes only its containers. (Every request body passes here.)
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key in item:
                if type(key) is not str or not key.isascii():
                    return False
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        elif _plain_scalar(item):
            continue
        else:
            return False
        for child in children:
            kind = type(child)  # the common scalars here; the rest when popped
            if kind is str or kind is bool or child is None:
                continue
            if kind is int:
                if not _LOW < child < _HIGH:
                    return False
            else:
                stack.append(child)
    return True


def _plain_scalar(value: Any) -> bool:
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return _LOW < value < _HIGH
    return False


class _Close:
    """Where a container ends in `jcs_bytes`: its closing bytes, and its id to forget."""

    __slots__ = ("ident", "text")

    def __init__(self, text: bytes, ident: int) -> None:
        self.text, self.ident = text, ident


class _Raw(bytes):
    """Bytes `jcs_bytes` writes as they are (a separator and member name)."""


def jcs_bytes(value: Any) -> bytes:
    """RFC 8785 bytes of any JSON value, at any depth: the structure (member order by UTF-16
    code units, separators) written with an explicit stack, every scalar and member name by
    the reference `rfc8785` (so its number and string rules, and its refusals, hold)."""
    out: list[bytes] = []
    stack: list[Any] = [value]
    open_ids: set[int] = set()  # containers being written: a cycle is refused, not looped
    while stack:
        item = stack.pop()
        if type(item) is _Raw:
            out.append(item)
        elif type(item) is _Close:
            out.append(item.text)
            open_ids.discard(item.ident)
        elif isinstance(item, (list, tuple)):
            if not item:
                out.append(b"[]")
                continue
            _enter(open_ids, item)
            out.append(b"[")
            stack.append(_Close(b"]", id(item)))
            for index in range(len(item) - 1, -1, -1):
                stack.append(item[index])
                if index:
                    stack.append(_Raw(b","))
        elif isinstance(item, dict):
            if not item:
                out.append(b"{}")
                continue
            _enter(open_ids, item)
            try:
                members = sorted(item.items(), key=lambda kv: kv[0].encode("utf-16be"))
            except AttributeError:
                raise rfc8785.CanonicalizationError("object keys must be strings") from None
            except UnicodeEncodeError as exc:
                raise rfc8785.CanonicalizationError("a key is not valid Unicode") from exc
            out.append(b"{")
            stack.append(_Close(b"}", id(item)))
            for index in range(len(members) - 1, -1, -1):
                key, child = members[index]
                stack.append(child)
                name = rfc8785.dumps(key) + b":"
                stack.append(_Raw(b"," + name if index else name))
        else:
            out.append(rfc8785.dumps(item))
    return b"".join(out)


def _enter(open_ids: set[int], container: Any) -> None:
    ident = id(container)
    if ident in open_ids:
        raise rfc8785.CanonicalizationError("a container contains itself")
    open_ids.add(ident)


def canonical_object_bytes(value: dict[str, Any], checked: dict[str, Any]) -> bytes:
    """JCS bytes of an object whose members other than `checked` are known to be plain
    (ASCII keys, strings, safe integers): only `checked` needs the walk."""
    if _plain(checked):
        try:
            return _encode(value)
        except orjson.JSONEncodeError:  # lone surrogates, or deeper than orjson writes
            pass
    return jcs_bytes(value)


def canonical_bytes(value: Any) -> bytes:
    """The RFC 8785 bytes of a JSON value."""
    if _plain(value):
        try:
            return _encode(value)
        except orjson.JSONEncodeError:  # lone surrogates, or deeper than orjson writes
            pass
    return jcs_bytes(value)


def compact_json(document: Any) -> bytes:
    """Compact UTF-8 JSON, as sent over HTTP."""
    return orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS)
