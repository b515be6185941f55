"""Three test witnesses for the browser tests of witness policies (issue 24): their keys,
a 2-of-3 policy of them, and checkpoint notes they cosign (app.audit.cosignature.cosign)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit.cosignature import Cosigner, cosign, with_signatures

T0 = 1_790_000_000  # the witnesses' timestamps: 2026-09-21, one second apart


# --- three witnesses, and one nobody listed --------------------------------------------------


@dataclass(frozen=True)
class Witness:
    label: str  # its name in the policy
    name: str  # its key name (the cosignature line's)
    key: Ed25519PrivateKey

    @property
    def cosigner(self) -> Cosigner:
        return Cosigner.from_public_key(self.name, self.key.public_key())

    @property
    def vkey(self) -> str:
        return self.cosigner.vkey()

    def line(self, text: str, at: int) -> str:
        return cosign(text, self.name, self.key, at)


def witness(label: str, name: str, seed: int) -> Witness:
    return Witness(label, name, Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))


MCA = witness("mca", "witness.mca.example/w1", 1)  # 民政局
DISCIPLINE = witness("discipline", "witness.jiwei.example/w1", 2)  # 纪委
FOUNDATION = witness("foundation", "witness.foundation.example/w1", 3)
STRANGER = witness("stranger", "witness.stranger.example/w1", 4)
THREE = (MCA, DISCIPLINE, FOUNDATION)


def policy(
    *extra: str, quorum: str = "district", members: str = "2 mca discipline foundation"
) -> str:
    """A policy of the three witnesses (comments, blank lines and tabs as the text allows)."""
    lines = [
        "# 幸福街道时间银行：见证策略",
        "",
        *(f"witness {w.label}\t{w.vkey}" for w in THREE),
        *extra,
        f"group district {members}",
        f"  quorum {quorum}  ",
    ]
    return "".join(f"{line}\n" for line in lines)


TWO_OF_THREE = policy()


def note_of(export: str) -> str:
    return str(json.loads(export[:-1].split("\n")[-1])["checkpoint"]["note"])


def text_of(note: str) -> str:
    return note[: note.index("\n\n") + 1]


def with_note(export: str, note: str) -> str:
    """The export with its trailer's checkpoint note replaced."""
    lines = export[:-1].split("\n")
    trailer = json.loads(lines[-1])
    trailer["checkpoint"]["note"] = note
    return "".join(f"{line}\n" for line in [*lines[:-1], json.dumps(trailer)])


def cosigned(note: str, *witnesses: Witness) -> str:
    text = text_of(note)
    return with_signatures(note, [w.line(text, T0 + i) for i, w in enumerate(witnesses)])


def corrupted(line: str, at: int) -> str:
    """A cosignature line with byte `at` of its blob (key id 0–3, timestamp 4–11, signature
    12–75) flipped."""
    dash, name, b64 = line.rstrip("\n").split(" ")
    raw = bytearray(base64.b64decode(b64))
    raw[at] ^= 1
    return f"{dash} {name} {base64.b64encode(bytes(raw)).decode()}\n"
