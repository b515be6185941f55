"""Ed25519 signing keys: generation, encrypted storage, public JWKs, RFC 7638 key ids, JWKS.

Private keys never appear in a repr, a str, a log or an exception message; neither do
passphrases.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from joserfc import jwk as jose_jwk

# A JWK Set as published: {"keys": [JWK, ...]}, every member of a JWK a string.
JwkSet = dict[str, list[dict[str, str]]]
VALID_FROM = "valid_from"
VALID_UNTIL = "valid_until"
_RFC3339_SECONDS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


class SigningKeyError(ValueError):
    """A key that cannot be loaded or used (the message never holds secret material)."""


def generate_private_key() -> Ed25519PrivateKey:
    """A new random Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def encrypt_private_key(private_key: Ed25519PrivateKey, passphrase: bytes) -> bytes:
    """PKCS #8 PEM of the key, encrypted with the passphrase (cryptography's best available)."""
    if not passphrase:
        raise SigningKeyError("an empty passphrase does not protect a key")
    return private_key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(passphrase)
    )


def load_private_key(pem: bytes, passphrase: bytes) -> Ed25519PrivateKey:
    """The Ed25519 key of an encrypted PKCS #8 PEM; SigningKeyError if it cannot be decrypted."""
    try:
        key = load_pem_private_key(pem, password=passphrase)
    except (ValueError, TypeError) as exc:
        # The library's message could echo input; say only what failed.
        raise SigningKeyError(
            "cannot decrypt the private key (wrong passphrase or not a key)"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError("not an Ed25519 private key")
    return key


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    """The RFC 8037 public JWK: {"kty": "OKP", "crv": "Ed25519", "x": base64url(key)}."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw)}


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint (base64url) over the required OKP members crv, kty, x."""
    return jose_jwk.thumbprint({name: jwk[name] for name in ("crv", "kty", "x")})


def kid(public_key: Ed25519PublicKey) -> str:
    """The key id used everywhere for an Ed25519 key: its RFC 7638 JWK thumbprint."""
    return jwk_thumbprint(public_jwk(public_key))


def public_key_from_jwk(jwk: Mapping[str, Any]) -> Ed25519PublicKey:
    """The Ed25519 public key of a public OKP JWK, strictly (no private member)."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise SigningKeyError("not an OKP Ed25519 JWK")
    if "d" in jwk:
        raise SigningKeyError("a published JWK must not hold the private key")
    x = jwk.get("x")
    if not isinstance(x, str) or not re.fullmatch(r"[A-Za-z0-9_-]{43}", x):
        raise SigningKeyError("x must be 43 base64url characters")
    try:
        raw = base64.urlsafe_b64decode(x + "=")
    except binascii.Error as exc:
        raise SigningKeyError("x is not base64url") from exc
    if _b64url(raw) != x:
        raise SigningKeyError("x is not canonical base64url")
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True, repr=False)
class SigningKey:
    """A private Ed25519 key with its kid; its repr shows the kid only."""

    private_key: Ed25519PrivateKey
    kid: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kid", kid(self.private_key.public_key()))

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r})"

    __str__ = __repr__

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The public half."""
        return self.private_key.public_key()


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with whole seconds: `YYYY-MM-DDTHH:MM:SSZ`."""
    if moment.tzinfo is None:
        raise ValueError("a validity time must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Parse the `format_time` form (and only it)."""
    if not isinstance(text, str) or not _RFC3339_SECONDS.fullmatch(text):
        raise SigningKeyError(f"not an RFC 3339 UTC time with whole seconds: {text!r}")
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise SigningKeyError(f"not a valid time: {text!r}") from exc


@dataclass(frozen=True)
class PublishedKey:
    """A public key as published in the JWKS, with its validity period.

    The key may sign at instants t with valid_from <= t < valid_until (no end when None).
    """

    public_key: Ed25519PublicKey
    valid_from: datetime
    valid_until: datetime | None = None

    def jwk(self) -> dict[str, str]:
        """The JWK with kid, use, alg and the validity members."""
        out = public_jwk(self.public_key)
        out.update(kid=kid(self.public_key), use="sig", alg="Ed25519")
        out[VALID_FROM] = format_time(self.valid_from)
        if self.valid_until is not None:
            if self.valid_until <= self.valid_from:
                raise ValueError("valid_until must be after valid_from")
            out[VALID_UNTIL] = format_time(self.valid_until)
        return out


def jwks(keys: Iterable[PublishedKey]) -> JwkSet:
    """The JWK Set {"keys": [...]} (RFC 7517 §5) of the published keys, in the given order."""
    out = [key.jwk() for key in keys]
    kids = [k["kid"] for k in out]
    if len(set(kids)) != len(kids):
        raise ValueError("a key is listed twice")
    return {"keys": out}


def signing_window(jwk: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    """(valid_from, valid_until) of a JWK; None where the member is absent."""
    start = jwk.get(VALID_FROM)
    end = jwk.get(VALID_UNTIL)
    return (
        None if start is None else parse_time(start),
        None if end is None else parse_time(end),
    )
