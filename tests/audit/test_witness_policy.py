"""tlog-policy files: parsed as the C2SP text says (errors naming the line), and the quorum
evaluated over the witnesses whose cosignatures verify, checked against a brute-force reading
of the group tree."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from app.audit.checkpoint import Checkpoint, sign_checkpoint
from app.audit.cosignature import Cosigner, cosign, with_signatures
from app.audit.note import Verifier
from app.audit.witness_policy import PolicyError, WitnessPolicy, parse_policy
from tests.audit.test_deep_entries import script

ORIGIN = "timebank.example/ledger/xh"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
LOG = Verifier.from_public_key(ORIGIN, LOG_KEY.public_key())
KEYS = [Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i in range(8)]
NAMES = [f"witness{i}.example/w" for i in range(8)]
COSIGNERS = [Cosigner.from_public_key(n, k.public_key()) for n, k in zip(NAMES, KEYS, strict=True)]
T0 = 1_764_900_000
KEYS_RAW = [k.public_key().public_bytes_raw() for k in [*KEYS, LOG_KEY]]


def note_cosigned_by(indexes: list[int], size: int = 5) -> str:
    note = sign_checkpoint(Checkpoint(ORIGIN, size, bytes(range(32))), ORIGIN, LOG_KEY)
    text = note[: note.rfind("\n\n") + 1]
    lines = [cosign(text, NAMES[i], KEYS[i], T0 + i) for i in indexes]
    return with_signatures(note, lines)


def two_of_three(extra: str = "") -> WitnessPolicy:
    return parse_policy(
        f"# three district offices, any two\n"
        f"witness A {COSIGNERS[0].vkey()}\n"
        f"witness B {COSIGNERS[1].vkey()} https://b.example/witness\n"
        f"witness C {COSIGNERS[2].vkey()}\n"
        f"group two 2 A B C\n"
        f"{extra}"
        f"quorum two\n"
    )


def test_the_c2sp_example_parses_and_means_two_x_and_one_y() -> None:
    w = [c.vkey() for c in COSIGNERS]
    policy = parse_policy(
        f"log {LOG.vkey()}\n\n"
        f"witness X1 {w[0]}\nwitness X2 {w[1]}\nwitness X3 {w[2]}\n"
        "group X-witnesses 2 X1 X2 X3\n\n"
        f"witness Y1 {w[3]}\nwitness Y2 {w[4]}\nwitness Y3 {w[5]}\n"
        "group Y-witnesses any Y1 Y2 Y3\n\n"
        "group X-and-Y all X-witnesses Y-witnesses\n"
        "quorum X-and-Y\n"
    )
    assert [log.verifier for log in policy.logs] == [LOG]
    assert [g.k for g in policy.groups] == [2, 1, 2]
    assert policy.satisfied([b"X1", b"X3", b"Y2"])
    assert not policy.satisfied([b"X1", b"Y1", b"Y2", b"Y3"])
    assert not policy.satisfied([b"X1", b"X2", b"X3"])
    verdict = policy.check(note_cosigned_by([0, 2, 4]), [])
    assert verdict.met, verdict.reason
    assert [(c.witness, c.key_name, c.timestamp) for c in verdict.cosigned] == [
        ("X1", NAMES[0], T0),
        ("X3", NAMES[2], T0 + 2),
        ("Y2", NAMES[4], T0 + 4),
    ]
    assert (
        verdict.needs
        == "X-and-Y (2 of X-witnesses (2 of X1, X2, X3), Y-witnesses (1 of Y1, Y2, Y3))"
    )


def test_whitespace_comments_and_opaque_names() -> None:
    kelvin = "\u212a".encode()
    policy = parse_policy(
        b"  \t# a comment\n\n \t \n"
        + b"\twitness \t K  "
        + COSIGNERS[0].vkey().encode()
        + b" \t\nwitness "
        + kelvin
        + b" "
        + COSIGNERS[1].vkey().encode()
        + b"\ngroup g all K "
        + kelvin
        + b"\n   quorum\tg   "  # the last line may lack its newline
    )
    assert [w.name for w in policy.witnesses] == [b"K", kelvin]
    assert policy.satisfied([b"K", kelvin]) and not policy.satisfied([b"K"])


def test_quorum_none_needs_no_cosignature_but_the_log_signature() -> None:
    policy = parse_policy("quorum none\n")
    assert policy.check(note_cosigned_by([]), [LOG]).met
    verdict = policy.check(note_cosigned_by([]), [])
    assert not verdict.met and verdict.reason == "the checkpoint note does not verify: " + (
        "note has no verifiable signatures"
    )


W0, W1 = COSIGNERS[0].vkey(), COSIGNERS[1].vkey()
BAD_POLICIES = {
    "no quorum": (f"witness A {W0}\n", None, "no quorum line"),
    "two quorums": ("quorum none\n\nquorum none\n", 3, "second quorum line (the first is line 1)"),
    "a carriage return": ("quorum none\r\n", 1, "octet 0x0d"),
    "a NUL": ("# x\x00\nquorum none\n", 1, "octet 0x00"),
    "DEL": ("quorum none\x7f\n", 1, "octet 0x7f"),
    "a vertical tab as whitespace": ("quorum\x0bnone\n", 1, "octet 0x0b"),
    "unknown keyword": ("quorum none\nwitnesses A B\n", 2, "unknown keyword 'witnesses'"),
    "a note key as a witness": (f"witness A {LOG.vkey()}\nquorum A\n", 1, "type 0x04"),
    "a cosigner key as a log": (f"log {W0}\nquorum none\n", 1, "not a note key (type 0x01)"),
    "a wrong key id": (
        f"witness A {NAMES[0]}+00000000+{W0.rsplit('+', 1)[1]}\nquorum A\n",
        1,
        "witness 'A': key id does not match the key",
    ),
    "a vkey not UTF-8": (b"witness A \xff\nquorum A\n", 1, "the vkey is not UTF-8"),
    "a witness without key": ("witness A\nquorum A\n", 1, "`witness <name> <vkey> [<url>]`"),
    "too many items": (f"witness A {W0} https://a x\nquorum A\n", 1, "witness <name>"),
    "the same name twice": (f"witness A {W0}\nwitness A {W1}\n", 2, "'A' is defined already"),
    "the same key twice": (
        f"witness A {W0}\nwitness B {Cosigner.from_public_key('x', KEYS[0].public_key()).vkey()}\n",
        2,
        "a witness with this public key is defined already",
    ),
    "the same log twice": (f"log {LOG.vkey()}\nlog {LOG.vkey()} https://x\n", 2, "defined"),
    "a witness named none": (f"witness none {W0}\n", 1, "`none` is predefined"),
    "a group named like a witness": (f"witness A {W0}\ngroup A any A\n", 2, "defined already"),
    "a member defined later": (f"group g any A\nwitness A {W0}\n", 1, "'A' is not defined"),
    "a group naming itself": (f"witness A {W0}\ngroup g any A g\n", 2, "'g' is not defined"),
    "none as a member": (f"witness A {W0}\ngroup g any A none\n", 2, "`none` cannot"),
    "a member twice": (f"witness A {W0}\ngroup g any A A\n", 2, "'A' is a group member already"),
    "a member of two groups": (
        f"witness A {W0}\nwitness B {W1}\ngroup g any A\ngroup h all A B\n",
        4,
        "'A' is a group member already",
    ),
    "no member": ("group g any\n", 1, "`group <name> all|any|<k> <name>...`"),
    "k = 0": (f"witness A {W0}\ngroup g 0 A\n", 2, "between 1 and 1"),
    "k > n": (f"witness A {W0}\nwitness B {W1}\ngroup g 3 A B\n", 3, "between 1 and 2"),
    "a huge k": (f"witness A {W0}\ngroup g {'9' * 5000} A\n", 2, "between 1 and 1"),
    "k signed": (f"witness A {W0}\ngroup g +1 A\n", 2, "all, any or a decimal"),
    "k not decimal": (f"witness A {W0}\ngroup g 0x1 A\n", 2, "all, any or a decimal"),
    "a quorum defined later": ("quorum A\n", 1, "'A' is not defined on an earlier line"),
    "a quorum of two": (f"witness A {W0}\nquorum A A\n", 2, "`quorum <name>`"),
}


@pytest.mark.parametrize("case", BAD_POLICIES)
def test_a_bad_policy_is_refused_naming_the_line(case: str) -> None:
    text, line, fragment = BAD_POLICIES[case]
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    assert caught.value.line == line
    assert fragment in str(caught.value)
    if line is not None:
        assert str(caught.value).startswith(f"line {line}: ")


@pytest.mark.parametrize(
    ("cosigners", "met"),
    [([0, 1, 2], True), ([2, 0], True), ([1], False), ([], False), ([1, 3, 4], False)],
)
def test_two_of_three(cosigners: list[int], met: bool) -> None:
    verdict = two_of_three().check(note_cosigned_by(cosigners), [LOG])
    assert verdict.met is met
    listed = [i for i in cosigners if i < 3]
    assert [c.witness for c in verdict.cosigned] == ["ABC"[i] for i in listed]
    if not met:
        who = ", ".join("ABC"[i] for i in listed) or "no listed witness"
        assert verdict.reason == (
            f"the witness quorum is not met: it needs two (2 of A, B, C); cosigned by {who}"
        )


def test_a_listed_witness_whose_line_does_not_verify_makes_the_note_invalid() -> None:
    note = note_cosigned_by([0, 1, 2])
    lines = note.split("\n")
    blob = lines[-2].rsplit(" ", 1)[1]
    lines[-2] = lines[-2][: -len(blob)] + blob[:-8] + ("A" * 7 if blob[-8] != "A" else "B" * 7)
    lines[-2] += blob[-1]
    verdict = two_of_three().check("\n".join(lines), [LOG])
    assert not verdict.met
    assert verdict.reason is not None and "invalid signature for key " + NAMES[2] in verdict.reason
    # A line of a witness the policy does not list is ignored, however broken.
    stranger = note_cosigned_by([0, 1, 3]).split("\n")
    stranger[-2] = stranger[-2][:-6] + "AAAAA="
    assert two_of_three().check("\n".join(stranger), [LOG]).met


def test_a_cosignature_of_another_checkpoint_does_not_count() -> None:
    other = note_cosigned_by([0, 1], size=6).split("\n")[-3:-1]
    note = with_signatures(note_cosigned_by([2]), [line + "\n" for line in other])
    verdict = two_of_three().check(note, [LOG])
    assert not verdict.met and "invalid signature" in (verdict.reason or "")


def test_the_log_signature_is_required_and_policy_logs_must_match_the_origin() -> None:
    other_log = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    stranger = Verifier.from_public_key(ORIGIN, other_log.public_key())
    verdict = two_of_three().check(note_cosigned_by([0, 1]), [stranger])
    assert not verdict.met and verdict.reason == (
        f"no signature of the log's keys (origin {ORIGIN!r})"
    )
    assert not two_of_three().check(note_cosigned_by([0, 1]), []).met
    assert two_of_three(f"log {LOG.vkey()}\n").check(note_cosigned_by([0, 1]), []).met
    assert two_of_three(f"log {LOG.vkey()}\n").check(note_cosigned_by([0, 1]), [LOG]).met
    listed_other = two_of_three(f"log {stranger.vkey()}\n")
    verdict = listed_other.check(note_cosigned_by([0, 1]), [LOG])
    assert not verdict.met and "a log the policy lists" in (verdict.reason or "")
    renamed = Verifier.from_public_key("another.example/log", LOG_KEY.public_key())
    verdict = two_of_three(f"log {renamed.vkey()}\n").check(note_cosigned_by([0, 1]), [LOG])
    assert not verdict.met


# -- the quorum against a brute-force reading ---------------------------------------------------


@dataclass(frozen=True)
class Tree:
    """A policy as data: witnesses w0..w{n-1}, then groups g0.. in order, each (k, members)."""

    witnesses: int
    groups: tuple[tuple[str, int, tuple[str, ...]], ...]
    quorum: str

    def text(self) -> str:
        lines = [f"witness w{i} {COSIGNERS[i].vkey()}" for i in range(self.witnesses)]
        for name, k, members in self.groups:
            threshold = {1: "any", len(members): "all"}.get(k, str(k)) if k % 2 else str(k)
            lines.append(f"group {name} {threshold} {' '.join(members)}")
        return "\n".join([*lines, f"quorum {self.quorum}", ""])

    def brute(self, name: str, cosigned: frozenset[str]) -> bool:
        """Witnessed: some k of the members all witnessed (every k-subset tried)."""
        if name == "none":
            return True
        if name.startswith("w"):
            return name in cosigned
        _, k, members = next(g for g in self.groups if g[0] == name)
        return any(
            all(self.brute(m, cosigned) for m in chosen)
            for chosen in itertools.combinations(members, k)
        )


@st.composite
def trees(draw: st.DrawFn) -> Tree:
    n = draw(st.integers(1, 6))
    free = [f"w{i}" for i in range(n)]  # not yet a member of a group
    defined = list(free)
    groups = []
    for index in range(draw(st.integers(0, 4))):
        if not free:
            break
        members = draw(st.lists(st.sampled_from(free), min_size=1, max_size=4, unique=True))
        k = draw(st.integers(1, len(members)))
        name = f"g{index}"
        groups.append((name, k, tuple(members)))
        free = [f for f in free if f not in members] + [name]
        defined.append(name)
    quorum = draw(st.sampled_from([*defined, "none"]))
    return Tree(n, tuple(groups), quorum)


@settings(max_examples=300, deadline=None)
@given(trees(), st.sets(st.integers(0, 5)))
def test_the_quorum_is_what_the_group_tree_says(tree: Tree, chosen: set[int]) -> None:
    policy = parse_policy(tree.text())
    cosigned = frozenset(f"w{i}" for i in chosen if i < tree.witnesses)
    assert policy.satisfied(c.encode() for c in cosigned) is tree.brute(tree.quorum, cosigned)


@settings(max_examples=60, deadline=None)
@given(trees(), st.lists(st.integers(0, 7), unique=True))
def test_checking_a_cosigned_note_evaluates_the_same(tree: Tree, signers: list[int]) -> None:
    # Witnesses beyond the policy's (indexes >= n) cosign too: they are ignored.
    verdict = parse_policy(tree.text()).check(note_cosigned_by(signers), [LOG])
    cosigned = frozenset(f"w{i}" for i in signers if i < tree.witnesses)
    assert verdict.met is tree.brute(tree.quorum, cosigned)
    assert {c.witness for c in verdict.cosigned} == cosigned
    assert (verdict.reason is None) is verdict.met


@settings(max_examples=200, deadline=None)
@given(trees(), st.sets(st.integers(0, 5)), st.integers(0, 5))
def test_one_more_cosignature_never_breaks_a_quorum(
    tree: Tree, chosen: set[int], more: int
) -> None:
    policy = parse_policy(tree.text())
    names = {f"w{i}".encode() for i in chosen}
    if policy.satisfied(names):
        assert policy.satisfied(names | {f"w{more}".encode()})


# -- scripts/verify-export's own reading (written from the C2SP texts) agrees -------------------


@pytest.mark.parametrize("case", BAD_POLICIES)
def test_the_independent_verifier_refuses_the_same_policies(case: str) -> None:
    text, line, _ = BAD_POLICIES[case]
    with pytest.raises(script.PolicyFault) as caught:
        script.parse_policy(text.encode() if isinstance(text, str) else text)
    said = str(caught.value)
    assert said.startswith(f"line {line}: ") if line is not None else "no quorum" in said


@settings(max_examples=60, deadline=None)
@given(trees(), st.lists(st.integers(0, 7), unique=True))
def test_the_independent_verifier_evaluates_the_same(tree: Tree, signers: list[int]) -> None:
    note = note_cosigned_by(signers)
    ours = parse_policy(tree.text()).check(note, [LOG])
    theirs = script.parse_policy(tree.text().encode())
    log_key = script.NoteKey(LOG.name, LOG.key_id, script.NOTE_KEY, KEYS_RAW[-1])
    _, verified = script.open_signed_note(
        note, [log_key, *theirs.witnesses.values()], script._ed25519()
    )
    cosigned = {n for n, k in theirs.witnesses.items() if (k.name, k.key_id) in verified}
    assert theirs.witnessed(theirs.quorum, cosigned) is ours.met
    assert theirs.needs(theirs.quorum) == ours.needs
