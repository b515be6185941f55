"""Signing keys: encrypted storage, public JWKs and kids, the JWKS and its validity fields."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from app.audit import keys
from app.audit.keys import PublishedKey, SigningKey, SigningKeyError

PASSPHRASE = b"correct horse battery staple"
RFC8032_TEST1_SEED = bytes.fromhex(
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
)


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def test_encrypted_round_trip() -> None:
    private = keys.generate_private_key()
    pem = keys.encrypt_private_key(private, PASSPHRASE)
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert raw(private) not in pem and base64.b64encode(raw(private)) not in pem
    assert raw(keys.load_private_key(pem, PASSPHRASE)) == raw(private)


def test_load_refusals_do_not_leak_the_passphrase() -> None:
    pem = keys.encrypt_private_key(keys.generate_private_key(), PASSPHRASE)
    for passphrase in [b"Tr0ub4dor&3", b""]:
        with pytest.raises(SigningKeyError) as info:
            keys.load_private_key(pem, passphrase)
        assert PASSPHRASE.decode() not in str(info.value)
        assert passphrase.decode() not in str(info.value) or not passphrase
    with pytest.raises(SigningKeyError):
        keys.load_private_key(b"not a pem", PASSPHRASE)
    with pytest.raises(SigningKeyError):
        keys.encrypt_private_key(keys.generate_private_key(), b"")
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(PASSPHRASE)
    )
    with pytest.raises(SigningKeyError, match="not an Ed25519"):
        keys.load_private_key(ec_pem, PASSPHRASE)


def test_signing_key_repr_shows_only_the_kid(caplog: pytest.LogCaptureFixture) -> None:
    private = Ed25519PrivateKey.from_private_bytes(RFC8032_TEST1_SEED)
    key = SigningKey(private)
    assert key.kid == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"  # RFC 8037 A.3
    text = repr(key) + str(key) + f"{key}" + repr([key])
    assert text.count("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k") == 4
    for secret in (RFC8032_TEST1_SEED.hex(), base64.urlsafe_b64encode(RFC8032_TEST1_SEED).decode()):
        assert secret[:20] not in text
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("key %s %r", key, key)
    assert RFC8032_TEST1_SEED.hex()[:20] not in caplog.text
    assert key.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex() == (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )


def test_public_jwk_and_strict_import() -> None:
    public = keys.generate_private_key().public_key()
    jwk = keys.public_jwk(public)
    assert set(jwk) == {"kty", "crv", "x"} and len(jwk["x"]) == 43
    assert keys.public_key_from_jwk(jwk).public_bytes(
        Encoding.Raw, PublicFormat.Raw
    ) == public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = jwk["x"]
    bad_jwks: list[dict[str, Any]] = [
        {**jwk, "kty": "EC"},
        {**jwk, "crv": "Ed448"},
        {**jwk, "d": "AAAA"},
        {**jwk, "x": x + "A"},
        {**jwk, "x": x[:-1]},
        {**jwk, "x": x[:-1] + "+"},
        {**jwk, "x": x + "="},
        {"kty": "OKP", "crv": "Ed25519"},
        {**jwk, "x": 5},
    ]
    for bad in bad_jwks:
        with pytest.raises(SigningKeyError):
            keys.public_key_from_jwk(bad)
    # The last character's low bits are not free: non-canonical base64url is refused.
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = x[:-1] + last[last.index(x[-1]) ^ 1]
    with pytest.raises(SigningKeyError):
        keys.public_key_from_jwk({**jwk, "x": twin})


def test_jwks_with_validity() -> None:
    first = keys.generate_private_key().public_key()
    second = keys.generate_private_key().public_key()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rotate = datetime(2026, 7, 1, 8, tzinfo=timezone(timedelta(hours=8)))
    document = keys.jwks([PublishedKey(first, start, rotate), PublishedKey(second, rotate)])
    old, new = document["keys"]
    assert old == {
        **keys.public_jwk(first),
        "kid": keys.kid(first),
        "use": "sig",
        "alg": "Ed25519",
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_until": "2026-07-01T00:00:00Z",
    }
    assert keys.signing_window(new) == (datetime(2026, 7, 1, tzinfo=UTC), None)
    assert keys.signing_window(old)[1] == rotate
    with pytest.raises(ValueError):
        keys.jwks([PublishedKey(first, start), PublishedKey(first, rotate)])
    with pytest.raises(ValueError):
        keys.jwks([PublishedKey(first, rotate, start)])
    with pytest.raises(ValueError):
        keys.format_time(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-01T00:00:00",
        "2026-01-01T00:00:00.000Z",
        "2026-01-01t00:00:00z",
        "2026-01-01T00:00:00+00:00",
        "2026-02-30T00:00:00Z",
        "2026-01-01 00:00:00Z",
        "",
    ],
)
def test_parse_time_is_strict(text: str) -> None:
    with pytest.raises(SigningKeyError):
        keys.parse_time(text)
