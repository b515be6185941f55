"""JSON at any depth: the explicit-stack parser reads what json.loads reads, and the
explicit-stack canonicaliser writes what rfc8785 writes, however deep."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from app.kit.canonical_json import canonical_bytes, jcs_bytes
from app.kit.deep_json import loads, parse
from tests.kit.test_canonical_json import json_values

# Deeper than json.loads, rfc8785.dumps and orjson can go at the default recursion limit, and
# about what 4 KiB of a meta can nest ("[" and "]" per level).
DEEP = 2500


@contextmanager
def recursion_limit(limit: int) -> Iterator[None]:
    """Only to compute the references (json, rfc8785) at depths they cannot reach otherwise."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate member")
    return out


def no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def outcome(read: Callable[[str], Any], text: str) -> tuple[str, Any]:
    """("ok", value) or ("error", the exception's type), NaN compared as its repr."""
    try:
        value = read(text)
    except ValueError as exc:
        return "error", type(exc)
    return "ok", repr(value)


texts = st.one_of(
    json_values.map(json.dumps),
    st.tuples(json_values, st.integers(0, 3), st.sampled_from([", ", ",", " ,\n"])).map(
        lambda v: json.dumps(v[0], indent=v[1] or None, separators=(v[2], ": "))
    ),
    # Broken or odd text: each byte of a valid document dropped or replaced, constants,
    # duplicate members, numbers of every shape, whitespace and a byte order mark.
    st.tuples(
        json_values.map(json.dumps),
        st.integers(0, 200),
        st.sampled_from(list('{}[]:,"\\ \x01e.-0')),
    ).map(lambda v: v[0][: v[1]] + v[2] + v[0][v[1] + 1 :]),
    st.tuples(json_values.map(json.dumps), st.integers(0, 200)).map(
        lambda v: v[0][: v[1]] + v[0][v[1] + 1 :]
    ),
    st.sampled_from(
        [
            "NaN",
            "-Infinity",
            "[Infinity]",
            '{"a":1,"a":2}',
            "1e400",
            "-0",
            "-0.0e-0",
            "01",
            "1.",
            ".5",
            "1e",
            "[1,]",
            '{"a":1,}',
            "[,1]",
            " \t\n\r[ 1 , 2 ] \n",
            "\ufeff[]",
            '"\\ud800"',
            '"\\u00e9\\n"',
            '"\x1f"',
            "tru",
            "nul",
            "[true false]",
            '{"a" 1}',
            "{1:2}",
            "[]]",
            "",
            "  ",
            '"abc',
            "[" * 50 + "]" * 49,
            "-",
            "-a",
            "2" * 5000,
        ]
    ),
)


@settings(max_examples=1500)
@given(texts)
def test_the_parser_reads_and_refuses_what_json_loads_does(text: str) -> None:
    assert outcome(parse, text) == outcome(json.loads, text)
    strict = {"object_pairs_hook": no_duplicates, "parse_constant": no_constant}
    assert outcome(lambda t: parse(t, **strict), text) == outcome(
        lambda t: json.loads(t, **strict), text
    )


def deep_text(depth: int) -> str:
    """Nested objects and arrays with scalars and whitespace at every level."""
    return '{"a": [' * depth + '1, "x", null, true, -2.5e3' + "]}" * depth


def test_loads_reads_what_json_loads_gives_up_on() -> None:
    text = deep_text(DEEP)
    with pytest.raises(RecursionError):
        json.loads(text)
    value = loads(text)
    from_bytes = loads(text.encode())  # decoded as json.loads decodes bytes
    with recursion_limit(20 * DEEP):  # == compares recursively
        assert value == json.loads(text) == from_bytes
    with pytest.raises(ValueError, match="duplicate"):
        loads('{"a": [' * DEEP + '{"b": 1, "b": 2}' + "]}" * DEEP, object_pairs_hook=no_duplicates)
    with pytest.raises(ValueError, match="not JSON"):
        loads("[" * DEEP + "NaN" + "]" * DEEP, parse_constant=no_constant)
    with pytest.raises(json.JSONDecodeError):
        loads("[" * DEEP + "]" * (DEEP - 1))
    deeper = "[" * 200_000 + "]" * 200_000
    assert parse(deeper) is not None  # memory, not the stack, bounds the depth


@settings(max_examples=500)
@given(json_values)
def test_jcs_bytes_equal_the_reference(value: Any) -> None:
    try:
        expected = rfc8785.dumps(value)
    except Exception:
        with pytest.raises(Exception):  # noqa: B017 - whatever the reference refuses
            jcs_bytes(value)
        return
    assert jcs_bytes(value) == expected


@settings(max_examples=100, deadline=None)
@given(json_values, st.integers(300, 1200))
def test_canonical_bytes_equal_the_reference_at_any_depth(value: Any, depth: int) -> None:
    deep: Any = value
    for level in range(depth):
        deep = {"k": [deep, level]} if level % 2 else [deep, "é"]
    try:
        with recursion_limit(10 * depth + 1000):
            expected = rfc8785.dumps(deep)
    except Exception:
        with pytest.raises(Exception):  # noqa: B017 - whatever the reference refuses
            canonical_bytes(deep)
        return
    assert canonical_bytes(deep) == expected


def test_the_vectors_of_rfc8785_at_depth() -> None:
    deep: Any = {"\U0001f600": 1, "\ue000": [0.1, 1e21, -0.0, 2**53 - 1], "a": "\u2028\x00"}
    for level in range(DEEP):
        deep = {"b": deep, "a": [level, "\u00e9"]} if level % 2 else [deep, {}, []]
    with recursion_limit(10 * DEEP):
        expected = rfc8785.dumps(deep)
    assert jcs_bytes(deep) == canonical_bytes(deep) == expected


def test_what_jcs_cannot_write_is_refused_at_any_depth() -> None:
    for leaf in (2**53, float("nan"), "\ud800", b"bytes", {1: 2}, {"\ud800": 1}):
        value: Any = leaf
        for _ in range(DEEP):
            value = [value]
        with pytest.raises(rfc8785.CanonicalizationError):
            canonical_bytes(value)
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(rfc8785.CanonicalizationError):
        jcs_bytes(loop)
    shared = [1]
    assert jcs_bytes([shared, shared]) == b"[[1],[1]]"  # the same list twice is no cycle


def test_jcs_bytes_match_the_rfc8785_vectors() -> None:
    vectors = Path(__file__).resolve().parents[1] / "vectors" / "jcs"
    names = sorted(p.stem for p in (vectors / "output").glob("*.json"))
    assert len(names) == 6
    for name in names:
        source = (vectors / "input" / f"{name}.json").read_text("utf-8")
        expected = (vectors / "output" / f"{name}.json").read_bytes()
        assert jcs_bytes(parse(source)) == canonical_bytes(loads(source)) == expected, name
