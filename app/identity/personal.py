"""Members' personal data under PIPL: validation, masking for display, encryption at rest.

Nothing here touches the database. Error messages never repeat the value they reject, so they
can be logged and returned to clients without leaking personal information.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import date
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# --- Resident identity card numbers (GB 11643-1999) ------------------------------------------

RESIDENT_ID_LENGTH = 18
_DIGITS = frozenset("0123456789")
# ISO 7064 MOD 11-2 weights for positions 1-17 (2**(18 - i) mod 11).
_CHECK_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "0123456789X"
_EARLIEST_BIRTH = date(1900, 1, 1)

ResidentIdPart = Literal["length", "characters", "area", "birth_date", "check"]
Sex = Literal["male", "female"]


class InvalidResidentId(ValueError):
    """A resident ID number was rejected; `part` names what is wrong, the number is never kept."""

    def __init__(self, part: ResidentIdPart, message: str) -> None:
        super().__init__(message)
        self.part: ResidentIdPart = part


@dataclass(frozen=True, slots=True)
class ResidentId:
    """A validated 居民身份证号: the normalised number, the birth date and sex it encodes."""

    number: str
    birth_date: date
    sex: Sex

    def __repr__(self) -> str:
        # Reprs end up in logs and tracebacks; show only what a masked display would show.
        return f"ResidentId(number={mask_resident_id(self.number)!r})"


def resident_id_check_char(body: str) -> str:
    """The MOD 11-2 check character ('0'-'9' or 'X') for a 17-digit body."""
    if len(body) != RESIDENT_ID_LENGTH - 1 or not _DIGITS.issuperset(body):
        raise ValueError("a resident ID body is 17 digits")
    total = sum(int(digit) * weight for digit, weight in zip(body, _CHECK_WEIGHTS, strict=True))
    return _CHECK_CHARS[(12 - total % 11) % 11]


def validate_resident_id(value: str, today: date) -> ResidentId:
    """Validate an 18-character resident ID number against `today`; raise InvalidResidentId."""
    # Surrounding spaces come from copy and paste; a lower-case x is the same check character.
    number = value.strip().upper()
    if len(number) != RESIDENT_ID_LENGTH:
        raise InvalidResidentId("length", "resident ID number must be 18 characters long")
    body, check = number[:17], number[17]
    if not _DIGITS.issuperset(body) or check not in _CHECK_CHARS:
        raise InvalidResidentId(
            "characters", "resident ID number must be 17 digits followed by a digit or X"
        )
    # Area codes start with a region digit 1-8; the full table changes too often to check here.
    if body[0] not in "12345678":
        raise InvalidResidentId("area", "resident ID number has an invalid area code")
    try:
        birth = date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    except ValueError:
        raise InvalidResidentId(
            "birth_date", "resident ID number has a birth date that does not exist"
        ) from None
    if birth > today:
        raise InvalidResidentId("birth_date", "resident ID number has a birth date in the future")
    if birth < _EARLIEST_BIRTH:
        raise InvalidResidentId("birth_date", "resident ID number has a birth date before 1900")
    if resident_id_check_char(body) != check:
        raise InvalidResidentId("check", "resident ID number has a wrong check character")
    sex: Sex = "male" if int(body[16]) % 2 == 1 else "female"
    return ResidentId(number=number, birth_date=birth, sex=sex)


# --- Mainland mobile phone numbers -----------------------------------------------------------


class InvalidPhone(ValueError):
    """A phone number was rejected; the message never contains the number."""


def validate_phone(value: str) -> str:
    """Normalise a mainland mobile number to its 11 digits; raise InvalidPhone."""
    # Spaces and hyphens are how people group digits when typing; they carry no meaning.
    number = value.strip().replace(" ", "").replace("-", "")
    if number.startswith("+86"):
        number = number[3:]
    elif number.startswith("86") and len(number) == 13:
        # Without the "+" a leading 86 is a country code only when 11 digits follow it.
        number = number[2:]
    if len(number) != 11 or not _DIGITS.issuperset(number):
        raise InvalidPhone("phone number must be 11 digits, optionally after +86")
    if number[0] != "1" or number[1] not in "3456789":
        raise InvalidPhone("phone number must be a mainland mobile number starting 13-19")
    return number


# --- Masking for display ---------------------------------------------------------------------


def _mask_middle(value: str, keep_start: int, keep_end: int) -> str:
    """Keep the ends of `value` and star the middle; too short a value is starred entirely."""
    if len(value) <= keep_start + keep_end:
        return "*" * len(value)
    hidden = len(value) - keep_start - keep_end
    return value[:keep_start] + "*" * hidden + value[len(value) - keep_end :]


def mask_phone(phone: str) -> str:
    """Mask a phone number for display: 13812341234 -> 138****1234."""
    return _mask_middle(phone, 3, 4)


def mask_resident_id(number: str) -> str:
    """Mask a resident ID for display: first 3 and last 4 kept, same length (110***********123X)."""
    return _mask_middle(number, 3, 4)


def mask_name(name: str) -> str:
    """Mask a display name: first character kept, the rest starred (张三丰 -> 张**)."""
    return name[:1] + "*" * (len(name) - 1) if name else ""


# --- Encryption at rest ----------------------------------------------------------------------


class PersonalDataError(Exception):
    """An encrypted value could not be decrypted: wrong key, wrong context, or tampered."""


_BLOB_VERSION = b"\x01"
_NONCE_BYTES = 12
_TAG_BYTES = 16
_KEY_BYTES = 32
MIN_SECRET_CHARS = 32
# A fixed, public HKDF salt: the secret is already high-entropy, the salt only separates this
# derivation from any other use of the same secret. Changing it changes every derived key.
HKDF_SALT = b"timebank-ledger/personal-data/hkdf-salt/v1"
_INFO_ENCRYPTION = b"timebank-ledger/personal-data/aes-256-gcm/v1"
_INFO_LOOKUP = b"timebank-ledger/personal-data/lookup-hmac-sha256/v1"


def _derive(secret: bytes, info: bytes) -> bytes:
    """One 32-byte key from `secret`; HKDF objects are single-use, so one per key."""
    return HKDF(algorithm=hashes.SHA256(), length=_KEY_BYTES, salt=HKDF_SALT, info=info).derive(
        secret
    )


def generate_secret() -> str:
    """A new settings secret for operators: base64url of 32 random bytes (43 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")


class PersonalDataCipher:
    """AES-256-GCM for personal data at rest, and keyed lookup hashes for duplicate checks.

    Each value is bound to a `context` (e.g. "member:<uuid>:resident_id") as associated data,
    so a ciphertext copied to another row or field fails to decrypt.
    """

    __slots__ = ("_aead", "_hmac_key")

    def __init__(self, key: bytes, hmac_key: bytes) -> None:
        if len(key) != _KEY_BYTES or len(hmac_key) != _KEY_BYTES:
            raise ValueError("personal data keys must be 32 bytes each")
        if hmac.compare_digest(key, hmac_key):
            # One key in two algorithms would tie the lookup hashes to the encryption key.
            raise ValueError("the encryption key and the lookup key must differ")
        self._aead = AESGCM(key)
        self._hmac_key = hmac_key

    @classmethod
    def from_secret(cls, secret: str) -> PersonalDataCipher:
        """Derive both keys from one settings secret (HKDF-SHA256); at least 32 characters."""
        if len(secret) < MIN_SECRET_CHARS:
            raise ValueError(f"the personal data secret must be at least {MIN_SECRET_CHARS} chars")
        raw = secret.encode("utf-8")
        return cls(_derive(raw, _INFO_ENCRYPTION), _derive(raw, _INFO_LOOKUP))

    def __repr__(self) -> str:
        return "PersonalDataCipher(keys=<hidden>)"

    @staticmethod
    def _associated_data(context: str) -> bytes:
        # The version byte is authenticated too, so a blob cannot be relabelled as another format.
        return _BLOB_VERSION + context.encode("utf-8")

    def encrypt(self, plaintext: str, context: str) -> bytes:
        """Encrypt `plaintext` bound to `context`: version byte + 12-byte nonce + ciphertext."""
        # A random 96-bit nonce per value; collisions are negligible below ~2**32 values per key.
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(
            nonce, plaintext.encode("utf-8"), self._associated_data(context)
        )
        return _BLOB_VERSION + nonce + sealed

    def decrypt(self, blob: bytes, context: str) -> str:
        """Decrypt a blob from `encrypt` with the same context; raise PersonalDataError."""
        if len(blob) < 1 + _NONCE_BYTES + _TAG_BYTES:
            raise PersonalDataError("encrypted personal data is truncated")
        if blob[:1] != _BLOB_VERSION:
            raise PersonalDataError("encrypted personal data has an unknown format version")
        nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            plain = self._aead.decrypt(nonce, sealed, self._associated_data(context))
        except InvalidTag:
            raise PersonalDataError(
                "encrypted personal data failed authentication (wrong key or context, or altered)"
            ) from None
        return plain.decode("utf-8")

    def lookup_hash(self, kind: str, normalised_value: str) -> str:
        """Hex HMAC-SHA256 of `kind` NUL `value`, to find duplicates without decrypting."""
        if "\x00" in kind:
            # The NUL separates kind from value; one inside kind would make pairs ambiguous.
            raise ValueError("lookup kind must not contain NUL")
        message = (kind + "\x00" + normalised_value).encode("utf-8")
        return hmac.new(self._hmac_key, message, hashlib.sha256).hexdigest()
