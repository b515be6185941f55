"""The offline verifier's ledger rules (app/audit/ledger_rules.py) on hand-made entries, and
its shape check on mutated ones."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.audit import ledger_rules
from app.audit.ledger_rules import LedgerRules, RuleError

A, B = str(uuid.uuid4()), str(uuid.uuid4())


def entry(seq: int, kind: str, amount: int, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "seq": seq,
        "tx_id": str(uuid.UUID(int=seq)),
        "kind": kind,
        "posted_at": f"2026-11-27T08:00:{seq:02d}.000000Z",
        "legs": [
            {"account_id": A, "asset": "HOUR", "amount": -amount},
            {"account_id": B, "asset": "HOUR", "amount": amount},
        ],
        "meta": meta or {},
    }


def reversal_of(seq: int, target: int) -> dict[str, Any]:
    return entry(seq, "reversal", -10, {"reverses": str(uuid.UUID(int=target))})


def test_an_ordinary_entry_is_reversed_once() -> None:
    rules = LedgerRules()
    rules.apply(entry(1, "transfer", 10))
    rules.apply(reversal_of(2, 1))
    with pytest.raises(RuleError, match="already reversed"):
        rules.apply(reversal_of(3, 1))


@pytest.mark.parametrize("kind", ["recognition.out", "recognition.in"])
def test_one_half_of_a_linked_pair_is_not_reversible(kind: str) -> None:
    rules = LedgerRules()
    rules.apply(entry(1, kind, 10))
    with pytest.raises(RuleError, match="not an earlier reversible entry") as refused:
        rules.apply(reversal_of(2, 1))
    assert refused.value.seq == 2


# --- the shape, as an export's verification checks it ---------------------------------------

VALID = {
    "book": "xh",
    "seq": 3,
    "tx_id": str(uuid.UUID(int=3)),
    "kind": "transfer",
    "posted_at": "2026-11-27T08:00:03.000000Z",
    "legs": [
        {"account_id": A, "asset": "HOUR", "amount": -5},
        {"account_id": B, "asset": "HOUR", "amount": 5},
    ],
    "memo": "",
    "meta": {},
    "prev_hash": "0" * 64,
}
ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**60), 2**60),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from(
        [
            "HOUR",
            "xh",
            "transfer",
            A,
            A.upper(),
            "0" * 64,
            "2026-02-30T08:00:00.000000Z",
            "２０２６-11-27T08:00:03.000000Z",
            "2026-11-27T08:00:03.000000Z",
            "a.b",
            "notice.x",
        ]
    ),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["account_id", "asset", "amount", "x"]), st.integers()),
)


def mutated(data: st.DataObject) -> Any:
    """A valid entry with up to three members or leg members replaced or removed."""
    entry = copy.deepcopy(VALID)
    for _ in range(data.draw(st.integers(0, 3))):
        where = data.draw(st.sampled_from(["entry", "leg", "member"]))
        if where == "entry":
            entry[data.draw(st.sampled_from(sorted(VALID)))] = data.draw(ODD)
        elif where == "leg" and isinstance(entry.get("legs"), list) and entry["legs"]:
            leg = entry["legs"][data.draw(st.integers(0, len(entry["legs"]) - 1))]
            if isinstance(leg, dict):
                leg[data.draw(st.sampled_from(["account_id", "asset", "amount"]))] = data.draw(ODD)
        elif where == "member":
            entry.pop(data.draw(st.sampled_from(sorted(VALID))), None)
    if data.draw(st.booleans()):
        return data.draw(st.sampled_from([entry, [entry], "entry"]))  # not even an object
    return entry


@settings(max_examples=800)
@given(st.data())
def test_the_quick_shape_check_agrees_with_the_one_that_says_why(data: st.DataObject) -> None:
    entry = mutated(data)
    if ledger_rules._plain_shape(entry):
        with pytest.raises(AssertionError):  # nothing wrong to name
            ledger_rules._shape_error(entry, 3)
    else:
        with pytest.raises(RuleError):
            ledger_rules._shape_error(entry, 3)


def test_a_string_known_for_one_member_is_still_matched_for_another() -> None:
    ledger_rules.check_shape(VALID, 3)  # "HOUR" is now a known asset, "xh" a known book
    for member, value in (("book", "HOUR"), ("kind", "HOUR"), ("tx_id", "xh")):
        with pytest.raises(RuleError, match=member):
            ledger_rules.check_shape({**VALID, member: value}, 3)


@settings(max_examples=500)
@given(
    st.tuples(*(st.integers(0, 10**n - 1) for n in (4, 2, 2, 2, 2, 2, 6))),
    st.sampled_from(["0123456789", "٠١٢٣٤٥٦٧٨٩", "０１２３４５６７８９"]),
)
def test_a_timestamp_is_read_as_its_fields_say(fields: tuple[int, ...], digits: str) -> None:
    """ASCII digits are read as their fields say; any other script's are not a timestamp
    (RFC 3339; the browser verifier's pattern is ASCII too)."""
    widths = (4, 2, 2, 2, 2, 2, 6)
    written = (f"{v:0{w}d}" for v, w in zip(fields, widths, strict=True))
    parts = ["".join(digits[int(c)] for c in text) for text in written]
    text = "{}-{}-{}T{}:{}:{}.{}Z".format(*parts)
    try:
        expected: datetime | None = datetime(*fields, tzinfo=UTC)
    except ValueError:
        expected = None
    if digits != "0123456789":
        expected = None
    assert ledger_rules.parse_timestamp(text) == expected
    assert ledger_rules.parse_timestamp(text + "\n") is None
