"""Personal data: resident ID and phone validation, masking, encryption and lookup hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import date

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from app.identity.personal import (
    HKDF_SALT,
    InvalidPhone,
    InvalidResidentId,
    PersonalDataCipher,
    PersonalDataError,
    ResidentId,
    generate_secret,
    mask_name,
    mask_phone,
    mask_resident_id,
    resident_id_check_char,
    validate_phone,
    validate_resident_id,
)

TODAY = date(2025, 6, 1)
CHECK_CHARS = "0123456789X"


def check_char(body: str) -> str:
    """ISO 7064 MOD 11-2 written out independently of the module under test."""
    weights = [2 ** (17 - i) % 11 for i in range(17)]
    total = sum(int(d) * w for d, w in zip(body, weights, strict=True))
    return CHECK_CHARS[(12 - total % 11) % 11]


def with_check(body: str) -> str:
    return body + check_char(body)


def rejected(value: str, today: date = TODAY) -> InvalidResidentId:
    with pytest.raises(InvalidResidentId) as caught:
        validate_resident_id(value, today)
    # The message is safe to log and return: it never repeats the number.
    if value.strip():
        assert value.strip() not in str(caught.value)
        assert value.strip().upper() not in str(caught.value)
    return caught.value


# --- resident IDs ----------------------------------------------------------------------------


def test_weights_match_the_standard() -> None:
    assert [2 ** (17 - i) % 11 for i in range(17)] == [
        7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2,
    ]  # fmt: skip


def test_published_sample_is_valid() -> None:
    rid = validate_resident_id("11010519491231002X", TODAY)
    assert rid == ResidentId("11010519491231002X", date(1949, 12, 31), "female")


@pytest.mark.parametrize(
    ("body", "birth", "sex"),
    [
        ("31011519851120153", date(1985, 11, 20), "male"),
        ("52010220000229762", date(2000, 2, 29), "female"),
        ("65010219991231999", date(1999, 12, 31), "male"),
        ("81000020250601000", TODAY, "female"),  # born today is not in the future
        ("12345619000101001", date(1900, 1, 1), "male"),
    ],
)
def test_hand_picked_bodies_with_computed_check(body: str, birth: date, sex: str) -> None:
    number = with_check(body)
    rid = validate_resident_id(number, TODAY)
    assert (rid.number, rid.birth_date, rid.sex) == (number, birth, sex)
    assert resident_id_check_char(body) == check_char(body)


def test_lower_case_x_and_surrounding_spaces_are_normalised() -> None:
    assert validate_resident_id(" 11010519491231002x\n", TODAY).number == "11010519491231002X"


@pytest.mark.parametrize(
    "value", ["", "11010519491231002", "11010519491231002X0", "11010519491231002X 2"]
)
def test_wrong_length(value: str) -> None:
    assert rejected(value).part == "length"


@pytest.mark.parametrize(
    "value",
    [
        "1101051949123100AX",  # letter in the body
        "11010519491231002Y",  # check character that is not a digit or X
        "X10105194912310020",  # X anywhere but last
        "１10105194912310 2X",  # full-width digit and an inner space
        "110105-9491231002X",
    ],
)
def test_wrong_characters(value: str) -> None:
    assert rejected(value).part == "characters"


@pytest.mark.parametrize("first", ["0", "9"])
def test_area_code_must_start_with_a_region_digit(first: str) -> None:
    assert rejected(with_check(first + "1010519491231002")).part == "area"


@pytest.mark.parametrize(
    "birth",
    [
        "19490230",  # February 30
        "20010229",  # not a leap year
        "19491301",  # month 13
        "19490000",
        "20250602",  # tomorrow
        "20990101",
        "18991231",  # before 1900
    ],
)
def test_bad_birth_dates(birth: str) -> None:
    error = rejected(with_check("110105" + birth + "002"))
    assert error.part == "birth_date"
    assert "birth date" in str(error)


def test_old_published_sample_is_refused_for_its_birth_year() -> None:
    # GB 11643's second sample has a correct check digit but a birth in 1880.
    assert check_char("44052418800101001") == "4"
    assert rejected("440524188001010014").part == "birth_date"


@pytest.mark.parametrize("wrong", sorted(set(CHECK_CHARS) - {"X"}))
def test_wrong_check_character(wrong: str) -> None:
    error = rejected("11010519491231002" + wrong)
    assert error.part == "check"
    assert "check" in str(error)


def test_repr_masks_the_number() -> None:
    rid = validate_resident_id("11010519491231002X", TODAY)
    assert "11010519491231002X" not in repr(rid)
    assert "19491231" not in repr(rid)
    assert "110***********002X" in repr(rid)


def test_check_char_helper_rejects_malformed_bodies() -> None:
    with pytest.raises(ValueError):
        resident_id_check_char("1101051949123100")
    with pytest.raises(ValueError):
        resident_id_check_char("1101051949123100A")


bodies = st.builds(
    lambda area, born, seq: f"{area}{born:%Y%m%d}{seq:03d}",
    st.integers(100_000, 899_999),
    st.dates(min_value=date(1900, 1, 1), max_value=TODAY),
    st.integers(0, 999),
)


@given(bodies)
def test_exactly_one_check_character_validates(body: str) -> None:
    right = check_char(body)
    rid = validate_resident_id(body + right.lower(), TODAY)
    assert rid.number == body + right
    assert rid.birth_date == date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    assert rid.sex == ("male" if int(body[16]) % 2 else "female")
    for wrong in CHECK_CHARS.replace(right, ""):
        with pytest.raises(InvalidResidentId) as caught:
            validate_resident_id(body + wrong, TODAY)
        assert caught.value.part == "check"


# --- phones ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "13812341234",
        "+8613812341234",
        "8613812341234",
        " +86 138 1234 1234 ",
        "138-1234-1234",
    ],
)
def test_valid_phones_are_normalised(value: str) -> None:
    assert validate_phone(value) == "13812341234"


@pytest.mark.parametrize("second", list("3456789"))
def test_every_mobile_prefix(second: str) -> None:
    assert validate_phone(f"1{second}012345678") == f"1{second}012345678"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "1381234123",  # 10 digits
        "138123412345",  # 12 digits
        "12812341234",  # 12x is not a mobile prefix
        "10012341234",
        "23812341234",
        "1381234123a",
        "+8612812341234",
        "+85213812341234",  # Hong Kong prefix
        "861381234123",  # 86 + 10 digits
        "０13812341234",
    ],
)
def test_invalid_phones(value: str) -> None:
    with pytest.raises(InvalidPhone) as caught:
        validate_phone(value)
    if value:
        assert value not in str(caught.value)
    assert isinstance(caught.value, ValueError)


# --- masking ---------------------------------------------------------------------------------


def test_mask_phone() -> None:
    assert mask_phone("13812341234") == "138****1234"


def test_mask_resident_id() -> None:
    masked = mask_resident_id("11010519491231002X")
    assert masked == "110***********002X"
    assert len(masked) == 18


def test_masks_of_short_values_hide_everything() -> None:
    assert mask_phone("1234567") == "*******"
    assert mask_resident_id("") == ""


@pytest.mark.parametrize(
    ("name", "masked"),
    [("张三丰", "张**"), ("张三", "张*"), ("张", "张"), ("", ""), ("Alice", "A****")],
)
def test_mask_name(name: str, masked: str) -> None:
    assert mask_name(name) == masked


# --- encryption ------------------------------------------------------------------------------

KEY = bytes(range(32))
HMAC_KEY = bytes(range(32, 64))
CONTEXT = "member:0b7c1e1a-3f1f-4c7e-9a55-6f0c4d6f1a2b:resident_id"


@pytest.fixture
def cipher() -> PersonalDataCipher:
    return PersonalDataCipher(KEY, HMAC_KEY)


@pytest.mark.parametrize("plaintext", ["11010519491231002X", "张三丰", ""])
def test_round_trip(cipher: PersonalDataCipher, plaintext: str) -> None:
    blob = cipher.encrypt(plaintext, CONTEXT)
    assert blob[:1] == b"\x01"
    assert len(blob) == 1 + 12 + len(plaintext.encode()) + 16
    assert plaintext.encode() not in blob or plaintext == ""
    assert cipher.decrypt(blob, CONTEXT) == plaintext


def test_every_flipped_byte_is_detected(cipher: PersonalDataCipher) -> None:
    blob = cipher.encrypt("13812341234", CONTEXT)
    for i in range(len(blob)):
        tampered = bytearray(blob)
        tampered[i] ^= 0x01
        with pytest.raises(PersonalDataError):
            cipher.decrypt(bytes(tampered), CONTEXT)


def test_wrong_context_fails(cipher: PersonalDataCipher) -> None:
    blob = cipher.encrypt("13812341234", CONTEXT)
    with pytest.raises(PersonalDataError, match="authentication"):
        cipher.decrypt(blob, CONTEXT.replace("resident_id", "phone"))


def test_wrong_key_fails(cipher: PersonalDataCipher) -> None:
    blob = cipher.encrypt("13812341234", CONTEXT)
    other = PersonalDataCipher(HMAC_KEY, KEY)
    with pytest.raises(PersonalDataError):
        other.decrypt(blob, CONTEXT)


def test_unknown_version_and_truncation(cipher: PersonalDataCipher) -> None:
    blob = cipher.encrypt("13812341234", CONTEXT)
    with pytest.raises(PersonalDataError, match="version"):
        cipher.decrypt(b"\x02" + blob[1:], CONTEXT)
    with pytest.raises(PersonalDataError, match="truncated"):
        cipher.decrypt(blob[: 1 + 12 + 15], CONTEXT)
    with pytest.raises(PersonalDataError):
        cipher.decrypt(b"", CONTEXT)


def test_nonces_are_fresh(cipher: PersonalDataCipher) -> None:
    blobs = [cipher.encrypt("same", CONTEXT) for _ in range(50)]
    assert len({blob[1:13] for blob in blobs}) == 50
    assert len(set(blobs)) == 50


def test_lookup_hash_is_stable_and_key_dependent(cipher: PersonalDataCipher) -> None:
    digest = cipher.lookup_hash("resident_id", "11010519491231002X")
    assert len(digest) == 64
    assert int(digest, 16) >= 0
    assert PersonalDataCipher(KEY, HMAC_KEY).lookup_hash("resident_id", "11010519491231002X") == (
        digest
    )
    # Only the lookup key matters, not the encryption key.
    other_aes = PersonalDataCipher(bytes(32), HMAC_KEY)
    assert other_aes.lookup_hash("resident_id", "11010519491231002X") == digest
    assert PersonalDataCipher(KEY, bytes(32)).lookup_hash("resident_id", "x") != (
        cipher.lookup_hash("resident_id", "x")
    )
    assert cipher.lookup_hash("phone", "11010519491231002X") != digest
    assert cipher.lookup_hash("resident_id", "11010519491231002x") != digest


def test_lookup_hash_matches_hmac_definition(cipher: PersonalDataCipher) -> None:
    expected = hmac.new(HMAC_KEY, b"phone\x0013812341234", hashlib.sha256).hexdigest()
    assert cipher.lookup_hash("phone", "13812341234") == expected


def test_lookup_kind_cannot_contain_the_separator(cipher: PersonalDataCipher) -> None:
    with pytest.raises(ValueError):
        cipher.lookup_hash("a\x00b", "c")


def test_keys_must_be_32_distinct_bytes() -> None:
    with pytest.raises(ValueError):
        PersonalDataCipher(KEY[:16], HMAC_KEY)
    with pytest.raises(ValueError):
        PersonalDataCipher(KEY, HMAC_KEY + b"\x00")
    with pytest.raises(ValueError):
        PersonalDataCipher(KEY, KEY)


def test_repr_hides_keys(cipher: PersonalDataCipher) -> None:
    text = repr(cipher) + str(cipher)
    for secret in (KEY, HMAC_KEY):
        assert secret.hex() not in text
        assert repr(secret) not in text
    secret_text = generate_secret()
    assert secret_text not in repr(PersonalDataCipher.from_secret(secret_text))


def test_from_secret_is_deterministic() -> None:
    secret = "correct horse battery staple, and then some more"
    first = PersonalDataCipher.from_secret(secret)
    second = PersonalDataCipher.from_secret(secret)
    assert second.decrypt(first.encrypt("张三", CONTEXT), CONTEXT) == "张三"
    assert first.lookup_hash("phone", "13812341234") == second.lookup_hash("phone", "13812341234")
    other = PersonalDataCipher.from_secret(secret + "!")
    with pytest.raises(PersonalDataError):
        other.decrypt(first.encrypt("张三", CONTEXT), CONTEXT)
    assert other.lookup_hash("phone", "13812341234") != first.lookup_hash("phone", "13812341234")


def test_from_secret_derives_distinct_keys_with_hkdf() -> None:
    secret = generate_secret()
    cipher = PersonalDataCipher.from_secret(secret)
    lookup_key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=HKDF_SALT,
        info=b"timebank-ledger/personal-data/lookup-hmac-sha256/v1",
    ).derive(secret.encode())
    expected = hmac.new(lookup_key, b"phone\x0013812341234", hashlib.sha256).hexdigest()
    assert cipher.lookup_hash("phone", "13812341234") == expected


def test_from_secret_refuses_short_secrets() -> None:
    with pytest.raises(ValueError, match="32"):
        PersonalDataCipher.from_secret("x" * 31)
    PersonalDataCipher.from_secret("x" * 32)


def test_generate_secret() -> None:
    secrets = {generate_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert len(secret) == 43
        assert "=" not in secret
        assert len(base64.urlsafe_b64decode(secret + "=")) == 32
        PersonalDataCipher.from_secret(secret)
