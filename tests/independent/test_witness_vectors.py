"""tests/vectors/witness/vectors.json is the generator's output, and the independent checker
reaches every verdict it names."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.independent import c2sp_witness as c2sp

DIR = Path(__file__).resolve().parents[1] / "vectors" / "witness"
VECTORS: dict[str, Any] = json.loads((DIR / "vectors.json").read_text("utf-8"))


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("witness_vectors_generate", DIR / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_file_is_the_generators_output() -> None:
    assert (DIR / "vectors.json").read_text("utf-8") == generator().render()


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_the_independent_checker_reaches_each_verdict(case: dict[str, Any]) -> None:
    log_key = c2sp.parse_vkey(VECTORS["log"]["vkey"])
    policy = VECTORS["policies"][case["policy"]].encode()
    verdict, cosigned = c2sp.judge(case["note"], policy, [log_key])
    assert verdict == case["expect"]
    assert cosigned == case.get("cosigned", {})


def test_every_cosignature_is_its_message_signed_at_its_time() -> None:
    witnesses = {w["policy_name"]: w for w in VECTORS["witnesses"]}
    for cosig in VECTORS["cosignatures"]:
        w = witnesses[cosig["witness"]]
        vkey = c2sp.parse_vkey(w["vkey"])
        assert vkey.public_key.hex() == w["public_key_hex"]
        assert vkey.key_id.hex() == w["key_id_hex"]
        text = VECTORS["checkpoints"][cosig["checkpoint"]]["text"]
        message = bytes.fromhex(cosig["message_hex"])
        assert message == c2sp.cosigned_message(text, cosig["timestamp"])
        blob = bytes.fromhex(cosig["signature_hex"])
        assert blob[:4] == vkey.key_id
        assert int.from_bytes(blob[4:12], "big") == cosig["timestamp"]
        vkey.ed25519.verify(blob[12:], message)  # raises if it does not verify
        note = VECTORS["checkpoints"][cosig["checkpoint"]]["note"] + cosig["line"]
        opened = c2sp.open_note(note, [vkey])
        assert opened.cosigned == {vkey: cosig["timestamp"]}


def test_the_seeds_give_the_keys() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    for w in VECTORS["witnesses"]:
        public = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(w["seed_hex"])).public_key()
        assert public.public_bytes_raw().hex() == w["public_key_hex"]
    log = VECTORS["log"]
    public = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(log["seed_hex"])).public_key()
    assert c2sp.parse_vkey(log["vkey"]).public_key == public.public_bytes_raw()


def project_verdict(note: str, policy_file: str) -> tuple[str, dict[str, int]]:
    """The project's reading (app.audit.witness_policy) in the vectors' four verdicts."""
    from app.audit.note import parse_verifier_key
    from app.audit.witness_policy import PolicyError, parse_policy

    try:
        policy = parse_policy(policy_file.encode())
    except PolicyError:
        return "refused-policy", {}
    verdict = policy.check(note, [parse_verifier_key(VECTORS["log"]["vkey"])])
    cosigned = {c.witness: c.timestamp for c in verdict.cosigned}
    if verdict.met:
        return "meets-policy", cosigned
    if verdict.reason is not None and verdict.reason.startswith("the witness quorum is not met"):
        return "below-quorum", cosigned
    return "refused-note", {}


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_the_project_reaches_each_verdict_too(case: dict[str, Any]) -> None:
    """app.audit.witness_policy, which `timebank audit verify --witness-policy` uses, agrees
    with the independent checker on every case of the vectors."""
    verdict, cosigned = project_verdict(case["note"], VECTORS["policies"][case["policy"]])
    assert verdict == case["expect"]
    assert cosigned == case.get("cosigned", {})
