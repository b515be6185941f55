"""An export's lines as a verifier reads them (docs/audit-format.md §8.5): from its file, and
each entry line as strict JSON, or faster when it is written exactly as the service writes it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from app.kit import deep_json

LINE_MEMBERS = frozenset(("entry", "entry_hash", "receipt"))
BARE_LINE_MEMBERS = frozenset(("entry", "entry_hash"))  # exported with receipts=false
# An entry line exactly as the service writes it (§8.5, informative): what follows the entry
# is fixed text and strings that need no escape.
SERVICE_HEAD = b'{"entry":'
SERVICE_TAIL = b',"entry_hash":"'
SERVICE_TAIL_RE = re.compile(rb',"entry_hash":"([0-9a-f]{64})"(?:,"receipt":"([A-Za-z0-9_.-]*)")?}')

READ_BLOCK = 64 * 1024
LINES_BLOCK = 1024 * 1024

# (entry, entry_hash, whether the line has a receipt, the receipt), as read, unchecked.
Line = tuple[Any, Any, bool, Any]


class LineError(Exception):
    """The line is not JSON, or not an entry line's members."""


# The export's lines and the verifiers' documents are read as strict JSON.
strict_json = deep_json.strict_loads


def read_line(raw: bytes) -> Line:
    """An entry line's members (LineError if it has other members or is not strict JSON)."""
    fast = service_line(raw)
    if fast is not None:
        return fast
    try:
        line = strict_json(raw)
    except ValueError as exc:
        raise LineError(f"the line is not JSON: {exc}") from None
    if not isinstance(line, dict) or set(line) not in (LINE_MEMBERS, BARE_LINE_MEMBERS):
        raise LineError("the line must have exactly entry, entry_hash and, or not, receipt")
    return line["entry"], line["entry_hash"], "receipt" in line, line.get("receipt")


def service_line(raw: bytes) -> Line | None:
    """An entry line written exactly as the service writes it, read with orjson; None for any
    other line. What it reads, strict JSON reads the same (tests/audit/test_export_lines.py)."""
    if not raw.startswith(SERVICE_HEAD):
        return None
    at = raw.rfind(SERVICE_TAIL)
    tail = SERVICE_TAIL_RE.fullmatch(raw, at) if at > 0 else None
    if tail is None:
        return None
    body = raw[len(SERVICE_HEAD) : at]
    try:
        entry = orjson.loads(body)
        # orjson keeps the last of repeated members where strict JSON refuses them: bytes that
        # are their own sorted rewriting repeat none (and orjson refuses NaN and lone surrogates).
        if orjson.dumps(entry, option=orjson.OPT_SORT_KEYS) != body:
            return None
    except (ValueError, TypeError):
        return None
    entry_hash, receipt = tail.groups()
    if receipt is None:
        return entry, entry_hash.decode(), False, None
    return entry, entry_hash.decode(), True, receipt.decode()


def split_export(path: Path) -> tuple[bytes, int]:
    """The last line of the file (the checkpoint line) and where it starts."""
    with path.open("rb") as file:
        end = stop = file.seek(0, 2)
        if end:
            file.seek(end - 1)
            if file.read(1) == b"\n":
                stop = end - 1
        start = stop
        while start > 0:
            block = max(0, start - READ_BLOCK)
            file.seek(block)
            chunk = file.read(start - block)
            found = chunk.rfind(b"\n")
            if found >= 0:
                start = block + found + 1
                break
            start = block
        file.seek(start)
        return file.read(stop - start), start


def lines_before(path: Path, until: int) -> Iterator[bytes]:
    """The lines of the file before offset `until`, without their newlines."""
    with path.open("rb") as file:
        left, pending = until, bytearray()  # the start of a line the next block ends
        while left > 0:
            block = file.read(min(LINES_BLOCK, left))
            if not block:
                break
            left -= len(block)
            lines = block.split(b"\n")
            pending += lines[0]
            if len(lines) == 1:
                continue
            lines[0] = bytes(pending)
            pending = bytearray(lines.pop())
            yield from lines
        if pending:
            yield bytes(pending)
