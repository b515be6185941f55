"""The project's note and cosignature code and the independent checker reach the same verdict
on random checkpoints, cosignatures (true and spoiled) and witness sets.

The project's side is `app.audit.note.open_note` with the log's `Verifier` and the witnesses'
`Cosigner`s, then `parse_checkpoint`; the checker's is `c2sp_witness.open_note`, written from
the C2SP texts. Quorums are compared with a model of the policy drawn here: the project's own
policy module did not exist when this was written.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import event, given, settings
from hypothesis import strategies as st

from app.audit.checkpoint import Checkpoint, CheckpointError, parse_checkpoint, sign_checkpoint
from app.audit.cosignature import Cosigner, cosign, parse_cosigner_key, timestamp_of
from app.audit.note import NoteError, Verifier, open_note, parse_verifier_key, sign_note
from tests.independent import c2sp_witness as c2sp


def private(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


ORIGIN = "timebank.example/ledger/xh"
OTHER_ORIGIN = "timebank.example/ledger/pd"
LOG_KEYS = {ORIGIN: private("log xh"), OTHER_ORIGIN: private("log pd")}
LOG = Verifier.from_public_key(ORIGIN, LOG_KEYS[ORIGIN].public_key())
# Five witnesses; the last reuses the first one's name with another key (another key id).
WITNESS_NAMES = [f"witness{i}.example/xh" for i in range(4)] + ["witness0.example/xh"]
WITNESS_KEYS = [private(f"witness {i}") for i in range(5)]
COSIGNERS = [
    Cosigner.from_public_key(n, k.public_key())
    for n, k in zip(WITNESS_NAMES, WITNESS_KEYS, strict=True)
]
MAX_TIMESTAMP = 2**63 - 1
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

LINE_KINDS = [
    *["good"] * 8,
    "flipped",  # one bit of the blob changed
    "other-checkpoint",  # a true cosignature of another checkpoint
    "renamed",  # the same blob under another name
    "type-01",  # the witness's key as a plain note key
    "non-canonical",  # base64 with non-zero padding bits
    "timestamp-above-max",
    "short",  # a blob too short for a cosignature
]
FRAMES = [
    *["as-is"] * 10,
    "no-final-newline",
    "carriage-return",
    "blank-line-between-signatures",
    "hyphen-for-em-dash",
    "no-log-line",
    "text-changed",
]


@dataclass(frozen=True)
class Scenario:
    note: str
    witnesses: tuple[int, ...]  # indexes of the witnesses both sides know
    single_line: frozenset[int]  # witnesses with exactly one line in the note


def blob_of(line: str) -> bytes:
    return base64.b64decode(line.rstrip("\n").split(" ")[2])


def with_blob(line: str, blob: bytes) -> str:
    dash, name, _ = line.rstrip("\n").split(" ")
    return f"{dash} {name} {base64.b64encode(blob).decode()}\n"


def spoiled(kind: str, w: int, text: str, other_text: str, ts: int, bit: int) -> str:
    name, key = WITNESS_NAMES[w], WITNESS_KEYS[w]
    good = cosign(text, name, key, ts)
    if kind == "good":
        return good
    if kind == "flipped":
        blob = bytearray(blob_of(good))
        blob[4 + bit % 72] ^= 1 << (bit % 8)
        return with_blob(good, bytes(blob))
    if kind == "other-checkpoint":
        return cosign(other_text, name, key, ts)
    if kind == "renamed":
        return good.replace(name, name.replace("witness", "wetness"), 1)
    if kind == "type-01":
        return sign_note(text, name, key).split("\n\n", 1)[1]
    if kind == "non-canonical":
        b64 = good.rstrip("\n").split(" ")[2]
        bumped = B64[B64.index(b64[-3]) | (1 + bit % 15)]
        return good.replace(b64, b64[:-3] + bumped + "==") if bumped != b64[-3] else good
    if kind == "timestamp-above-max":
        big = MAX_TIMESTAMP + 1 + bit
        msg = f"cosignature/v1\ntime {big}\n".encode() + text.encode()
        return with_blob(good, blob_of(good)[:4] + struct.pack(">Q", big) + key.sign(msg))
    assert kind == "short"
    return with_blob(good, blob_of(good)[: 4 + bit % 72])


def framed(frame: str, note: str, log_line: str) -> str:
    if frame == "no-final-newline":
        return note[:-1]
    if frame == "carriage-return":
        return note.replace("\n", "\r\n", 1)
    if frame == "blank-line-between-signatures":
        return note + "\n" + log_line
    if frame == "hyphen-for-em-dash":
        return note.replace("— ", "- ", 1)
    if frame == "no-log-line":
        return note.replace(log_line, "", 1)
    if frame == "text-changed":
        return note.replace("\n", "\nx", 1)
    return note


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    origin = draw(st.sampled_from([ORIGIN] * 5 + [OTHER_ORIGIN]))
    extensions = draw(
        st.lists(
            st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1), max_size=2
        )
    )
    checkpoint = Checkpoint(
        origin,
        draw(st.integers(0, 2**63 - 2)),
        draw(st.binary(min_size=32, max_size=32)),
        tuple(extensions),
    )
    other = Checkpoint(origin, checkpoint.size + 1, checkpoint.root_hash, checkpoint.extensions)
    text, other_text = checkpoint.text(), other.text()
    note = sign_checkpoint(checkpoint, origin, LOG_KEYS[origin])
    log_line = note.split("\n\n", 1)[1]
    lines: list[str] = []
    counts = [0] * len(WITNESS_KEYS)
    # One line per witness, spoiled or not; a true one may come with a second true one (a
    # spoiled line beside a true one of the same key is where the two differ: see the end).
    for w in draw(st.lists(st.integers(0, len(WITNESS_KEYS) - 1), max_size=6, unique=True)):
        kind = draw(st.sampled_from(LINE_KINDS))
        ts = draw(st.integers(0, MAX_TIMESTAMP))
        lines.append(spoiled(kind, w, text, other_text, ts, draw(st.integers(0, 2**16))))
        counts[w] += 1
        for _ in range(draw(st.integers(0, 1)) if kind == "good" else 0):
            lines.append(cosign(text, WITNESS_NAMES[w], WITNESS_KEYS[w], draw(st.integers(0, 9))))
            counts[w] += 1
    everything = draw(st.permutations([log_line, *lines]))
    note = text + "\n" + "".join(everything)
    note = framed(draw(st.sampled_from(FRAMES)), note, log_line)
    every = set(range(len(WITNESS_KEYS)))
    known = tuple(sorted(draw(st.one_of(st.just(every), st.sets(st.sampled_from(sorted(every)))))))
    single = frozenset(w for w, n in enumerate(counts) if n == 1)
    return Scenario(note, known, single)


def project_verdict(s: Scenario) -> tuple[str, dict[str, int]]:
    cosigners = [COSIGNERS[w] for w in s.witnesses]
    try:
        text, sigs = open_note(s.note, [LOG, *cosigners])
        parse_checkpoint(text)
    except (NoteError, CheckpointError):
        return "refused", {}
    if not any(sig.name == LOG.name and sig.key_id == LOG.key_id for sig in sigs):
        return "refused", {}
    by_id = {(c.name, c.key_id): i for i, c in zip(s.witnesses, cosigners, strict=True)}
    found = {
        by_id[(g.name, g.key_id)]: timestamp_of(g) for g in sigs if (g.name, g.key_id) in by_id
    }
    return "accepted", {f"w{i}": ts if i in s.single_line else -1 for i, ts in found.items()}


def checker_verdict(s: Scenario) -> tuple[str, dict[str, int]]:
    log = c2sp.parse_vkey(LOG.vkey())
    vkeys = {c2sp.parse_vkey(COSIGNERS[w].vkey()): w for w in s.witnesses}
    try:
        opened = c2sp.open_note(s.note, [log, *vkeys])
        c2sp.parse_checkpoint_text(opened.text)
    except c2sp.Refused:
        return "refused", {}
    if log not in opened.log_keys:
        return "refused", {}
    found = {vkeys[v]: ts for v, ts in opened.cosigned.items()}
    return "accepted", {f"w{i}": ts if i in s.single_line else -1 for i, ts in found.items()}


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_the_same_verdict_on_random_cosigned_checkpoints(s: Scenario) -> None:
    verdict = project_verdict(s)
    assert verdict == checker_verdict(s)
    event(f"{verdict[0]}, {len(verdict[1])} cosigner(s)")


# --- quorums --------------------------------------------------------------------------------


@st.composite
def policies(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A policy file over some witnesses, and the model it was drawn from: each name to either
    a witness index or (k, members)."""
    chosen = draw(st.lists(st.integers(0, 3), min_size=1, max_size=4, unique=True))
    model: dict[str, Any] = {}
    lines = []
    for w in chosen:
        model[f"W{w}"] = w
        lines.append(f"witness W{w} {COSIGNERS[w].vkey()}\n")
    free = sorted(model)  # a name is a member of one group at most
    for g in range(draw(st.integers(0, 3))):
        if not free:
            break
        members = draw(st.lists(st.sampled_from(free), min_size=1, unique=True))
        free = [name for name in free if name not in members] + [f"G{g}"]
        k = draw(st.integers(1, len(members)))
        spelled = draw(
            st.sampled_from(
                [str(k), *(["any"] if k == 1 else []), *(["all"] if k == len(members) else [])]
            )
        )
        model[f"G{g}"] = (k, members)
        lines.append(f"group G{g} {spelled} {' '.join(members)}\n")
    quorum = draw(st.sampled_from([*sorted(model), "none"]))
    lines.append(f"quorum {quorum}\n")
    return "".join(lines), {"names": model, "quorum": quorum}


def model_met(model: dict[str, Any], name: str, cosigned: set[int]) -> bool:
    if name == "none":
        return True
    value = model["names"][name]
    if isinstance(value, int):
        return value in cosigned
    k: int = value[0]
    members: list[str] = value[1]
    return sum(model_met(model, m, cosigned) for m in members) >= k


@settings(max_examples=200, deadline=None)
@given(policies(), st.sets(st.integers(0, 3)))
def test_quorums_on_the_project_s_cosignatures(
    drawn: tuple[str, dict[str, Any]], who: set[int]
) -> None:
    policy_text, model = drawn
    checkpoint = Checkpoint(ORIGIN, 12, hashlib.sha256(b"12").digest())
    note = sign_checkpoint(checkpoint, ORIGIN, LOG_KEYS[ORIGIN])
    note += "".join(
        cosign(checkpoint.text(), WITNESS_NAMES[w], WITNESS_KEYS[w], 1_796_463_000 + w)
        for w in sorted(who)
    )
    verdict, cosigned = c2sp.judge(note, policy_text.encode(), [c2sp.parse_vkey(LOG.vkey())])
    in_policy = {w for w in who if f"W{w}" in model["names"]}
    assert cosigned == {f"W{w}": 1_796_463_000 + w for w in in_policy}
    expected = model_met(model, model["quorum"], in_policy)
    assert verdict == ("meets-policy" if expected else "below-quorum")
    # The project's own reading of each cosigner's vkey is the checker's.
    for w in in_policy:
        vkey = COSIGNERS[w].vkey()
        assert parse_cosigner_key(vkey) == COSIGNERS[w]
        assert c2sp.parse_vkey(vkey).key_id == struct.pack(">I", COSIGNERS[w].key_id)


# --- the vectors, through the project's code -------------------------------------------------

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "witness" / "vectors.json").read_text(
        "utf-8"
    )
)


@pytest.mark.parametrize(
    "case",
    [c for c in VECTORS["cases"] if c["expect"] != "refused-policy"],
    ids=lambda c: c["name"],
)
def test_the_project_opens_each_vector_note_as_the_checker_does(case: dict[str, Any]) -> None:
    witnesses = [parse_cosigner_key(w["vkey"]) for w in VECTORS["witnesses"]]
    log = parse_verifier_key(VECTORS["log"]["vkey"])
    checker_keys = [c2sp.parse_vkey(w["vkey"]) for w in VECTORS["witnesses"]]
    checker_log = c2sp.parse_vkey(VECTORS["log"]["vkey"])
    try:
        _, sigs = open_note(case["note"], [log, *witnesses])
        project = {s.name: timestamp_of(s) for s in sigs if s.name != log.name}
    except NoteError:
        project = None
    try:
        opened = c2sp.open_note(case["note"], [checker_log, *checker_keys])
        checker = {k.name: ts for k, ts in opened.cosigned.items()}
    except c2sp.Refused:
        checker = None
    assert project == checker


# --- where golang.org/x/mod/sumdb/note differs from signed-note ------------------------------


def test_a_second_bad_line_from_a_known_key_refuses_the_note() -> None:
    """sumdb/note checks only the first line of a key seen twice; signed-note says a known
    key's line MUST be verified: both implementations here refuse the note."""
    checkpoint = Checkpoint(ORIGIN, 3, bytes(32))
    note = sign_checkpoint(checkpoint, ORIGIN, LOG_KEYS[ORIGIN])
    good = cosign(checkpoint.text(), WITNESS_NAMES[1], WITNESS_KEYS[1], 100)
    bad = with_blob(good, blob_of(good)[:-1] + bytes([blob_of(good)[-1] ^ 1]))
    with pytest.raises(c2sp.Refused):
        c2sp.open_note(
            note + good + bad, [c2sp.parse_vkey(LOG.vkey()), c2sp.parse_vkey(COSIGNERS[1].vkey())]
        )
    with pytest.raises(NoteError):
        open_note(note + good + bad, [LOG, COSIGNERS[1]])
