"""Receipts as the service hands them out: computed whenever they are answered, never stored.

Ed25519 signatures are deterministic and a receipt's `iat` is its entry's `posted_at` in whole
seconds, signed with the key valid at that instant, so every answer for an entry carries the
same receipt. The bytes are those of `app.audit.receipts.sign_receipt` (a test holds them
equal), built without its generic JOSE machinery: this runs on every posting answer.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson
import structlog

from app.audit.keys import SigningKey
from app.audit.keystore import KeyRing, StoredKey
from app.audit.receipts import ALG, RECEIPT_TYP, ReceiptClaims, claims_of
from app.kit import deep_json
from app.kit.canonical_json import canonical_bytes
from app.kit.outages import log_failure

log = structlog.get_logger("timebank.audit")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_SECOND = timedelta(seconds=1)
_ENTRY_AT = b',"entry":'
_HASH_AT = b',"entry_hash":"'


class StoredEntry(NamedTuple):
    """A journal entry as stored: the object, its JCS bytes and their SHA-256 (hex)."""

    entry: dict[str, Any]
    body: bytes
    entry_hash: str


class SignedReceipt(NamedTuple):
    """A receipt (JWS compact), what it states, and the key that signed it."""

    token: str
    claims: ReceiptClaims
    key: StoredKey


def iat_of(posted_at: str) -> int:
    """A journal timestamp in whole Unix seconds, rounded down (exact: no float)."""
    return (datetime.fromisoformat(posted_at) - EPOCH) // ONE_SECOND


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def receipt_claims(entry: Mapping[str, Any], body: bytes, entry_hash: str) -> ReceiptClaims:
    """The claims of an entry's receipt from its stored JCS bytes (trusted: from the journal)."""
    leaf_hash = hashlib.sha256(b"\x00" + body).hexdigest()
    return claims_of(entry, entry_hash, leaf_hash, iat_of(entry["posted_at"]))


_headers: dict[str, str] = {}


# The claims of a journal entry hold only ASCII member names, strings in the journal's ASCII
# formats (book, kind, UUIDs, timestamps, hex) and safe integers: for them orjson with sorted
# keys writes exactly the RFC 8785 bytes (a test holds the two equal).
def _jcs_claims(claims: Mapping[str, Any]) -> bytes:
    return orjson.dumps(claims, option=orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER)


def signing_input(claims: Mapping[str, Any], kid: str) -> str:
    """`base64url(header) "." base64url(payload)` of a receipt (docs/audit-format.md §6)."""
    header = _headers.get(kid)
    if header is None:
        raw = json.dumps({"alg": ALG, "kid": kid, "typ": RECEIPT_TYP}, separators=(",", ":"))
        header = _headers[kid] = _b64url(raw.encode())
    return f"{header}.{_b64url(_jcs_claims(claims))}"


def sign_claims(claims: Mapping[str, Any], key: SigningKey) -> str:
    """The JWS compact serialisation of the claims."""
    data = signing_input(claims, key.kid)
    return f"{data}.{_b64url(key.private_key.sign(data.encode()))}"


def entry_in_answer(payload: bytes) -> StoredEntry:
    """The entry of a posting answer, its JCS bytes and its hash.

    The sequencer splices the stored bytes into its answers; otherwise (an answer rebuilt from
    the journal) they are computed again. Either way they must hash to `entry_hash`.
    """
    start = payload.find(_ENTRY_AT)
    end = payload.rfind(_HASH_AT)  # the last one: a meta may hold the same text
    if 0 <= start < end:
        body = payload[start + len(_ENTRY_AT) : end]
        entry_hash = payload[end + len(_HASH_AT) : end + len(_HASH_AT) + 64].decode()
        if hashlib.sha256(body).hexdigest() == entry_hash:
            return StoredEntry(_loads(body), body, entry_hash)
    document = _loads(payload)
    entry, entry_hash = document["entry"], document["entry_hash"]
    body = canonical_bytes(entry)
    if hashlib.sha256(body).hexdigest() != entry_hash:
        raise ValueError("the answer's entry does not hash to its entry_hash")
    return StoredEntry(entry, body, entry_hash)


def _loads(data: bytes) -> Any:
    """orjson, or past its 1,024 levels of nesting (entries posted before the door limited
    depth), the parser of any depth."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return deep_json.loads(data)


class Receipts:
    """Signs receipts with the key valid at each entry's posted_at."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    async def sign(self, entry: Mapping[str, Any], body: bytes, entry_hash: str) -> SignedReceipt:
        """The receipt of an entry, its claims and the key that signed it."""
        claims = receipt_claims(entry, body, entry_hash)
        stored, signer = await self.ring.key_at(claims["iat"])
        return SignedReceipt(sign_claims(claims, signer), claims, stored)

    async def attach(self, payload: bytes) -> bytes:
        """A posting answer with its `receipt` member added; unchanged (and logged) when no
        receipt can be made: the entry is written whatever happens here."""
        try:
            receipt = await self.sign(*entry_in_answer(payload))
        except Exception as exc:
            log_failure(log, "audit.receipt_failed", exc)
            return payload
        return payload[:-1] + b',"receipt":"' + receipt.token.encode() + b'"}'
