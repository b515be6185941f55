"""The service's fast receipt signer and checker agree with app.audit.receipts."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from app.audit import merkle, receipts
from app.audit.keys import PublishedKey, SigningKey, generate_private_key, jwks
from app.audit.offline import CompactRange
from app.audit.receipt_checker import ReceiptChecker
from app.audit.receipting import entry_in_answer, iat_of, receipt_claims, sign_claims
from tests.audit.test_receipts import ENTRY_1, ENTRY_2, HASH_1, HASH_2, JWKS, KEY

BODY_2 = bytes(rfc8785.dumps(ENTRY_2))


def test_iat_is_posted_at_rounded_down_without_float_error() -> None:
    assert iat_of("2026-11-26T20:31:15.250000Z") == 1795725075
    assert iat_of("2026-11-26T20:31:15.999999Z") == 1795725075
    assert iat_of("1970-01-01T00:00:00.000000Z") == 0


@pytest.mark.parametrize(("entry", "entry_hash"), [(ENTRY_1, HASH_1), (ENTRY_2, HASH_2)])
def test_the_fast_signer_writes_the_reference_bytes(entry: dict[str, Any], entry_hash: str) -> None:
    body = bytes(rfc8785.dumps(entry))
    claims = receipt_claims(entry, body, entry_hash)
    assert claims == receipts.receipt_claims(entry, entry_hash, iat_of(entry["posted_at"]))
    assert sign_claims(claims, KEY) == receipts.sign_receipt(claims, KEY)


def test_the_entry_is_found_in_a_spliced_or_a_rebuilt_answer() -> None:
    spliced = (
        b'{"id":"x","book":"xh","seq":2,"kind":"hold","status":"pending","entry":'
        + BODY_2
        + b',"entry_hash":"'
        + HASH_2.encode()
        + b'","balances":[]}'
    )
    assert entry_in_answer(spliced) == (ENTRY_2, BODY_2, HASH_2)
    rebuilt = json.dumps({"entry": ENTRY_2, "entry_hash": HASH_2}, indent=1).encode()
    assert entry_in_answer(rebuilt) == (ENTRY_2, BODY_2, HASH_2)
    with pytest.raises(ValueError, match="does not hash"):
        entry_in_answer(json.dumps({"entry": ENTRY_2, "entry_hash": HASH_1}).encode())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def resigned(header: dict[str, Any], claims: dict[str, Any], key: SigningKey = KEY) -> str:
    head = b64url(json.dumps(header, separators=(",", ":")).encode())
    body = b64url(bytes(rfc8785.dumps(claims)))
    signature = b64url(key.private_key.sign(f"{head}.{body}".encode()))
    return f"{head}.{body}.{signature}"


def spaced(head: str, claims: dict[str, Any]) -> str:
    body = b64url(json.dumps(claims, sort_keys=True).encode())
    return f"{head}.{body}.{b64url(KEY.private_key.sign(f'{head}.{body}'.encode()))}"


def variants() -> dict[str, str]:
    """Receipts of ENTRY_2: one good, and each way one can be bad."""
    iat = iat_of(ENTRY_2["posted_at"])
    claims = receipt_claims(ENTRY_2, BODY_2, HASH_2)
    good = sign_claims(claims, KEY)
    header = {"alg": "Ed25519", "kid": KEY.kid, "typ": "timebank-receipt+jwt"}
    head, body, signature = good.split(".")
    other = SigningKey(generate_private_key())
    changed_leg = copy.deepcopy(claims)
    changed_leg["legs"][0]["amount"] = -46
    return {
        "good": good,
        "alg EdDSA": resigned({**header, "alg": "EdDSA"}, claims),
        "alg none": b64url(b'{"alg":"none"}') + f".{body}.",
        "extra header member": resigned({**header, "crit": ["b64"]}, claims),
        "wrong typ": resigned({**header, "typ": "JWT"}, claims),
        "unknown kid": resigned({**header, "kid": other.kid}, claims, other),
        "signed by another key": resigned(header, claims, other),
        "payload swapped": f"{head}.{b64url(b'{}')}.{signature}",
        "spaces in payload": spaced(head, claims),
        "a leg changed": resigned(header, changed_leg),
        "another entry": sign_claims(
            receipt_claims(ENTRY_1, bytes(rfc8785.dumps(ENTRY_1)), HASH_1), KEY
        ),
        "iat before the key": resigned(header, {**claims, "iat": 1_700_000_000}),
        "iat not an integer": resigned(header, {**claims, "iat": str(iat)}),
        "padded signature": good + "==",
        "three parts missing": head,
    }


def reference(token: str) -> str:
    try:
        claims = receipts.verify_receipt(token, JWKS)
        receipts.check_receipt_entry(claims, ENTRY_2, HASH_2)
    except receipts.ReceiptError as exc:
        return type(exc).__name__
    return "ok"


def fast(token: str) -> str:
    try:
        ReceiptChecker(JWKS).check(token, ENTRY_2, BODY_2, HASH_2)
    except receipts.ReceiptError as exc:
        return type(exc).__name__
    return "ok"


@pytest.mark.parametrize(("name", "token"), list(variants().items()))
def test_the_fast_checker_reaches_the_reference_verdict(name: str, token: str) -> None:
    verdict = reference(token)
    assert (verdict == "ok") == (name == "good"), verdict
    assert fast(token) == verdict


def test_a_key_outside_its_period_is_refused_by_both() -> None:
    late = jwks([PublishedKey(KEY.public_key, datetime(2027, 1, 1, tzinfo=UTC))])
    token = sign_claims(receipt_claims(ENTRY_2, BODY_2, HASH_2), KEY)
    with pytest.raises(receipts.KeyNotValidError):
        receipts.verify_receipt(token, late)
    with pytest.raises(receipts.KeyNotValidError):
        ReceiptChecker(late).check(token, ENTRY_2, BODY_2, HASH_2)


@pytest.mark.parametrize("begin", [0, 1, 3, 4, 5, 8, 13])
def test_a_compact_range_gives_the_root_of_the_whole_tree(begin: int) -> None:
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(40)]
    tree = merkle.MemoryTree()
    tree.extend(leaves)
    for end in range(begin, 41):
        compact = CompactRange(begin)
        for leaf in leaves[begin:end]:
            compact.append(leaf)
        prefix = [tree.get(level, index) for level, index in merkle.peaks(begin)]
        assert compact.root(prefix) == merkle.root_from_leaves(leaves[:end]), (begin, end)


uuids = st.uuids().map(str)
legs = st.lists(
    st.fixed_dictionaries(
        {
            "account_id": uuids,
            "asset": st.from_regex(r"[A-Z][A-Z0-9_]{0,15}", fullmatch=True),
            "amount": st.integers(-(2**53) + 1, 2**53 - 1).filter(bool),
        }
    ),
    max_size=20,
)
entries = st.fixed_dictionaries(
    {
        "book": st.from_regex(r"[a-z][a-z0-9_-]{0,31}", fullmatch=True),
        "seq": st.integers(1, 2**53 - 1),
        "tx_id": uuids,
        "kind": st.from_regex(r"[a-z][a-z0-9_]{0,31}(\.[a-z0-9_]{1,31}){0,3}", fullmatch=True),
        "posted_at": st.datetimes(datetime(2000, 1, 1), timezones=st.just(UTC)).map(
            lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        ),
        "legs": legs,
        "memo": st.text(max_size=30),
        "meta": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
        "prev_hash": st.binary(min_size=32, max_size=32).map(bytes.hex),
    }
)


@settings(max_examples=100, deadline=None)
@given(entries)
def test_claims_are_written_in_rfc8785_form_for_any_journal_entry(entry: dict[str, Any]) -> None:
    body = bytes(rfc8785.dumps(entry))
    claims = receipt_claims(entry, body, hashlib.sha256(body).hexdigest())
    payload = sign_claims(claims, KEY).split(".")[1]
    assert base64.urlsafe_b64decode(payload + "==") == bytes(rfc8785.dumps(claims))
