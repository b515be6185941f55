"""The fast path of canonical JSON writes exactly what the RFC 8785 reference writes."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from app.kit.canonical_json import canonical_bytes

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=500)
@given(json_values)
def test_canonical_bytes_equal_the_reference(value: Any) -> None:
    try:
        expected = rfc8785.dumps(value)
    except Exception:
        with pytest.raises(Exception):  # noqa: B017 - whatever the reference refuses
            canonical_bytes(value)
        return
    assert canonical_bytes(value) == expected


def test_known_vectors() -> None:
    assert canonical_bytes({"b": 1, "a": "é\n\u2028"}) == '{"a":"é\\n\u2028","b":1}'.encode()
    assert canonical_bytes({"\U0001f600": 1, "\ue000": 2}) == rfc8785.dumps(
        {"\U0001f600": 1, "\ue000": 2}
    )
    assert canonical_bytes([1.0, 1e21]) == b"[1,1e+21]"
    # Every escape JCS defines, and the characters it writes as they are.
    every = "".join(map(chr, range(0x80))) + "\u007f\u0080\u2028\u2029\ufeff\U0001f600"
    assert canonical_bytes({"s": every, "k": [2**53 - 1, -(2**53) + 1]}) == rfc8785.dumps(
        {"s": every, "k": [2**53 - 1, -(2**53) + 1]}
    )
    with pytest.raises(Exception):  # noqa: B017 - beyond I-JSON's integers
        canonical_bytes({"n": 2**53})
    with pytest.raises(Exception):  # noqa: B017 - a lone surrogate is not Unicode text
        canonical_bytes({"s": "\ud800"})


@settings(max_examples=300)
@given(meta=st.dictionaries(st.text(max_size=6), json_values, max_size=4), memo=st.text())
def test_entry_bytes_equal_the_reference(meta: dict[str, Any], memo: str) -> None:
    from app.ledger.journal import Leg, entry_bytes, entry_object

    entry = entry_object(
        book="xh",
        seq=7,
        tx_id="2f4b4c1e-0000-4000-8000-000000000001",
        kind="transfer",
        posted_at="2026-11-26T20:30:00.000000Z",
        legs=[Leg("a" * 8, "HOUR", -5), Leg("b" * 8, "HOUR", 5)],
        memo=memo,
        meta=meta,
        prev_hash="0" * 64,
    )
    try:
        expected = rfc8785.dumps(entry)
    except Exception:
        with pytest.raises(Exception):  # noqa: B017 - whatever the reference refuses
            entry_bytes(entry)
        return
    assert entry_bytes(entry) == expected


def test_posting_payload_is_the_posting_body() -> None:
    import json

    from app.ledger.answers import posting_body, posting_payload
    from app.ledger.journal import Leg, entry_bytes, entry_object

    entry = entry_object(
        book="xh",
        seq=1,
        tx_id="2f4b4c1e-0000-4000-8000-000000000001",
        kind="hold",
        posted_at="2026-11-26T20:30:00.000000Z",
        legs=[Leg("a", "HOUR", -5), Leg("b", "HOUR", 5)],
        memo='助老 "x"',
        meta={"n": [1, {"k": None}]},
        prev_hash="0" * 64,
    )
    balances = [{"account_id": "a", "asset": "HOUR", "posted": 0}]
    payload = posting_payload(entry, entry_bytes(entry), "f" * 64, balances)
    assert json.loads(payload) == posting_body(entry, "f" * 64, balances)
    assert list(json.loads(payload)) == list(posting_body(entry, "f" * 64, balances))
