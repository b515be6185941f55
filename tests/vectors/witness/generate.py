"""Write tests/vectors/witness/vectors.json: witness cosignature and policy vectors.

Run from the repository root: `PYTHONPATH=$PWD .venv/bin/python tests/vectors/witness/generate.py`.
Deterministic: every key comes from a seed fixed below and Ed25519 signing is deterministic, so
the output never changes unless the project's code does (tests/independent/test_vectors.py
holds the committed file to this script's output). Keys and notes are made with the project's
own code (`sign_checkpoint`, `cosign`); the expected verdicts are what docs/witness.md says a
verifier must conclude, and the independent checker is held to them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit import merkle
from app.audit.checkpoint import Checkpoint, sign_checkpoint
from app.audit.cosignature import Cosigner, cosign, signed_message, signer_key
from app.audit.note import Verifier, sign_note

OUT = Path(__file__).resolve().with_name("vectors.json")
ORIGIN = "timebank.example/ledger/xh"


# The log's key is RFC 8032 §7.1 TEST 1's, the published example key of docs/audit-format.md.
LOG_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")


def seed(label: str) -> bytes:
    """A fixed 32-byte seed: SHA-256 of a label, so the file needs no secret to regenerate."""
    return hashlib.sha256(f"timebank witness vectors: {label}".encode()).digest()


# (policy name, key name, seed label): the district's three witnesses and one outsider.
WITNESSES = [
    ("mca", "witness.mca.example/xh", "民政局 (civil affairs bureau)"),
    ("discipline", "witness.jw.example/xh", "纪委 (discipline inspection office)"),
    ("foundation", "witness.foundation.example/xh", "partner foundation"),
    ("neighbour", "witness.neighbour.example/pd", "a witness outside every policy"),
]
# Cosignature times (POSIX seconds), one per witness: 2026-12-05 09:30:00Z plus a few seconds.
TIMESTAMPS = {"mca": 1796463000, "discipline": 1796463001, "foundation": 1796463003}
TIMESTAMPS["neighbour"] = 1796463007


def tree(size: int) -> merkle.MemoryTree:
    t = merkle.MemoryTree()
    t.extend(merkle.leaf_hash(f'{{"seq":{i}}}'.encode()) for i in range(1, size + 1))
    return t


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def line_blob(line: str) -> bytes:
    return base64.b64decode(line.rstrip("\n").split(" ")[2])


def with_blob(line: str, blob: bytes) -> str:
    dash, name, _ = line.rstrip("\n").split(" ")
    return f"{dash} {name} {b64(blob)}\n"


def build() -> dict[str, Any]:
    log_private = Ed25519PrivateKey.from_private_bytes(LOG_SEED)
    log = Verifier.from_public_key(ORIGIN, log_private.public_key())
    other_log_private = Ed25519PrivateKey.from_private_bytes(seed("another log key"))
    other_log = Verifier.from_public_key(ORIGIN, other_log_private.public_key())

    privates = {p: Ed25519PrivateKey.from_private_bytes(seed(label)) for p, _, label in WITNESSES}
    names = {p: name for p, name, _ in WITNESSES}
    cosigners = {p: Cosigner.from_public_key(names[p], privates[p].public_key()) for p in names}

    big = tree(8)
    cp = {
        "cp5": Checkpoint(ORIGIN, 5, big.root(5)),
        "cp8": Checkpoint(ORIGIN, 8, big.root(8)),
    }
    notes = {k: sign_checkpoint(c, ORIGIN, log_private) for k, c in cp.items()}
    lines = {
        (p, k): cosign(c.text(), names[p], privates[p], TIMESTAMPS[p])
        for k, c in cp.items()
        for p in names
    }

    def note(base: str, *extra: str) -> str:
        return notes[base] + "".join(extra)

    def line(p: str, k: str = "cp8") -> str:
        return lines[(p, k)]

    # Negative lines, each made from a true one or with the project's own signers.
    flipped = bytearray(line_blob(line("foundation")))
    flipped[4 + 7] ^= 0x01  # the timestamp's last byte: the message changes, the signature not
    # signed-note's plain Ed25519 signature (type 0x01) by the witness's key: another key id.
    as_note_key = sign_note(cp["cp8"].text(), names["foundation"], privates["foundation"])
    type01_line = as_note_key.split("\n\n", 1)[1]
    renamed = line("foundation").replace(names["foundation"], "witness.foundation.example/sh")
    noncanonical_b64 = line("foundation").rstrip("\n")
    # 76 bytes end in one byte and `==`: the character before the padding carries 4 zero bits.
    last = noncanonical_b64[-3]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    noncanonical_b64 = noncanonical_b64[:-3] + alphabet[alphabet.index(last) | 0x01] + "==" + "\n"
    # cosign refuses a timestamp above 2^63 - 1, so this one is signed by hand.
    huge = 2**63
    huge_sig = privates["foundation"].sign(signed_message(cp["cp8"].text(), huge))
    huge_line = with_blob(
        line("foundation"),
        struct.pack(">IQ", cosigners["foundation"].key_id, huge) + huge_sig,
    )

    # The bureau's key wrapped as a plain note key (type 0x01) instead of a cosigner's.
    as_note_vkey = Verifier.from_public_key(names["mca"], privates["mca"].public_key()).vkey()

    def vk(p: str) -> str:
        return cosigners[p].vkey()

    two_of_three = (
        "# Xuhui district: 民政局, 纪委 and a partner foundation; any two of three.\n"
        f"witness mca {vk('mca')} https://witness.mca.example/xh\n"
        f"witness discipline {vk('discipline')}\n"
        f"witness foundation {vk('foundation')}\n"
        "group district 2 mca discipline foundation\n"
        "quorum district\n"
    )
    policies: dict[str, str] = {
        "two-of-three": two_of_three,
        "two-of-three-with-log": f"log {log.vkey()}\n" + two_of_three,
        "other-log-key": f"log {other_log.vkey()}\n" + two_of_three,
        "nested": (
            "\t# the bureau, and one of the other two\n"
            f"witness mca {vk('mca')}\n"
            f"witness discipline {vk('discipline')}\n"
            f"witness foundation {vk('foundation')}\n"
            "group others any discipline foundation\n"
            "  group both all mca others  \n"
            "\n"
            "quorum both\n"
        ),
        "utf8-names": (
            f"witness 民政局 {vk('mca')}\n"
            f"witness 纪委 {vk('discipline')}\n"
            "group 区 all 民政局 纪委\n"
            "quorum 区\n"
        ),
        "single": f"witness mca {vk('mca')}\nquorum mca\n",
        "none": "quorum none\n",
        # Refused policies.
        "forward-reference": (
            f"witness mca {vk('mca')}\n"
            "group district 2 mca discipline\n"
            f"witness discipline {vk('discipline')}\n"
            "quorum district\n"
        ),
        "duplicate-member": (
            f"witness mca {vk('mca')}\n"
            f"witness discipline {vk('discipline')}\n"
            "group district 2 mca mca discipline\n"
            "quorum district\n"
        ),
        "member-of-two-groups": (
            f"witness mca {vk('mca')}\n"
            f"witness discipline {vk('discipline')}\n"
            "group a any mca\n"
            "group b any mca discipline\n"
            "group both all a b\n"
            "quorum both\n"
        ),
        "k-above-n": (
            f"witness mca {vk('mca')}\n"
            f"witness discipline {vk('discipline')}\n"
            "group district 3 mca discipline\n"
            "quorum district\n"
        ),
        "witness-key-type-01": (f"witness mca {as_note_vkey}\nquorum mca\n"),
        "duplicate-witness-key": (
            f"witness mca {vk('mca')}\nwitness mca2 {vk('mca')}\ngroup g any mca mca2\nquorum g\n"
        ),
        "no-quorum": f"witness mca {vk('mca')}\n",
        "two-quorums": f"witness mca {vk('mca')}\nquorum mca\nquorum none\n",
        "none-as-member": f"witness mca {vk('mca')}\ngroup g any mca none\nquorum g\n",
        "undefined-quorum": f"witness mca {vk('mca')}\nquorum district\n",
        "k-zero": f"witness mca {vk('mca')}\ngroup g 0 mca\nquorum g\n",
        "control-character": f"witness mca {vk('mca')}\r\nquorum mca\n",
    }

    all3 = (line("mca"), line("discipline"), line("foundation"))
    cases: list[dict[str, Any]] = []

    def case(
        name: str, why: str, text: str, policy: str, expect: str, cosigned: Sequence[str] = ()
    ) -> None:
        entry: dict[str, Any] = {"name": name, "why": why, "policy": policy, "note": text}
        entry["expect"] = expect
        if expect in ("meets-policy", "below-quorum"):
            entry["cosigned"] = {w: TIMESTAMPS[_policy_key(w)] for w in cosigned}
        cases.append(entry)

    case(
        "all-three",
        "every witness cosigned",
        note("cp8", *all3),
        "two-of-three",
        "meets-policy",
        ["mca", "discipline", "foundation"],
    )
    case(
        "two-of-three",
        "the bureau and the foundation",
        note("cp8", line("mca"), line("foundation")),
        "two-of-three",
        "meets-policy",
        ["mca", "foundation"],
    )
    case(
        "one-of-three",
        "one cosignature is below 2 of 3",
        note("cp8", line("discipline")),
        "two-of-three",
        "below-quorum",
        ["discipline"],
    )
    case("log-only", "no cosignature at all", note("cp8"), "two-of-three", "below-quorum")
    case(
        "unknown-witness-ignored",
        "a witness outside the policy counts for nothing",
        note("cp8", line("neighbour"), line("mca")),
        "two-of-three",
        "below-quorum",
        ["mca"],
    )
    case(
        "with-log-line",
        "the policy's log line names the key that signed",
        note("cp8", line("mca"), line("discipline")),
        "two-of-three-with-log",
        "meets-policy",
        ["mca", "discipline"],
    )
    case(
        "other-log-key",
        "the policy's log is another key: no log signature verifies",
        note("cp8", *all3),
        "other-log-key",
        "refused-note",
    )
    case(
        "nested-met",
        "the bureau and one of the others",
        note("cp5", lines[("mca", "cp5")], lines[("foundation", "cp5")]),
        "nested",
        "meets-policy",
        ["mca", "foundation"],
    )
    case(
        "nested-not-met",
        "two cosignatures, but not the bureau's",
        note("cp5", lines[("discipline", "cp5")], lines[("foundation", "cp5")]),
        "nested",
        "below-quorum",
        ["discipline", "foundation"],
    )
    case(
        "utf8-names",
        "policy names are opaque octets: UTF-8 is fine",
        note("cp8", line("mca"), line("discipline")),
        "utf8-names",
        "meets-policy",
        ["民政局", "纪委"],
    )
    case("quorum-none", "no witness required", note("cp8"), "none", "meets-policy")
    case(
        "single-witness",
        "quorum names a witness",
        note("cp8", line("mca")),
        "single",
        "meets-policy",
        ["mca"],
    )
    case(
        "flipped-timestamp-byte",
        "a known key's line fails: the whole note is refused",
        note("cp8", line("mca"), with_blob(line("foundation"), bytes(flipped))),
        "two-of-three",
        "refused-note",
    )
    case(
        "timestamp-above-2^63-1",
        "a cosignature's timestamp must not exceed 2^63 - 1",
        note("cp8", line("mca"), huge_line),
        "two-of-three",
        "refused-note",
    )
    case(
        "witness-key-type-01",
        "a plain Ed25519 note signature has another key id: ignored",
        note("cp8", line("mca"), type01_line),
        "two-of-three",
        "below-quorum",
        ["mca"],
    )
    case(
        "name-mismatch",
        "same key id, another name: an unknown key, ignored",
        note("cp8", line("mca"), renamed),
        "two-of-three",
        "below-quorum",
        ["mca"],
    )
    case(
        "other-checkpoint",
        "a cosignature of cp5 appended to cp8 does not verify",
        note("cp8", line("mca"), lines[("foundation", "cp5")]),
        "two-of-three",
        "refused-note",
    )
    case(
        "non-canonical-base64",
        "non-zero padding bits: the note is malformed",
        note("cp8", line("mca"), noncanonical_b64),
        "two-of-three",
        "refused-note",
    )
    case(
        "tampered-size",
        "the text changed after cosigning",
        note("cp8", *all3).replace("\n8\n", "\n9\n", 1),
        "two-of-three",
        "refused-note",
    )
    for bad in (
        "forward-reference",
        "duplicate-member",
        "member-of-two-groups",
        "k-above-n",
        "witness-key-type-01",
        "duplicate-witness-key",
        "no-quorum",
        "two-quorums",
        "none-as-member",
        "undefined-quorum",
        "k-zero",
        "control-character",
    ):
        case(
            f"policy-{bad}",
            "the policy itself is refused",
            note("cp8", *all3),
            bad,
            "refused-policy",
        )

    consistency = big.consistency_proof(5, 8)
    return {
        "description": (
            "Witness cosignature (C2SP tlog-cosignature/v1, Ed25519) and tlog-policy vectors; "
            "docs/witness.md explains them. Generated by tests/vectors/witness/generate.py."
        ),
        "log": {
            "origin": ORIGIN,
            "seed_hex": LOG_SEED.hex(),
            "vkey": log.vkey(),
            "key_id_hex": f"{log.key_id:08x}",
            "origin_sha256_hex": hashlib.sha256(ORIGIN.encode()).hexdigest(),
        },
        "witnesses": [
            {
                "policy_name": p,
                "name": names[p],
                "seed_label": label,
                "seed_hex": seed(label).hex(),
                "public_key_hex": _raw(privates[p]).hex(),
                "key_id_hex": f"{cosigners[p].key_id:08x}",
                "vkey": vk(p),
                "skey": signer_key(names[p], privates[p]),
            }
            for p, _, label in WITNESSES
        ],
        "checkpoints": {
            k: {"size": c.size, "root_hex": c.root_hash.hex(), "text": c.text(), "note": notes[k]}
            for k, c in cp.items()
        },
        "cosignatures": [
            {
                "witness": p,
                "checkpoint": k,
                "timestamp": TIMESTAMPS[p],
                "message_hex": signed_message(cp[k].text(), TIMESTAMPS[p]).hex(),
                "signature_hex": line_blob(lines[(p, k)]).hex(),
                "line": lines[(p, k)],
            }
            for (p, k) in lines
        ],
        "add_checkpoint_request": (
            "old 5\n" + "".join(b64(h) + "\n" for h in consistency) + "\n" + notes["cp8"]
        ),
        "policies": policies,
        "cases": cases,
    }


def _policy_key(policy_name: str) -> str:
    return {"民政局": "mca", "纪委": "discipline"}.get(policy_name, policy_name)


def _raw(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes_raw()


def render() -> str:
    """The file's exact text."""
    return json.dumps(build(), ensure_ascii=False, indent=1) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {OUT}\n")
