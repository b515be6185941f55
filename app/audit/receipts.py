"""Signed receipts for journal entries: a JWS compact serialisation (RFC 7515), alg Ed25519.

The payload is the RFC 8785 (JCS) JSON of what identifies an entry and its place in the log;
see docs/audit-format.md for the exact header and claims.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypedDict, cast

import rfc8785
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from app.audit import merkle
from app.audit.keys import (
    SigningKey,
    SigningKeyError,
    jwk_thumbprint,
    public_key_from_jwk,
    signing_window,
)
from app.kit import deep_json
from app.kit.canonical_json import JsonObject, canonical_bytes, jcs_bytes

ALG = "Ed25519"  # RFC 9864's fully specified name (joserfc registers it; not "EdDSA")
RECEIPT_TYP = "timebank-receipt+jwt"
CLAIM_NAMES = (
    "book",
    "seq",
    "tx_id",
    "kind",
    "posted_at",
    "legs",
    "entry_hash",
    "leaf_hash",
    "prev_hash",
    "iat",
)
ENTRY_MEMBERS = frozenset(
    ("book", "seq", "tx_id", "kind", "posted_at", "legs", "memo", "meta", "prev_hash")
)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_MAX_SAFE = 2**53 - 1


class ReceiptLeg(TypedDict):
    """A leg as a receipt states it."""

    account_id: str
    asset: str
    amount: int


class ReceiptClaims(TypedDict):
    """A receipt's payload (docs/audit-format.md §6): a JSON object, signed as its JCS bytes."""

    book: str
    seq: int
    tx_id: str
    kind: str
    posted_at: str
    legs: list[ReceiptLeg]
    entry_hash: str
    leaf_hash: str
    prev_hash: str
    iat: int


class ReceiptError(ValueError):
    """A receipt that cannot be accepted."""


class MalformedReceiptError(ReceiptError):
    """Not a receipt: bad JWS syntax, header, or claims."""


class WrongAlgorithmError(ReceiptError):
    """The header names another algorithm than Ed25519."""


class UnknownKeyError(ReceiptError):
    """No key of the JWKS has the receipt's kid."""


class BadSignatureError(ReceiptError):
    """The signature does not verify with the key named by kid."""


class KeyNotValidError(ReceiptError):
    """The receipt's iat is outside the signing key's validity period."""


class ReceiptMismatchError(ReceiptError):
    """The receipt does not describe the given entry."""


def _is_int(value: object, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= _MAX_SAFE


def _check_claims(claims: Mapping[str, Any]) -> None:
    if set(claims) != set(CLAIM_NAMES):
        raise MalformedReceiptError("the claims must be exactly " + ", ".join(CLAIM_NAMES))
    for name in ("book", "tx_id", "kind", "posted_at"):
        if not isinstance(claims[name], str):
            raise MalformedReceiptError(f"{name} must be a string")
    if not _is_int(claims["seq"], 1) or not _is_int(claims["iat"], 0):
        raise MalformedReceiptError("seq and iat must be integers (seq >= 1, iat >= 0)")
    for name in ("entry_hash", "leaf_hash", "prev_hash"):
        if not isinstance(claims[name], str) or not _HEX64.fullmatch(claims[name]):
            raise MalformedReceiptError(f"{name} must be 64 lowercase hex digits")
    legs = claims["legs"]
    if not isinstance(legs, list):
        raise MalformedReceiptError("legs must be an array")
    for leg in legs:
        if (
            not isinstance(leg, dict)
            or set(leg) != {"account_id", "asset", "amount"}
            or not isinstance(leg["account_id"], str)
            or not isinstance(leg["asset"], str)
            or not _is_int(leg["amount"], -_MAX_SAFE)
        ):
            raise MalformedReceiptError("each leg is {account_id, asset, amount}")


def receipt_claims(entry: Mapping[str, Any], entry_hash: str, iat: int) -> ReceiptClaims:
    """The claims of a receipt for a journal entry object (docs/ledger-format.md §2).

    Checks that `entry_hash` is the entry's hash; `iat` is the signing time in Unix seconds.
    """
    if set(entry) != ENTRY_MEMBERS:
        raise ValueError("not a journal entry object (docs/ledger-format.md §2)")
    body = canonical_bytes(dict(entry))
    if hashlib.sha256(body).hexdigest() != entry_hash:
        raise ValueError("entry_hash is not the SHA-256 of the entry's JCS bytes")
    claims = claims_of(entry, entry_hash, merkle.leaf_hash(body).hex(), iat)
    _check_claims(claims)
    return claims


def claims_of(entry: Mapping[str, Any], entry_hash: str, leaf_hash: str, iat: int) -> ReceiptClaims:
    """The receipt claims of an entry whose hashes are already known (no checks)."""
    return {
        "book": entry["book"],
        "seq": entry["seq"],
        "tx_id": entry["tx_id"],
        "kind": entry["kind"],
        "posted_at": entry["posted_at"],
        "legs": [
            {"account_id": leg["account_id"], "asset": leg["asset"], "amount": leg["amount"]}
            for leg in entry["legs"]
        ],
        "entry_hash": entry_hash,
        "leaf_hash": leaf_hash,
        "prev_hash": entry["prev_hash"],
        "iat": iat,
    }


def sign_receipt(claims: Mapping[str, Any], key: SigningKey) -> str:
    """The receipt: JWS compact, header {"alg":"Ed25519","kid":…,"typ":…}, JCS payload."""
    _check_claims(claims)
    payload = bytes(rfc8785.dumps(dict(claims)))
    header = {"alg": ALG, "kid": key.kid, "typ": RECEIPT_TYP}
    private = OKPKey.import_key(key.private_key)
    return jws.serialize_compact(header, payload, private, algorithms=[ALG])


def strict_json(data: bytes) -> Any:
    """UTF-8 JSON with no duplicate member and no NaN or infinity (deep_json.strict_loads), as
    a receipt's refusal."""
    try:
        return deep_json.strict_loads(data)
    except ValueError as exc:
        raise MalformedReceiptError(f"not strict UTF-8 JSON: {exc}") from exc


def b64url_decode(segment: str) -> bytes:
    """A canonical unpadded base64url segment of a JWS."""
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise MalformedReceiptError("bad base64url segment")
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != segment:
        raise MalformedReceiptError("non-canonical base64url segment")
    return raw


def verified_jws(
    token: str, jwks: Mapping[str, Any], typ: str
) -> tuple[bytes, datetime | None, datetime | None]:
    """The payload of an Ed25519 JWS of type `typ` whose signature verifies with the JWKS key
    named by its kid, and that key's signing window; raises a ReceiptError subclass."""
    if not isinstance(token, str) or token.count(".") != 2:
        raise MalformedReceiptError("not a JWS compact serialisation")
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = strict_json(b64url_decode(header_b64))
    if not isinstance(header, dict) or set(header) != {"alg", "kid", "typ"}:
        raise MalformedReceiptError("the header must be exactly alg, kid and typ")
    if header["alg"] != ALG:
        raise WrongAlgorithmError(f"alg must be {ALG}, not {header['alg']!r}")
    if header["typ"] != typ or not isinstance(header["kid"], str):
        raise MalformedReceiptError(f"typ must be {typ} and kid a string")
    b64url_decode(signature_b64)

    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise UnknownKeyError("the JWKS has no keys array")
    matches = [k for k in keys if isinstance(k, dict) and k.get("kid") == header["kid"]]
    if len(matches) != 1:
        raise UnknownKeyError(f"no single key with kid {header['kid']!r}")
    jwk = matches[0]
    try:
        public = public_key_from_jwk(jwk)
        if jwk_thumbprint(jwk) != header["kid"]:
            raise UnknownKeyError("the JWK's kid is not its thumbprint")
        start, end = signing_window(jwk)
    except SigningKeyError as exc:
        raise UnknownKeyError(f"unusable key {header['kid']!r}: {exc}") from exc
    try:
        jws.deserialize_compact(token, OKPKey.import_key(public), algorithms=[ALG])
    except JoseError as exc:
        raise BadSignatureError("the signature does not verify") from exc
    return b64url_decode(payload_b64), start, end


def json_object(payload: bytes) -> JsonObject:
    """A payload that is a strict JSON object; raises MalformedReceiptError."""
    document = strict_json(payload)
    if not isinstance(document, dict):
        raise MalformedReceiptError("the payload must be a JSON object")
    return document


def require_canonical(document: Mapping[str, Any], payload: bytes) -> None:
    """Refuse a payload that is not the RFC 8785 form of its own object."""
    try:
        canonical = jcs_bytes(document)
    except rfc8785.CanonicalizationError as exc:
        raise MalformedReceiptError("the payload cannot be canonicalised") from exc
    if canonical != payload:
        raise MalformedReceiptError("the payload is not in RFC 8785 canonical form")


def require_key_valid(iat: int, start: datetime | None, end: datetime | None) -> None:
    """Refuse a token signed (`iat`) outside its key's validity period."""
    if (start is not None and iat < start.timestamp()) or (
        end is not None and iat >= end.timestamp()
    ):
        raise KeyNotValidError("iat is outside the signing key's validity period")


def verify_receipt(token: str, jwks: Mapping[str, Any]) -> ReceiptClaims:
    """The claims of a receipt verified with the JWKS key named by its kid; raises a
    ReceiptError subclass (malformed, wrong alg, unknown key, bad signature, key not valid)."""
    payload, start, end = verified_jws(token, jwks, RECEIPT_TYP)
    document = json_object(payload)
    _check_claims(document)
    claims = cast(ReceiptClaims, document)  # exactly the claims, each of its type (checked)
    require_canonical(claims, payload)
    require_key_valid(claims["iat"], start, end)
    return claims


def check_receipt_entry(
    claims: Mapping[str, Any], entry: Mapping[str, Any], entry_hash: str
) -> None:
    """Raise ReceiptMismatchError unless the (verified) claims describe this entry and hash."""
    try:
        expected: Mapping[str, object] = receipt_claims(entry, entry_hash, claims["iat"])
    except (KeyError, ValueError) as exc:
        raise ReceiptMismatchError(f"cannot compare: {exc}") from exc
    differing = sorted(name for name in CLAIM_NAMES if claims.get(name) != expected[name])
    if differing:
        raise ReceiptMismatchError("the receipt differs from the entry in " + ", ".join(differing))
