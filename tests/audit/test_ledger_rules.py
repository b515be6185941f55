"""The offline verifier's ledger rules (app/audit/ledger_rules.py) on hand-made entries."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

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
