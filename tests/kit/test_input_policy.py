"""The input policy's JSON check on its own (the HTTP corpus is tests/test_input_policy.py)."""

from __future__ import annotations

import json

from app.kit.input_policy import (
    MAX_JSON_DEPTH,
    Violation,
    check_json_body,
    check_path,
    check_query_string,
)


def codes(raw: bytes) -> list[tuple[str, str]]:
    return [(v.field, v.code) for v in check_json_body(raw)]


def test_text_that_only_looks_like_an_escape_is_taken() -> None:
    # An escaped backslash before "u0000", and a surrogate pair (one emoji), are fine.
    assert codes(b'{"a": "\\\\u0000", "b": "\\ud83d\\ude00"}') == []


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    assert codes(json.dumps({"a": "[" * 100 + "{" * 100}).encode()) == []


def test_depth_is_counted_from_the_top_level_value() -> None:
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert codes(at_limit.encode()) == []
    past = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    assert codes(past.encode()) == [("/".join(["0"] * MAX_JSON_DEPTH), "json_too_deep")]


def test_every_violation_is_named_in_document_order() -> None:
    raw = b'{"a": 1, "a": 2, "b": [{"c": "x\\u0000"}, {"d": 1, "d": 1}], "e\\u0000": 0}'
    assert codes(raw) == [
        ("a", "duplicate_key"),
        ("b/0/c", "nul_character"),
        ("b/1/d", "duplicate_key"),
        ("e\\u0000", "nul_character"),
    ]


def test_bodies_in_utf16_are_checked_as_json_reads_them() -> None:
    assert codes('{"a": 1, "a": 2}'.encode("utf-16")) == [("a", "duplicate_key")]


def test_what_is_not_json_is_left_to_the_route() -> None:
    for raw in (b"", b"{", b"\xff\xfe\x00", b'{"a": 1,}', b"\xef\xbb\xbf{}"):
        assert check_json_body(raw) == []


def test_nul_in_the_url() -> None:
    assert check_query_string(b"a=1&b=%2500") == []  # a percent sign and two zeros
    assert check_query_string(b"a=%00&c%00=1") == [
        Violation("query/a", "text must not contain U+0000 (NUL)", "nul_character"),
        Violation("query/c\\u0000", "text must not contain U+0000 (NUL)", "nul_character"),
    ]
    assert check_path("/v1/books/x") == []
    assert [v.field for v in check_path("/v1/books/x\x00")] == ["path"]
