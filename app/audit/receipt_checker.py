"""Checking many receipts against one JWKS and their entries, in this process or in others
(docs/audit-format.md §6.4, §8.5 step 3.4). Pure: no database, no network."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.audit import receipts
from app.audit.export_lines import read_line, strict_json
from app.audit.keys import SigningKeyError, jwk_thumbprint, public_key_from_jwk, signing_window
from app.audit.ledger_rules import MAX_SAFE_INTEGER, check_shape
from app.audit.receipting import receipt_claims
from app.kit.canonical_json import canonical_bytes, canonical_object_bytes


@dataclass(frozen=True)
class _Key:
    public_key: Ed25519PublicKey
    start: float | None
    end: float | None


class ReceiptChecker:
    """Checks many receipts against one JWKS and their entries: the rules of
    `app.audit.receipts.verify_receipt` and `check_receipt_entry`, with each header and key
    examined once (a test holds both to the same verdicts)."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._jwks = jwks
        self._headers: dict[str, str] = {}
        self._keys: dict[str, _Key] = {}
        self.kids: set[str] = set()

    def _kid(self, segment: str) -> str:
        kid = self._headers.get(segment)
        if kid is None:
            try:
                header = strict_json(receipts.b64url_decode(segment))
            except ValueError as exc:
                raise receipts.MalformedReceiptError(f"the header is not JSON: {exc}") from None
            if not isinstance(header, dict) or set(header) != {"alg", "kid", "typ"}:
                raise receipts.MalformedReceiptError("the header must be exactly alg, kid, typ")
            if header["alg"] != receipts.ALG:
                raise receipts.WrongAlgorithmError(f"alg must be {receipts.ALG}")
            if header["typ"] != receipts.RECEIPT_TYP or not isinstance(header["kid"], str):
                raise receipts.MalformedReceiptError("typ or kid is wrong")
            kid = self._headers[segment] = header["kid"]
        return kid

    def _key(self, kid: str) -> _Key:
        key = self._keys.get(kid)
        if key is None:
            listed = self._jwks.get("keys")
            found = [k for k in listed or () if isinstance(k, dict) and k.get("kid") == kid]
            if not isinstance(listed, list) or len(found) != 1:
                raise receipts.UnknownKeyError(f"no single key with kid {kid!r}")
            try:
                public = public_key_from_jwk(found[0])
                if jwk_thumbprint(found[0]) != kid:
                    raise receipts.UnknownKeyError("the JWK's kid is not its thumbprint")
                start, end = signing_window(found[0])
            except SigningKeyError as exc:
                raise receipts.UnknownKeyError(f"unusable key {kid!r}: {exc}") from None
            key = self._keys[kid] = _Key(
                public,
                None if start is None else start.timestamp(),
                None if end is None else end.timestamp(),
            )
        return key

    def check(self, token: str, entry: Mapping[str, Any], body: bytes, entry_hash: str) -> str:
        """Raise a ReceiptError unless `token` is a valid receipt of this entry; its kid."""
        if not isinstance(token, str) or token.count(".") != 2:
            raise receipts.MalformedReceiptError("not a JWS compact serialisation")
        header, payload, signature = token.split(".")
        kid = self._kid(header)
        key = self._key(kid)
        try:
            key.public_key.verify(receipts.b64url_decode(signature), f"{header}.{payload}".encode())
        except InvalidSignature:
            raise receipts.BadSignatureError("the signature does not verify") from None
        raw = receipts.b64url_decode(payload)
        try:
            iat = strict_json(raw).get("iat")
        except (ValueError, AttributeError):
            raise receipts.MalformedReceiptError("the payload is not a JSON object") from None
        if type(iat) is not int or not 0 <= iat <= MAX_SAFE_INTEGER:
            raise receipts.MalformedReceiptError("iat must be an integer >= 0")
        expected = receipt_claims(entry, body, entry_hash)
        expected["iat"] = iat
        if canonical_bytes(expected) != raw:
            # The slow path only to say why.
            claims = receipts.verify_receipt(token, self._jwks)
            receipts.check_receipt_entry(claims, entry, entry_hash)
            raise receipts.MalformedReceiptError("the payload is not the entry's canonical claims")
        if (key.start is not None and iat < key.start) or (key.end is not None and iat >= key.end):
            raise receipts.KeyNotValidError("iat is outside the signing key's validity period")
        self.kids.add(kid)
        return kid


# A receipt's verdict: (True, kid) or (False, why it fails), as ReceiptChecker.check says.
ReceiptVerdict = tuple[bool, str]
_worker_checker: ReceiptChecker | None = None


def start_worker(jwks: Mapping[str, Any]) -> None:
    """A process of the pool that checks receipts: its checker, with the export's keys."""
    global _worker_checker
    _worker_checker = ReceiptChecker(jwks)


def worker_verdicts(chunk: list[bytes]) -> list[ReceiptVerdict | None]:
    """In a process of the pool: the verdicts on the receipts of these lines."""
    checker = _worker_checker
    if checker is None:  # pragma: no cover - set by the pool's initializer
        raise RuntimeError("the worker has no keys")
    return [receipt_verdict(checker, raw) for raw in chunk]


def receipt_verdict(checker: ReceiptChecker, raw: bytes) -> ReceiptVerdict | None:
    """The verdict on the receipt of an entry line, read as `ExportVerifier.feed` reads it;
    None when the line has no receipt or fails before its receipt would be checked."""
    try:
        entry, entry_hash, signed, receipt = read_line(raw)
        if not signed:
            return None
        check_shape(entry, 0)
        body = canonical_object_bytes(entry, entry["meta"])
    except Exception:  # feed finds what is wrong, in its order
        return None
    try:
        return True, checker.check(receipt, entry, body, entry_hash)
    except receipts.ReceiptError as exc:
        return False, str(exc)
    except Exception:  # feed meets it again, after the lines before this one
        return None
