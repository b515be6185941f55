"""Receipts: JWS (alg Ed25519) over the JCS claims of a journal entry; verification refusals;
size and QR code fit."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
import rfc8785
import segno
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import OKPKey

from app.audit import keys, merkle, receipts
from app.audit.checkpoint import Checkpoint, TlogProof, sign_checkpoint, verify_tlog_proof
from app.audit.keys import PublishedKey, SigningKey
from app.audit.note import Verifier

# docs/ledger-format.md §10, entries 1 and 2, with the hashes printed there.
ENTRY_1: dict[str, Any] = {
    "book": "xh",
    "seq": 1,
    "tx_id": "3f0c7a52-1b8e-4d3a-9f6e-2c1d0b9a8e71",
    "kind": "transfer",
    "posted_at": "2026-11-26T20:30:00.000000Z",
    "legs": [
        {"account_id": "0b6e3b1e-6f0a-4d43-9a55-2a0c1f5e8d01", "asset": "HOUR", "amount": -120},
        {"account_id": "5f1d2c3b-8e4a-4b7c-a1d2-3e4f5a6b7c8d", "asset": "HOUR", "amount": 120},
    ],
    "memo": "opening grant",
    "meta": {},
    "prev_hash": "0" * 64,
}
HASH_1 = "c2d56076f60acd9332a94239e5bdff1b476f63c22b2710faf65070309e2b62af"
ENTRY_2: dict[str, Any] = {
    "book": "xh",
    "seq": 2,
    "tx_id": "c4e2d8a0-7b61-4f3e-8d29-5a0b1c2d3e4f",
    "kind": "hold",
    "posted_at": "2026-11-26T20:31:15.250000Z",
    "legs": [
        {"account_id": "5f1d2c3b-8e4a-4b7c-a1d2-3e4f5a6b7c8d", "asset": "HOUR", "amount": -45},
        {"account_id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "asset": "HOUR", "amount": 45},
    ],
    "memo": "陪伴老人 45 min",
    "meta": {"expires_at": "2026-11-26T20:33:15.250000Z"},
    "prev_hash": HASH_1,
}
HASH_2 = "3528132579df3112d59fa9bb22446984d73e3bc635ff383a0ed75d76597d56de"
IAT = 1795725000  # 2026-11-26T20:30:00Z
# RFC 8032 §7.1 TEST 1: a published key, so the receipts below are reproducible.
KEY = SigningKey(
    Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    )
)
JWKS = keys.jwks([PublishedKey(KEY.public_key, datetime(2026, 1, 1, tzinfo=UTC))])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token_1() -> str:
    return receipts.sign_receipt(receipts.receipt_claims(ENTRY_1, HASH_1, IAT), KEY)


def test_claims() -> None:
    body = bytes(rfc8785.dumps(ENTRY_1))
    assert hashlib.sha256(body).hexdigest() == HASH_1
    claims = receipts.receipt_claims(ENTRY_1, HASH_1, IAT)
    assert claims == {
        "book": "xh",
        "seq": 1,
        "tx_id": "3f0c7a52-1b8e-4d3a-9f6e-2c1d0b9a8e71",
        "kind": "transfer",
        "posted_at": "2026-11-26T20:30:00.000000Z",
        "legs": ENTRY_1["legs"],
        "entry_hash": HASH_1,
        "leaf_hash": hashlib.sha256(b"\x00" + body).hexdigest(),
        "prev_hash": "0" * 64,
        "iat": IAT,
    }
    assert receipts.receipt_claims(ENTRY_2, HASH_2, IAT)["prev_hash"] == HASH_1
    with pytest.raises(ValueError):
        receipts.receipt_claims(ENTRY_1, HASH_2, IAT)
    with pytest.raises(ValueError):
        receipts.receipt_claims({**ENTRY_1, "extra": 1}, HASH_1, IAT)
    with pytest.raises(ValueError):
        receipts.receipt_claims(ENTRY_1, HASH_1, -1)


def test_sign_and_verify() -> None:
    token = token_1()
    assert token == token_1()  # Ed25519 is deterministic
    header, payload, signature = token.split(".")
    assert base64.urlsafe_b64decode(header + "==") == (
        b'{"alg":"Ed25519","kid":"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",'
        b'"typ":"timebank-receipt+jwt"}'
    )
    claims = receipts.verify_receipt(token, JWKS)
    assert b64url(bytes(rfc8785.dumps(claims))) == payload
    assert len(base64.urlsafe_b64decode(signature + "==")) == 64
    receipts.check_receipt_entry(claims, ENTRY_1, HASH_1)


def test_check_against_another_entry() -> None:
    claims = receipts.verify_receipt(token_1(), JWKS)
    with pytest.raises(receipts.ReceiptMismatchError, match="entry_hash"):
        receipts.check_receipt_entry(claims, ENTRY_2, HASH_2)
    changed = {**ENTRY_1, "memo": "rewritten"}
    changed_hash = hashlib.sha256(rfc8785.dumps(changed)).hexdigest()
    with pytest.raises(receipts.ReceiptMismatchError, match="entry_hash, leaf_hash"):
        receipts.check_receipt_entry(claims, changed, changed_hash)
    with pytest.raises(receipts.ReceiptMismatchError):
        receipts.check_receipt_entry(claims, ENTRY_1, HASH_2)


def resign(header: dict[str, Any], payload: bytes, alg: str = "Ed25519") -> str:
    """A JWS signed by KEY with an arbitrary header and payload (for refusal tests)."""
    return jws.serialize_compact(
        header, payload, OKPKey.import_key(KEY.private_key), algorithms=[alg]
    )


def claims_bytes(**changes: Any) -> bytes:
    claims = receipts.receipt_claims(ENTRY_1, HASH_1, IAT)
    claims.update(changes)
    return bytes(rfc8785.dumps(claims))


HEADER = {"alg": "Ed25519", "kid": KEY.kid, "typ": receipts.RECEIPT_TYP}


def test_bad_signatures() -> None:
    header, payload, signature = token_1().split(".")
    other = b64url(claims_bytes(seq=2))
    with pytest.raises(receipts.BadSignatureError):
        receipts.verify_receipt(f"{header}.{other}.{signature}", JWKS)
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[10] ^= 1
    with pytest.raises(receipts.BadSignatureError):
        receipts.verify_receipt(f"{header}.{payload}.{b64url(bytes(raw))}", JWKS)
    stranger = SigningKey(keys.generate_private_key())
    forged = receipts.sign_receipt(receipts.receipt_claims(ENTRY_1, HASH_1, IAT), stranger)
    forged_header, forged_payload, forged_signature = forged.split(".")
    with pytest.raises(receipts.BadSignatureError):
        receipts.verify_receipt(f"{header}.{forged_payload}.{forged_signature}", JWKS)


def test_unknown_or_unusable_keys() -> None:
    stranger = SigningKey(keys.generate_private_key())
    token = receipts.sign_receipt(receipts.receipt_claims(ENTRY_1, HASH_1, IAT), stranger)
    with pytest.raises(receipts.UnknownKeyError):
        receipts.verify_receipt(token, JWKS)
    with pytest.raises(receipts.UnknownKeyError):
        receipts.verify_receipt(token_1(), {"keys": "none"})
    mislabelled = copy.deepcopy(JWKS)
    mislabelled["keys"][0]["x"] = keys.public_jwk(stranger.public_key)["x"]
    with pytest.raises(receipts.UnknownKeyError):
        receipts.verify_receipt(token_1(), mislabelled)
    bare = {"keys": [{"kid": KEY.kid, "kty": "OKP"}]}
    with pytest.raises(receipts.UnknownKeyError):
        receipts.verify_receipt(token_1(), bare)
    twice = {"keys": JWKS["keys"] * 2}
    with pytest.raises(receipts.UnknownKeyError):
        receipts.verify_receipt(token_1(), twice)
    bad_time = copy.deepcopy(JWKS)
    bad_time["keys"][0]["valid_from"] = "yesterday"
    with pytest.raises(receipts.UnknownKeyError):
        receipts.verify_receipt(token_1(), bad_time)


def test_wrong_algorithms_are_refused_before_any_key_use() -> None:
    with pytest.warns(SecurityWarning):  # joserfc warns when asked to sign with EdDSA
        eddsa = resign({**HEADER, "alg": "EdDSA"}, claims_bytes(), alg="EdDSA")
    with pytest.raises(receipts.WrongAlgorithmError):
        receipts.verify_receipt(eddsa, JWKS)
    header = b64url(json.dumps({**HEADER, "alg": "none"}).encode())
    with pytest.raises(receipts.WrongAlgorithmError):
        receipts.verify_receipt(f"{header}.{b64url(claims_bytes())}.", JWKS)
    hs = b64url(json.dumps({**HEADER, "alg": "HS256"}).encode())
    with pytest.raises(receipts.WrongAlgorithmError):
        receipts.verify_receipt(f"{hs}.{b64url(claims_bytes())}.AAAA", JWKS)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b",
        "a.b.c.d",
        "%%%.e30.AAAA",
        token_1() + "=",
        token_1().replace(".", "=.", 1),
        resign({**HEADER, "typ": "JWT"}, claims_bytes()),
        resign({"alg": "Ed25519", "kid": KEY.kid}, claims_bytes()),
        resign({**HEADER, "cty": "json"}, claims_bytes()),
        resign(HEADER, json.dumps(json.loads(claims_bytes())).encode()),  # not JCS
        resign(HEADER, claims_bytes(seq="1")),
        resign(HEADER, claims_bytes(seq=0)),
        resign(HEADER, claims_bytes(iat=1.5)),
        resign(HEADER, claims_bytes(entry_hash=HASH_1.upper())),
        resign(HEADER, claims_bytes(legs=[{"account_id": "a", "asset": "HOUR"}])),
        resign(HEADER, claims_bytes(legs=[{"account_id": "a", "asset": "H", "amount": True}])),
        resign(HEADER, claims_bytes(memo="extra")),
        resign(HEADER, claims_bytes().replace(b'"book":"xh"', b'"book":"\\ud800"')),
        resign(HEADER, b"[1]"),
        resign(HEADER, b'{"seq":1,"seq":1}'),
        resign(HEADER, b"\xff"),
    ],
)
def test_malformed_receipts(token: str) -> None:
    with pytest.raises(receipts.MalformedReceiptError):
        receipts.verify_receipt(token, JWKS)


def test_key_validity_period() -> None:
    token = token_1()

    def window(start: str, end: str | None) -> dict[str, Any]:
        document = copy.deepcopy(JWKS)
        document["keys"][0]["valid_from"] = start
        if end is None:
            document["keys"][0].pop("valid_until", None)
        else:
            document["keys"][0]["valid_until"] = end
        return document

    assert receipts.verify_receipt(token, window("2026-11-26T20:30:00Z", None))["iat"] == IAT
    receipts.verify_receipt(token, window("2026-01-01T00:00:00Z", "2026-11-26T20:30:01Z"))
    with pytest.raises(receipts.KeyNotValidError):
        receipts.verify_receipt(token, window("2026-11-26T20:30:01Z", None))
    with pytest.raises(receipts.KeyNotValidError):
        receipts.verify_receipt(token, window("2026-01-01T00:00:00Z", "2026-11-26T20:30:00Z"))


def test_receipt_against_a_checkpoint() -> None:
    """docs/audit-format.md §6.4: leaf index seq - 1, leaf_hash included in a signed checkpoint."""
    origin = "timebank.example/ledger/xh"
    tree = merkle.MemoryTree()
    for entry in (ENTRY_1, ENTRY_2):
        tree.append(merkle.leaf_hash(bytes(rfc8785.dumps(entry))))
    signed = sign_checkpoint(Checkpoint(origin, tree.size, tree.root()), origin, KEY.private_key)
    token = receipts.sign_receipt(receipts.receipt_claims(ENTRY_2, HASH_2, IAT), KEY)
    claims = receipts.verify_receipt(token, JWKS)
    index = claims["seq"] - 1
    bundle = TlogProof(index, tuple(tree.inclusion_proof(index)), signed).text()
    verifier = Verifier.from_public_key(origin, KEY.public_key)
    checkpoint = verify_tlog_proof(bundle, bytes.fromhex(claims["leaf_hash"]), origin, [verifier])
    assert checkpoint.size >= claims["seq"]


def test_two_leg_receipt_fits_one_qr_code() -> None:
    token = token_1()
    assert len(token.encode()) == len(token) < 1000
    qr = segno.make(token, error="m")
    assert qr.version == 25 and qr.error == "M"
