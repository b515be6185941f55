"""The JSON documents a posting answers with (pure: no I/O)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from app.kit import deep_json
from app.kit.canonical_json import JsonObject, canonical_bytes, compact_json
from app.ledger.journal import KIND_HOLD, KIND_HOLD_VOID, BalanceState


def balance_json(account_id: str, asset: str, balance: BalanceState) -> JsonObject:
    """An account's balances as the API shows them."""
    return {
        "account_id": account_id,
        "asset": asset,
        "posted": balance.posted,
        "pending": balance.pending_credits - balance.pending_debits,
        "pending_debits": balance.pending_debits,
        "pending_credits": balance.pending_credits,
        "available": balance.available,
    }


def posting_body(
    entry: dict[str, Any], entry_hash: str, balances: list[dict[str, Any]]
) -> JsonObject:
    """The shape of every posting answer: the entry, its hash, the balances right after it."""
    status = {KIND_HOLD: "pending", KIND_HOLD_VOID: "voided"}.get(entry["kind"], "posted")
    return {
        "id": entry["tx_id"],
        "book": entry["book"],
        "seq": entry["seq"],
        "kind": entry["kind"],
        "status": status,
        "entry": entry,
        "entry_hash": entry_hash,
        "balances": balances,
    }


def posting_payload(
    entry: dict[str, Any], body: bytes, entry_hash: str, balances: list[dict[str, Any]]
) -> bytes:
    """`posting_body` serialised, with the entry's own JCS bytes spliced in (not re-encoded)."""
    document = posting_body(entry, entry_hash, balances)
    document["entry"] = orjson.Fragment(body)
    return compact_json(document)


def posting_json(posting: dict[str, Any]) -> bytes:
    """A posting answer (`posting_body`'s shape) serialised, its entry as RFC 8785 bytes: the
    stored bytes again (the entry was parsed from them), at any depth (orjson stops at 255
    levels; entries accepted before the door limited depth nest further)."""
    return compact_json({**posting, "entry": orjson.Fragment(canonical_bytes(posting["entry"]))})


def posting_from_row(body: bytes, entry_hash: str, balances: str | None) -> JsonObject:
    """A posting answer rebuilt from a stored entry and its accounts' last legs (JSON rows of
    account_id, asset, posted, pending debits, pending credits)."""
    entry = deep_json.loads(bytes(body))
    # Balances in the order the accounts first appear in the legs, as the posting answered.
    order: dict[str, int] = {}
    for index, leg in enumerate(entry["legs"]):
        order.setdefault(leg["account_id"], index)
    rows = json.loads(balances) if balances else []
    documents = sorted(
        (balance_json(a, asset, BalanceState(p, pd, pc)) for a, asset, p, pd, pc in rows),
        key=lambda b: order.get(b["account_id"], 0),
    )
    return posting_body(entry, entry_hash, documents)


@dataclass(frozen=True, slots=True)
class StoredPosting:
    """A posted entry as its posting answered (`posting_body`'s shape, the entry as stored and
    of any depth, so kept as a JSON document), with what callers read of it."""

    document: dict[str, Any]

    @property
    def tx_id(self) -> str:
        return str(self.document["id"])

    @property
    def book(self) -> str:
        return str(self.document["book"])

    @property
    def kind(self) -> str:
        return str(self.document["kind"])

    @property
    def entry(self) -> JsonObject:
        """The journal entry (docs/ledger-format.md)."""
        entry: dict[str, Any] = self.document["entry"]
        return entry

    @property
    def legs(self) -> list[tuple[str, int]]:
        """(account_id, amount) of each leg, in order."""
        return [(str(leg["account_id"]), int(leg["amount"])) for leg in self.entry["legs"]]
