"""Every example value in docs/audit-format.md is what app/audit computes."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import rfc8785

from app.audit import keys, merkle, receipts
from app.audit.checkpoint import Checkpoint, TlogProof, sign_checkpoint
from app.audit.keys import PublishedKey
from app.audit.note import Verifier
from tests.audit.test_receipts import ENTRY_1, ENTRY_2, HASH_1, HASH_2, KEY

DOC = (Path(__file__).resolve().parents[2] / "docs" / "audit-format.md").read_text("utf-8")
ORIGIN = "timebank.example/ledger/xh"


def in_doc(*values: str) -> None:
    for value in values:
        assert value in DOC, value


def test_tree_examples() -> None:
    leaf0 = merkle.leaf_hash(bytes(rfc8785.dumps(ENTRY_1)))
    leaf1 = merkle.leaf_hash(bytes(rfc8785.dumps(ENTRY_2)))
    tree = merkle.MemoryTree()
    tree.extend([leaf0, leaf1])
    root = tree.root()
    assert root == merkle.node_hash(leaf0, leaf1)
    assert tree.inclusion_proof(1) == [leaf0]
    assert tree.consistency_proof(1) == [leaf1]
    in_doc(leaf0.hex(), leaf1.hex(), root.hex(), base64.b64encode(root).decode())
    in_doc(merkle.EMPTY_ROOT.hex())
    assert hashlib.sha256(bytes(rfc8785.dumps(ENTRY_1))).hexdigest() == HASH_1


def test_note_checkpoint_and_bundle_examples() -> None:
    tree = merkle.MemoryTree()
    tree.extend(merkle.leaf_hash(bytes(rfc8785.dumps(e))) for e in (ENTRY_1, ENTRY_2))
    checkpoint = Checkpoint(ORIGIN, 2, tree.root())
    signed = sign_checkpoint(checkpoint, ORIGIN, KEY.private_key)
    verifier = Verifier.from_public_key(ORIGIN, KEY.public_key)
    assert f"{verifier.key_id:08x}" == "9ae4e176"
    bundle = TlogProof(1, tuple(tree.inclusion_proof(1)), signed).text()
    in_doc(verifier.vkey(), checkpoint.text(), signed, bundle)


def test_receipt_and_jwks_examples() -> None:
    iat = int(datetime(2026, 11, 26, 20, 31, 16, tzinfo=UTC).timestamp())
    claims = receipts.receipt_claims(ENTRY_2, HASH_2, iat)
    payload = bytes(rfc8785.dumps(claims))
    token = receipts.sign_receipt(claims, KEY)
    assert len(payload) == 551 and len(token) == 954
    in_doc(payload.decode(), token, f"`iat` {iat}")
    document = keys.jwks(
        [
            PublishedKey(
                KEY.public_key,
                datetime(2026, 1, 1, tzinfo=UTC),
                datetime(2027, 1, 1, tzinfo=UTC),
            )
        ]
    )
    for name, value in document["keys"][0].items():
        in_doc(f'"{name}": "{value}"')
