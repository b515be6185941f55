"""The independent checker against values published by others, and the tlog-policy rules one
by one: it is only worth holding the project to if it is right itself."""

from __future__ import annotations

import base64
import itertools
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.independent import c2sp_witness as c2sp

# C2SP/C2SP signed-note.md @ b3a911e3f2bd75a6ccdd0bf04e9e1912961c439a, "Verifier keys: Example".
SIGNED_NOTE_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SIGNED_NOTE = (
    "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2O"
    "NncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)
# transparency-dev/formats note/note_cosigv1_test.go @ 091ce41666c09683aa9350785e572be27f0c026d:
# TestCoSigV1NewVerifier's accepted Ed25519 keys (a 0x04 cosigner key, and a 0x01 key whose
# base64 holds a `+`) and refused ones, and TestCosignatureTimestamp's "works" signature.
FORMATS_COSIGNER_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
FORMATS_NOTE_VKEY = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"
FORMATS_REFUSED = [
    "bananas.sigstore.dev+12344556",
    "rekor.sigstore.dev+12345678+THIS_IS_NOT_BASE64!",
    "rekor.sigstore.dev+12345678+AwEB",
]
FORMATS_COSIGNATURE = (
    "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJ"
    "XORmnFBOBA=="
)
FORMATS_TIMESTAMP = 1727964367


def test_published_keys_parse_with_their_key_ids() -> None:
    cosigner = c2sp.parse_vkey(FORMATS_COSIGNER_VKEY)
    assert (cosigner.sig_type, cosigner.key_id.hex()) == (0x04, "da77ade7")
    assert c2sp.parse_vkey(FORMATS_NOTE_VKEY).key_id.hex() == "7997405c"
    for bad in FORMATS_REFUSED:
        with pytest.raises(c2sp.Refused):
            c2sp.parse_vkey(bad)
    # The same key under another key id ("incorrect keyhash" in the Go test).
    with pytest.raises(c2sp.Refused):
        c2sp.parse_vkey("remora.n621.de+00000000+" + FORMATS_COSIGNER_VKEY.split("+", 2)[2])


def test_the_signed_note_example_opens() -> None:
    opened = c2sp.open_note(SIGNED_NOTE, [c2sp.parse_vkey(SIGNED_NOTE_VKEY)])
    assert opened.text == "This is an example message.\n"
    assert [k.name for k in opened.log_keys] == ["example.com/foo"]
    tampered = SIGNED_NOTE.replace("example message", "example massage")
    with pytest.raises(c2sp.Refused, match="bad-signature"):
        c2sp.open_note(tampered, [c2sp.parse_vkey(SIGNED_NOTE_VKEY)])


def test_a_published_cosignature_states_its_timestamp() -> None:
    raw = c2sp.b64decode_strict(FORMATS_COSIGNATURE)
    assert len(raw) == 4 + 8 + 64
    assert struct.unpack(">Q", raw[4:12]) == (FORMATS_TIMESTAMP,)


WITNESS = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
LOG = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"


def vkey(name: str, sig_type: int, key: Ed25519PrivateKey) -> str:
    public = key.public_key().public_bytes_raw()
    key_id = c2sp.key_id(name, sig_type, public).hex()
    return f"{name}+{key_id}+{base64.b64encode(bytes([sig_type]) + public).decode()}"


def line(name: str, key_id: bytes, blob: bytes) -> str:
    return f"— {name} {base64.b64encode(key_id + blob).decode()}\n"


def note_with(*lines: str) -> str:
    log_id = c2sp.key_id("example.com/behind-the-sofa", 1, LOG.public_key().public_bytes_raw())
    own = line("example.com/behind-the-sofa", log_id, LOG.sign(TEXT.encode()))
    return TEXT + "\n" + own + "".join(lines)


def test_a_cosignature_is_made_exactly_as_the_text_says() -> None:
    # Built here by hand from tlog-cosignature's "Ed25519 signed message".
    w = c2sp.parse_vkey(vkey("witness.example/w1", 0x04, WITNESS))
    message = b"cosignature/v1\ntime 1679315147\n" + TEXT.encode()
    assert c2sp.cosigned_message(TEXT, 1679315147) == message
    cosig = line(w.name, w.key_id, struct.pack(">Q", 1679315147) + WITNESS.sign(message))
    log = c2sp.parse_vkey(vkey("example.com/behind-the-sofa", 0x01, LOG))
    opened = c2sp.open_note(note_with(cosig), [log, w])
    assert opened.cosigned == {w: 1679315147}
    assert c2sp.parse_checkpoint_text(opened.text).size == 20852163
    # Signed at another time than it states: refused, as is any other change.
    wrong = line(w.name, w.key_id, struct.pack(">Q", 1679315148) + WITNESS.sign(message))
    with pytest.raises(c2sp.Refused, match="bad-signature"):
        c2sp.open_note(note_with(wrong), [log, w])
    # The same bytes under the witness's 0x01 key id: an unknown key, ignored.
    as_note = c2sp.key_id(w.name, 0x01, w.public_key)
    opened = c2sp.open_note(note_with(line(w.name, as_note, b"\0" * 72)), [log, w])
    assert opened.cosigned == {}


def policy_of(n: int, groups: str, quorum: str) -> tuple[bytes, list[c2sp.VKey]]:
    keys = [Ed25519PrivateKey.from_private_bytes(bytes([i + 7]) * 32) for i in range(n)]
    vkeys = [vkey(f"w{i}.example", 0x04, k) for i, k in enumerate(keys)]
    text = "".join(f"witness W{i} {v}\n" for i, v in enumerate(vkeys)) + groups + quorum
    return text.encode(), [c2sp.parse_vkey(v) for v in vkeys]


def test_the_tlog_policy_example_quorum() -> None:
    # tlog-policy.md's example: 2 of the X witnesses, and any of the Y witnesses.
    data, _ = policy_of(
        6,
        "group X 2 W0 W1 W2\ngroup Y any W3 W4 W5\ngroup X-and-Y all X Y\n",
        "quorum X-and-Y\n",
    )
    policy = c2sp.parse_policy(data)
    for k in range(7):
        for chosen in itertools.combinations(range(6), k):
            xs = sum(i < 3 for i in chosen)
            ys = sum(i >= 3 for i in chosen)
            cosigned = {f"W{i}".encode() for i in chosen}
            assert c2sp.quorum_met(policy, cosigned) == (xs >= 2 and ys >= 1)


@pytest.mark.parametrize(
    ("groups", "quorum"),
    [
        ("group G 2 W0 W1 W2\n", "quorum H\n"),  # undefined
        ("group G 2 W0 W9\n", "quorum G\n"),  # undefined member
        ("group G 0 W0\n", "quorum G\n"),  # k < 1
        ("group G 3 W0 W1\n", "quorum G\n"),  # k > n
        ("group G x W0\n", "quorum G\n"),  # not a threshold
        ("group G any\n", "quorum G\n"),  # no member
        ("group G any W0 W0\n", "quorum G\n"),  # member twice
        ("group G any W0\ngroup H any W0 W1\n", "quorum H\n"),  # a member of two groups
        ("group G any W0\ngroup G any W1\n", "quorum G\n"),  # defined twice
        ("group W0 any W1\n", "quorum W0\n"),  # a witness's name reused
        ("group none any W0\n", "quorum none\n"),  # `none` is predefined
        ("group G any W0 none\n", "quorum G\n"),  # `none` is no member
        ("", "quorum W0\nquorum W1\n"),  # two quorums
        ("", ""),  # no quorum
        ("", "quorum W0 W1\n"),
        ("lag x\n", "quorum W0\n"),  # unknown keyword
        ("group G any W0\x0b\n", "quorum G\n"),  # a control character
    ],
)
def test_policies_the_text_rules_out(groups: str, quorum: str) -> None:
    data, _ = policy_of(3, groups, quorum)
    with pytest.raises(c2sp.Refused, match="bad-policy"):
        c2sp.parse_policy(data)


def test_what_a_policy_file_may_hold() -> None:
    data, _ = policy_of(
        3,
        "  # a comment\n\t\n\tgroup\tG  any W0   W1\t\n# tab, spaces, ünïcode: fine\n",
        "quorum G\n",
    )
    policy = c2sp.parse_policy(data + b"group late all W2\n")
    assert c2sp.quorum_met(policy, {b"W1"}) and not c2sp.quorum_met(policy, {b"W2"})
    assert c2sp.quorum_met(c2sp.parse_policy(b"quorum none\n"), set())
    # A last line without its newline reads as if it had one.
    assert c2sp.parse_policy(b"quorum none").quorum is None
