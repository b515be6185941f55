"""docs/witness.md quotes tests/vectors/witness/vectors.json exactly, its by-hand steps give the
values it states, and the docs that should point to it do."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from tests.independent import c2sp_witness as c2sp

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "witness.md").read_text("utf-8")
VECTORS: dict[str, Any] = json.loads(
    (ROOT / "tests" / "vectors" / "witness" / "vectors.json").read_text("utf-8")
)
WITNESSES = {w["policy_name"]: w for w in VECTORS["witnesses"]}


def blocks() -> list[str]:
    """The fenced code blocks, their indentation removed, each ending in a newline."""
    found = []
    for indent, body in re.findall(r"^( *)```\n(.*?)^\1```$", DOC, flags=re.M | re.S):
        found.append("".join(line[len(indent) :] + "\n" for line in body.splitlines()))
    return found


def cosignature(witness: str, checkpoint: str = "cp8") -> dict[str, Any]:
    return next(
        c
        for c in VECTORS["cosignatures"]
        if c["witness"] == witness and c["checkpoint"] == checkpoint
    )


def test_the_worked_example_quotes_the_vectors() -> None:
    mca, jw = WITNESSES["mca"], WITNESSES["discipline"]
    cosig = cosignature("mca")
    for value in (
        VECTORS["log"]["key_id_hex"],
        VECTORS["checkpoints"]["cp8"]["root_hex"],
        mca["seed_hex"],
        mca["public_key_hex"],
        mca["key_id_hex"],
        jw["vkey"],
        str(cosig["timestamp"]),
        cosig["signature_hex"][24:],
        VECTORS["log"]["origin_sha256_hex"],
    ):
        assert value in DOC, value
    quoted = blocks()
    for block in (
        VECTORS["log"]["vkey"] + "\n",
        VECTORS["checkpoints"]["cp8"]["note"],
        mca["vkey"] + "\n",
        cosig["message_hex"] + "\n",
        cosig["line"],
        VECTORS["checkpoints"]["cp8"]["note"] + cosig["line"] + cosignature("discipline")["line"],
        VECTORS["add_checkpoint_request"],
        VECTORS["policies"]["two-of-three"],
    ):
        assert block in quoted, block


def test_the_by_hand_steps_give_the_stated_values() -> None:
    mca = WITNESSES["mca"]
    cosig = cosignature("mca")
    preimage = mca["name"].encode() + b"\n\x04" + bytes.fromhex(mca["public_key_hex"])
    digest = hashlib.sha256(preimage).hexdigest()
    assert preimage.hex() in DOC and digest in DOC
    assert digest[:8] == mca["key_id_hex"]
    stamp = cosig["timestamp"].to_bytes(8, "big").hex()
    assert f"`{stamp}`" in DOC
    assert cosig["signature_hex"] == mca["key_id_hex"] + stamp + cosig["signature_hex"][24:]
    text = VECTORS["checkpoints"]["cp8"]["text"]
    assert bytes.fromhex(cosig["message_hex"]) == c2sp.cosigned_message(text, cosig["timestamp"])
    assert len(cosig["line"].split(" ")[2].rstrip("\n")) == 104  # as §2.3 says
    origin = VECTORS["log"]["origin"]
    assert hashlib.sha256(origin.encode()).hexdigest() == VECTORS["log"]["origin_sha256_hex"]


def test_the_nested_policy_is_the_vectors_without_comments() -> None:
    nested = next(b for b in blocks() if b.startswith("witness mca") and "quorum both" in b)
    doc_policy = c2sp.parse_policy(nested.encode())
    vector_policy = c2sp.parse_policy(VECTORS["policies"]["nested"].encode())
    assert doc_policy == vector_policy


def test_every_policy_block_in_the_doc_parses() -> None:
    policies = [b for b in blocks() if "quorum " in b and not b.startswith("old ")]
    assert len(policies) == 2
    for block in policies:
        c2sp.parse_policy(block.encode())


def test_the_other_docs_point_here() -> None:
    assert "docs/witness.md" in (ROOT / "README.md").read_text("utf-8")
    audit = (ROOT / "docs" / "audit-format.md").read_text("utf-8")
    section4 = audit[audit.index("## 4. ") : audit.index("## 5. ")]
    assert "docs/witness.md" in section4
