"""`timebank audit verify` reads an entry line written exactly as the service writes it with
orjson (app.audit.export_lines.service_line), and any other line strictly: whatever the fast reader
takes, strict JSON reads the same, so the verdicts cannot differ."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.audit import export_lines
from app.audit.export_lines import lines_before, service_line, split_export, strict_json
from tests.kit.test_canonical_json import json_values
from tests.kit.test_deep_json import texts

HASH = "ab" * 32
RECEIPT = "eyJhbGciOiJFZERTQSJ9.eyJzZXEiOjF9.c2ln-_"


def sorted_text(value: Any) -> str:
    """What the fast reader accepts: orjson's own sorted writing (or plain JSON if it has none)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except (TypeError, ValueError):
        return json.dumps(value)


def line(body: str, receipt: str | None) -> bytes:
    tail = f',"entry_hash":"{HASH}"' + ("" if receipt is None else f',"receipt":"{receipt}"')
    return f'{{"entry":{body}{tail}}}'.encode("utf-8", "surrogatepass")


def typed(value: Any) -> str:
    """A comparison that tells 1 from 1.0 and True from 1."""
    return json.dumps(value, sort_keys=False)


@settings(max_examples=1500)
@given(st.one_of(texts, json_values.map(sorted_text)), st.sampled_from([None, RECEIPT]))
@example('{"a":1,"a":1}', None)
@example('{"a":{"b":2,"b":2}}', RECEIPT)
@example('{"a":"\\ud800"}', None)
@example('{"a":1e400}', None)
@example('{"a":18446744073709551616}', None)
def test_what_the_fast_reader_takes_strict_json_reads_the_same(
    body: str, receipt: str | None
) -> None:
    raw = line(body, receipt)
    fast = service_line(raw)
    if fast is None:
        return
    entry, entry_hash, signed, token = fast
    strict = strict_json(raw)  # raises if the fast reader took what strict JSON refuses
    assert typed(strict["entry"]) == typed(entry)
    assert (strict["entry_hash"], "receipt" in strict, strict.get("receipt")) == (
        entry_hash,
        signed,
        token,
    )


@pytest.mark.parametrize(
    "raw",
    [
        b'{"entry":{"a":1,"a":1},"entry_hash":"' + HASH.encode() + b'"}',  # repeated member
        b'{"entry":{"b":1,"a":2},"entry_hash":"' + HASH.encode() + b'"}',  # not sorted
        b'{"entry": {"a":1},"entry_hash":"' + HASH.encode() + b'"}',  # whitespace
        b'{"entry":{"a":"\\u00e9"},"entry_hash":"' + HASH.encode() + b'"}',  # an escape JCS omits
        b'{"entry_hash":"' + HASH.encode() + b'","entry":{"a":1}}',  # members in another order
        b'{"entry":{"a":1},"entry_hash":"' + HASH.upper().encode() + b'"}',
        b'{"entry":{"a":1},"entry_hash":"' + HASH.encode() + b'","receipt":"a b"}',
        b'{"entry":{"a":1},"entry_hash":"' + HASH.encode() + b'"} ',
        b'{"entry":NaN,"entry_hash":"' + HASH.encode() + b'"}',
    ],
)
def test_any_other_line_goes_to_the_strict_reader(raw: bytes) -> None:
    assert service_line(raw) is None


def test_the_services_lines_are_read_fast_with_and_without_receipts() -> None:
    body = '{"a":[1,"é\\n\u2028",null,true],"b":{}}'
    assert service_line(line(body, None)) == (json.loads(body), HASH, False, None)
    assert service_line(line(body, RECEIPT)) == (json.loads(body), HASH, True, RECEIPT)


@pytest.mark.parametrize("block", [1, 3, 7, 64, 1 << 20])
def test_a_file_is_read_line_by_line_whatever_the_block(
    block: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_lines, "LINES_BLOCK", block)
    lines = [b'{"a":1}', b"", b"x" * 20, b"\xe9\xa1\xb5 \r", b"y", b'{"checkpoint":0}']
    for ending in (b"\n", b""):
        path = tmp_path / "export.jsonl"
        path.write_bytes(b"\n".join(lines) + ending)
        trailer, start = split_export(path)
        assert trailer == lines[-1]
        assert list(lines_before(path, start)) == lines[:-1]
