"""Published test vectors (tests/vectors/README.md names each source)."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import OKPKey

from app.audit import keys, merkle, note
from app.audit.merkle import MemoryTree

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


# RFC 8032 §7.1


@pytest.mark.parametrize("vector", load("rfc8032-ed25519.json")["tests"], ids=lambda v: v["name"])
def test_rfc8032_ed25519(vector: dict[str, str]) -> None:
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vector["secret_key"]))
    message = bytes.fromhex(vector["message"])
    signature = bytes.fromhex(vector["signature"])
    assert raw_public(private.public_key()).hex() == vector["public_key"]
    assert private.sign(message) == signature
    private.public_key().verify(signature, message)
    if vector["name"] == "TEST 1024":
        assert len(message) == 1023
    if vector["name"] == "TEST SHA(abc)":
        assert message == hashlib.sha512(b"abc").digest()


# RFC 8037 appendix A


def test_rfc8037_jwk_and_thumbprint() -> None:
    v = load("rfc8037-appendix-a.json")
    seed = base64.urlsafe_b64decode(v["a1_private_jwk"]["d"] + "=")
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    assert keys.public_jwk(public) == v["a2_public_jwk"]
    assert keys.public_key_from_jwk(v["a2_public_jwk"]) is not None
    assert hashlib.sha256(v["a3_thumbprint_input"].encode()).hexdigest() == v["a3_thumbprint_hex"]
    assert keys.jwk_thumbprint(v["a2_public_jwk"]) == v["a3_thumbprint"]
    assert keys.kid(public) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_rfc8037_a4_jws_with_joserfc() -> None:
    """The RFC's example uses the deprecated alg name EdDSA: joserfc verifies it when asked for
    that name only, with a SecurityWarning (receipts use Ed25519 and never accept EdDSA)."""
    v = load("rfc8037-appendix-a.json")
    public = OKPKey.import_key(v["a2_public_jwk"])
    with pytest.warns(SecurityWarning):
        verified = jws.deserialize_compact(v["a4_jws"], public, algorithms=["EdDSA"])
    assert verified.payload == v["a4_payload"].encode()
    assert verified.protected == json.loads(v["a4_protected_header"])
    private = OKPKey.import_key(v["a1_private_jwk"])
    with pytest.warns(SecurityWarning):
        again = jws.serialize_compact(
            {"alg": "EdDSA"}, v["a4_payload"], private, algorithms=["EdDSA"]
        )
    assert again == v["a4_jws"]  # Ed25519 is deterministic


def test_draft_cfrg_curves_a4_under_alg_ed25519() -> None:
    """The same key and payload under the header {"alg":"Ed25519"} (the RFC 9864 name)."""
    v = load("rfc8037-appendix-a.json")
    d = v["draft00_a4"]
    public = OKPKey.import_key(v["a2_public_jwk"])
    verified = jws.deserialize_compact(d["jws"], public, algorithms=["Ed25519"])
    assert verified.payload == v["a4_payload"].encode()
    assert (
        d["jws"]
        == d["signing_input"]
        + "."
        + base64.urlsafe_b64encode(bytes.fromhex(d["signature_hex"])).rstrip(b"=").decode()
    )
    private = OKPKey.import_key(v["a1_private_jwk"])
    assert (
        jws.serialize_compact(
            json.loads(d["protected_header"]), v["a4_payload"], private, algorithms=["Ed25519"]
        )
        == d["jws"]
    )


# cyberphone/json-canonicalization testdata

JCS_CASES = ["values", "weird", "french", "structures", "unicode", "simpleString"]


@pytest.mark.parametrize("name", JCS_CASES)
def test_jcs_testdata(name: str) -> None:
    source = (VECTORS / "jcs" / "input" / f"{name}.json").read_bytes()
    expected = (VECTORS / "jcs" / "output" / f"{name}.json").read_bytes()
    assert bytes(rfc8785.dumps(json.loads(source))) == expected


def test_jcs_outhex() -> None:
    hex_text = (VECTORS / "jcs" / "outhex" / "simpleString.txt").read_text()
    expected = bytes.fromhex(hex_text.replace(" ", ""))
    source = (VECTORS / "jcs" / "input" / "simpleString.json").read_bytes()
    assert bytes(rfc8785.dumps(json.loads(source))) == expected


def test_jcs_es6_number_samples() -> None:
    lines = (VECTORS / "jcs" / "es6-number-samples.txt").read_text().splitlines()
    assert len(lines) == 7
    for line in lines:
        ieee, expected = line.split(",")
        (value,) = struct.unpack(">d", bytes.fromhex(ieee.rjust(16, "0")))
        assert bytes(rfc8785.dumps(value)) == expected.encode(), line


# transparency-dev/merkle


def merkle_vectors() -> Any:
    return load("merkle/verify_test.json")


def go_tree() -> tuple[list[bytes], MemoryTree]:
    v = merkle_vectors()
    leaves = [merkle.leaf_hash(bytes.fromhex(x)) for x in v["leaves"]]
    tree = MemoryTree()
    tree.extend(leaves)
    return leaves, tree


def test_merkle_roots() -> None:
    leaves, tree = go_tree()
    roots = merkle_vectors()["roots"]
    for size in range(1, 9):
        assert merkle.root_from_leaves(leaves[:size]).hex() == roots[size - 1]
        assert tree.root(size).hex() == roots[size - 1]


def test_merkle_inclusion_proofs() -> None:
    v = merkle_vectors()
    leaves, tree = go_tree()
    for case in v["inclusion_proofs"][1:]:  # the first, leaf 0 of size 0, is not a path
        index, size = case["leaf"] - 1, case["size"]  # the Go file numbers leaves from 1
        proof = [bytes.fromhex(h) for h in case["proof"]]
        root = bytes.fromhex(v["roots"][size - 1])
        assert tree.inclusion_proof(index, size) == proof
        assert merkle.verify_inclusion(leaves[index], index, size, proof, root)
        for probe in corrupt_inclusion(index, size, proof, root, leaves[index], v):
            assert not merkle.verify_inclusion(*probe)


def corrupt_inclusion(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes, v: Any
) -> list[tuple[bytes, int, int, list[bytes], bytes]]:
    """The probes of corruptInclusionProof in proof/verify_test.go."""
    some = bytes.fromhex(v["sha256_some_hash"])
    empty = bytes.fromhex(v["sha256_empty_tree_hash"])
    probes = [
        (leaf, index - 1, size, proof, root),
        (leaf, index + 1, size, proof, root),
        (leaf, index ^ 2, size, proof, root),
        (leaf, index, size * 2, proof, root),
        (leaf, index, size // 2, proof, root),
        (b"WrongLeaf", index, size, proof, root),
        (leaf, index, size, proof, empty),
        (leaf, index, size, proof, some),
        (leaf, index, size, [*proof, b""], root),
        (leaf, index, size, [*proof, root], root),
        (leaf, index, size, [b"", *proof], root),
        (leaf, index, size, [root, *proof], root),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 8]) + wrong[i][1:]
        probes.append((leaf, index, size, wrong, root))
    if proof:
        probes.append((leaf, index, size, proof[:-1], root))
    if len(proof) > 1:
        probes.append((leaf, index, size, [proof[0], some, *proof[1:]], root))
    return probes


def test_merkle_inclusion_bad_probes() -> None:
    v = merkle_vectors()
    some = bytes.fromhex(v["sha256_some_hash"])
    empty = bytes.fromhex(v["sha256_empty_tree_hash"])
    for index, size in v["verify_inclusion_bad_probes"]["probes"]:
        assert not merkle.verify_inclusion(some, index, size, [], b"")
        assert not merkle.verify_inclusion(b"", index, size, [], empty)
        assert not merkle.verify_inclusion(some, index, size, [], empty)
    data_hash = merkle.leaf_hash(b"data")
    assert merkle.verify_inclusion(data_hash, 0, 1, [], data_hash)
    assert not merkle.verify_inclusion(b"", 0, 1, [], data_hash)
    assert not merkle.verify_inclusion(data_hash, 0, 1, [], b"")


def test_merkle_consistency_proofs() -> None:
    v = merkle_vectors()
    _, tree = go_tree()
    for case in v["consistency_proofs"]:
        size1, size2 = case["size1"], case["size2"]
        proof = [bytes.fromhex(h) for h in case["proof"]]
        root1 = bytes.fromhex(v["roots"][size1 - 1])
        root2 = bytes.fromhex(v["roots"][size2 - 1])
        assert tree.consistency_proof(size1, size2) == proof
        assert merkle.verify_consistency(size1, size2, proof, root1, root2)
        if not proof:
            continue
        probes: list[tuple[int, int, list[bytes], bytes, bytes]] = [
            (size1 - 1, size2, proof, root1, root2),
            (size1 + 1, size2, proof, root1, root2),
            (size1 ^ 2, size2, proof, root1, root2),
            (size1, size2 * 2, proof, root1, root2),
            (size1, size2 // 2, proof, root1, root2),
            (size1, size2, proof, b"WrongRoot", root2),
            (size1, size2, proof, root1, b"WrongRoot"),
            (size1, size2, proof, root2, root1),
            (size1, size2, [], root1, root2),
            (size1, size2, [*proof, b""], root1, root2),
            (size1, size2, [*proof, root1], root1, root2),
            (size1, size2, [*proof, root2], root1, root2),
            (size1, size2, [b"", *proof], root1, root2),
            (size1, size2, [root1, *proof], root1, root2),
            (size1, size2, [root2, *proof], root1, root2),
            (size1, size2, [proof[0], *proof], root1, root2),
            (size1, size2, proof[:-1], root1, root2),
        ]
        for i in range(len(proof)):
            wrong = list(proof)
            wrong[i] = bytes([wrong[i][0] ^ 16]) + wrong[i][1:]
            probes.append((size1, size2, wrong, root1, root2))
        for probe in probes:
            assert not merkle.verify_consistency(*probe), probe


def test_merkle_consistency_table() -> None:
    for case in merkle_vectors()["verify_consistency_cases"]["cases"]:
        ok = merkle.verify_consistency(
            case["size1"],
            case["size2"],
            [bytes.fromhex(h) for h in case["proof"]],
            bytes.fromhex(case["root1"]),
            bytes.fromhex(case["root2"]),
        )
        assert ok is not case["want_err"], case


def merkle_testdata(kind: str) -> list[Path]:
    return sorted((VECTORS / "merkle" / "testdata" / kind).rglob("*.json"))


@pytest.mark.parametrize("path", merkle_testdata("inclusion"), ids=lambda p: p.stem)
def test_merkle_testdata_inclusion(path: Path) -> None:
    case = json.loads(path.read_text())
    ok = merkle.verify_inclusion(
        base64.b64decode(case["leafHash"]),
        case["leafIdx"],
        case["treeSize"],
        [base64.b64decode(h) for h in case["proof"] or []],
        base64.b64decode(case["root"]),
    )
    assert ok is not case["wantErr"]


@pytest.mark.parametrize("path", merkle_testdata("consistency"), ids=lambda p: p.stem)
def test_merkle_testdata_consistency(path: Path) -> None:
    case = json.loads(path.read_text())
    ok = merkle.verify_consistency(
        case["size1"],
        case["size2"],
        [base64.b64decode(h) for h in case["proof"] or []],
        base64.b64decode(case["root1"]),
        base64.b64decode(case["root2"]),
    )
    assert ok is not case["wantErr"]


# golang/mod sumdb/note


def test_sumdb_note_keys() -> None:
    v = load("sumdb-note.json")
    peter = note.parse_verifier_key(v["peter_vkey"])
    assert (peter.name, peter.key_id) == ("PeterNeumann", 0xC74F20A3)
    assert peter.vkey() == v["peter_vkey"]
    name, private = note.parse_signer_key(v["peter_skey"])
    assert name == "PeterNeumann"
    assert raw_public(private.public_key()) == raw_public(peter.public_key)
    enoch = note.parse_verifier_key(v["enoch_vkey"])
    assert enoch.key_id == 0xAF0CFE78
    for bad in v["bad_vkeys"]:
        with pytest.raises(note.MalformedNoteError):
            note.parse_verifier_key(bad)


def test_sumdb_note_sign_reproduces_go() -> None:
    v = load("sumdb-note.json")
    name, private = note.parse_signer_key(v["peter_skey"])
    assert note.sign_note(v["text"], name, private) == v["signed_by_peter"]


def test_sumdb_note_open() -> None:
    v = load("sumdb-note.json")
    peter = note.parse_verifier_key(v["peter_vkey"])
    enoch = note.parse_verifier_key(v["enoch_vkey"])
    both = v["text"] + "\n" + v["peter_sig_line"] + v["enoch_sig_line"]
    text, sigs = note.open_note(both, [peter])
    assert text == v["text"]
    assert [(s.name, s.key_id) for s in sigs] == [("PeterNeumann", 0xC74F20A3)]
    assert sigs[0].base64 == v["peter_sig_line"].split(" ")[2].strip()
    _, sigs = note.open_note(both, [peter, enoch])
    assert [s.name for s in sigs] == ["PeterNeumann", "EnochRoot"]
    with pytest.raises(note.UnverifiedNoteError):
        note.open_note(both, [])
