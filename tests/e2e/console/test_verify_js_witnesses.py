"""Witness policies in the console's verifier (app/console/static/verify.js, witnesses.js) in
headless Chromium: a real book's export and proof bundle, their checkpoint note cosigned in
Python (app.audit.cosignature.cosign) by three test witnesses; a 2-of-3 policy passes with two
cosignatures, fails with one and with a listed witness's corrupted line; malformed policies are
refused naming the line; and a table of cases gets the same verdict from verify.js and from
Python (app.audit.note.open_note with the cosigners, and app.audit.witness_policy where it
exists)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit.checkpoint import Checkpoint, parse_checkpoint
from app.audit.cosignature import parse_cosigner_key, with_signatures
from app.audit.note import NoteError, Verifier, open_note, parse_verifier_key
from tests.conftest import Api
from tests.e2e.browser import TIMEOUT_MS
from tests.e2e.serving import serving
from tests.e2e.witnesses import (
    DISCIPLINE,
    FOUNDATION,
    MCA,
    STRANGER,
    T0,
    THREE,
    TWO_OF_THREE,
    Witness,
    corrupted,
    cosigned,
    note_of,
    policy,
    text_of,
    with_note,
)

pytestmark = pytest.mark.slow  # a server on a port and Chromium

VERIFY = """async ([text, options]) =>
    (await import('/console/verify.js')).verifyExport(text, options)"""
RECEIPT = """async ([token, jwks, options]) =>
    (await import('/console/verify.js')).verifyReceiptToken(token, jwks, options)"""
POLICY = """async (text) => (await import('/console/verify.js')).readWitnessPolicy(text)"""


# --- the book -------------------------------------------------------------------------------


@dataclass
class World:
    export: str  # the book's export: its trailer holds the checkpoint note
    jwks: dict[str, Any]
    log_vkeys: list[str]  # GET /v1/books/{code}/log-keys
    token: str  # a receipt of one entry
    bundle: str  # that entry's tlog-proof bundle


@pytest.fixture(scope="module")
async def base(module_api: Api) -> AsyncIterator[str]:
    async with serving(module_api.app) as url:
        yield url


@pytest.fixture(scope="module")
async def page(browser: Any, base: str) -> AsyncIterator[Any]:
    context = await browser.new_context(base_url=base)
    context.set_default_timeout(TIMEOUT_MS * 2)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto("/console/")
    yield page
    await context.close()
    assert errors == []


@pytest.fixture(scope="module")
async def world(module_api: Api) -> World:
    api = module_api
    book = await api.book()
    issuance, alice = await api.funded(book, 1000)
    bob = await api.account(book)
    sent = [await api.transfer(book, alice, bob, 1 + i, memo=f"陪伴 {i}") for i in range(12)]
    assert all(r.status_code == 201 for r in sent)
    tx_id = sent[5].json()["id"]
    export = await api.client.get(f"/v1/books/{book}/export")
    assert export.status_code == 200, export.text
    receipt = await api.client.get(f"/v1/transactions/{tx_id}/receipt")
    bundle = await api.client.get(f"/v1/transactions/{tx_id}/proof")
    log_keys = await api.client.get(f"/v1/books/{book}/log-keys")
    jwks = await api.client.get("/.well-known/jwks.json")
    for r in (receipt, bundle, log_keys, jwks):
        assert r.status_code == 200, r.text
    return World(
        export.text, jwks.json(), log_keys.text.split(), receipt.json()["receipt"], bundle.text
    )


async def js_export(page: Any, export: str, **options: Any) -> dict[str, Any]:
    found: dict[str, Any] = await page.evaluate(VERIFY, [export, options])
    return found


def names(result: dict[str, Any]) -> list[str]:
    return sorted(c["witness"] for c in (result["witnesses"] or {}).get("cosigned", []))


# --- tests ----------------------------------------------------------------------------------


async def test_two_of_three_passes_with_two_and_fails_with_one(page: Any, world: World) -> None:
    note = note_of(world.export)
    # Without a policy nothing changes, cosigned or not.
    for n in (0, 3):
        plain = await js_export(page, with_note(world.export, cosigned(note, *THREE[:n])))
        assert plain["ok"] is True and plain["witnesses"] is None, plain["failure"]

    enough: list[tuple[Witness, ...]] = [
        THREE,
        (MCA, FOUNDATION),
        (FOUNDATION, STRANGER, DISCIPLINE),
    ]
    for who in enough:
        result = await js_export(
            page,
            with_note(world.export, cosigned(note, *who)),
            jwks=world.jwks,
            witnessPolicy=TWO_OF_THREE,
        )
        assert result["ok"] is True, result["failure"]
        listed = [w for w in who if w in THREE]
        assert names(result) == sorted(w.label for w in listed)
        stated = {
            c["witness"]: (c["key_name"], c["timestamp"]) for c in result["witnesses"]["cosigned"]
        }
        assert stated == {w.label: (w.name, T0 + who.index(w)) for w in listed}
        assert result["witnesses"]["met"] is True
        checks = [c["check"] for c in result["checks"]]
        assert checks.index("witness.quorum") < checks.index("entry.hash")
        assert {"witness.policy", "witness.cosignature", "witness.quorum"} <= set(checks)

    too_few: list[tuple[Witness, ...]] = [(), (DISCIPLINE,), (DISCIPLINE, STRANGER)]
    for who in too_few:
        result = await js_export(
            page,
            with_note(world.export, cosigned(note, *who)),
            jwks=world.jwks,
            witnessPolicy=TWO_OF_THREE,
        )
        assert result["ok"] is False
        assert (result["failure"]["check"], result["failure"]["seq"]) == ("witness.quorum", None)
        assert "2 of (mca, discipline, foundation)" in result["failure"]["message_en"]
        assert "见证法定人数" in result["failure"]["message_zh"]
        assert names(result) == sorted(w.label for w in who if w in THREE)
        assert result["witnesses"]["met"] is False

    # A listed witness's line that does not verify makes the whole note invalid, however many
    # others cosigned (signed-note: a known key's signature must verify).
    text = text_of(note)
    for at in (4, 11, 12, 75):  # the timestamp's first and last byte, the signature's
        bad = corrupted(FOUNDATION.line(text, T0), at)
        forged = with_signatures(cosigned(note, MCA, DISCIPLINE), [bad])
        result = await js_export(
            page, with_note(world.export, forged), jwks=world.jwks, witnessPolicy=TWO_OF_THREE
        )
        assert result["ok"] is False
        assert result["failure"]["check"] == "witness.cosignature", (at, result["failure"])
        assert "foundation" in result["failure"]["message_en"]
    # A corrupted key id is another key's line: ignored.
    other = with_signatures(
        cosigned(note, MCA, DISCIPLINE), [corrupted(FOUNDATION.line(text, T0), 0)]
    )
    result = await js_export(
        page, with_note(world.export, other), jwks=world.jwks, witnessPolicy=TWO_OF_THREE
    )
    assert result["ok"] is True and names(result) == ["discipline", "mca"], result["failure"]


async def test_a_proof_bundle_is_held_to_the_policy(page: Any, world: World) -> None:
    split = world.bundle.index("\n\n") + 2
    head, note = world.bundle[:split], world.bundle[split:]
    cases = [
        ("two", cosigned(note, MCA, DISCIPLINE), None),
        ("one", cosigned(note, MCA), "witness.quorum"),
        (
            "a corrupted line",
            with_signatures(
                cosigned(note, MCA, DISCIPLINE), [corrupted(FOUNDATION.line(text_of(note), T0), 40)]
            ),
            "witness.cosignature",
        ),
    ]
    for name, cosigned_note, check in cases:
        options = {"proof": head + cosigned_note, "witnessPolicy": TWO_OF_THREE}
        verdict = await page.evaluate(RECEIPT, [world.token, world.jwks, options])
        assert verdict["ok"] is (check is None), (name, verdict["failure"])
        assert (verdict["failure"] or {}).get("check") == check, name
        if check is None:
            assert verdict["checkpoint"]["treeSize"] >= 6
            assert names(verdict) == ["discipline", "mca"]
        # Without the policy, the bundle's inclusion alone is checked.
        alone = await page.evaluate(
            RECEIPT, [world.token, world.jwks, {"proof": head + cosigned_note}]
        )
        assert alone["ok"] is True and alone["witnesses"] is None, (name, alone["failure"])
    # A policy without a bundle is refused, as the Python verifier refuses it: a receipt alone
    # has no checkpoint, and would pass the policy unchecked.
    verdict = await page.evaluate(
        RECEIPT, [world.token, world.jwks, {"witnessPolicy": TWO_OF_THREE}]
    )
    assert verdict["ok"] is False and verdict["failure"]["check"] == "witness.policy"


# Policies the text does not allow, and the line to blame (0: the file as a whole).
def bad_policies() -> list[tuple[str, str, int]]:
    w = {x.label: x.vkey for x in THREE}
    log_vkey = "example.org/log+" + "0" * 8 + "+" + base64.b64encode(b"\x01" + bytes(32)).decode()
    as_log_type = w["mca"].rsplit("+", 1)[0] + "+" + base64.b64encode(b"\x01" + bytes(32)).decode()
    return [
        ("no quorum", f"witness a {w['mca']}\n", 0),
        ("two quorums", f"witness a {w['mca']}\nquorum a\nquorum a\n", 3),
        ("a forward reference", f"quorum a\nwitness a {w['mca']}\n", 1),
        (
            "a group naming a later witness",
            f"witness a {w['mca']}\ngroup g any a b\nwitness b {w['discipline']}\nquorum g\n",
            2,
        ),
        (
            "a member listed twice in a group",
            f"witness a {w['mca']}\nwitness b {w['discipline']}\ngroup g 1 a a b\nquorum g\n",
            3,
        ),
        (
            "a member of two groups (each name is a member once in the file)",
            f"witness a {w['mca']}\nwitness b {w['discipline']}\ngroup g any a\n"
            "group h all a b\nquorum h\n",
            4,
        ),
        (
            "k greater than n",
            f"witness a {w['mca']}\nwitness b {w['discipline']}\ngroup g 3 a b\nquorum g\n",
            3,
        ),
        ("k zero", f"witness a {w['mca']}\ngroup g 0 a\nquorum g\n", 2),
        ("k not decimal", f"witness a {w['mca']}\ngroup g 0x1 a\nquorum g\n", 2),
        ("a group of none", f"witness a {w['mca']}\ngroup g any none\nquorum g\n", 2),
        ("an empty group", f"witness a {w['mca']}\ngroup g any\nquorum g\n", 2),
        (
            "a name defined twice",
            f"witness a {w['mca']}\nwitness a {w['discipline']}\nquorum a\n",
            2,
        ),
        ("a witness named none", f"witness none {w['mca']}\nquorum none\n", 1),
        (
            "the same key twice",
            f"witness a {w['mca']}\nwitness b {w['mca']}\nquorum a\n",
            2,
        ),
        ("a witness key of type 0x01", f"witness a {as_log_type}\nquorum a\n", 1),
        ("a log key that is not a key", f"log {log_vkey}\nquorum none\n", 1),
        (
            "a key id that does not match",
            f"witness a {swap_id(w['mca'])}\nquorum a\n",
            1,
        ),
        ("an unknown keyword", f"witness a {w['mca']}\nwitnesses b\nquorum a\n", 2),
        ("a carriage return", f"witness a {w['mca']}\r\nquorum a\n", 1),
        ("a quorum of two names", f"witness a {w['mca']}\nquorum a a\n", 2),
        ("a quorum of an unknown name", f"witness a {w['mca']}\nquorum b\n", 2),
    ]


def swap_id(vkey: str) -> str:
    name, hex8, b64 = vkey.split("+", 2)
    return f"{name}+{(int(hex8, 16) ^ 1):08x}+{b64}"


async def test_malformed_policies_are_refused_naming_the_line(page: Any, world: World) -> None:
    for name, text, line in bad_policies():
        verdict = await page.evaluate(POLICY, text)
        assert verdict["ok"] is False, name
        failure = verdict["failure"]
        assert failure["check"] == "witness.policy", name
        if line:
            assert failure["message_en"].startswith(f"witness policy line {line}:"), (name, failure)
            assert failure["message_zh"].startswith(f"见证策略第 {line} 行"), (name, failure)
        # verifyExport refuses the same policy before reading the file.
        result = await js_export(page, world.export, witnessPolicy=text)
        assert result["failure"] == failure and result["checks"] == [
            {"check": "witness.policy", "ok": False}
        ], name
    good = await page.evaluate(POLICY, TWO_OF_THREE)
    assert good["ok"] is True, good["failure"]
    assert [w["witness"] for w in good["witnesses"]] == ["mca", "discipline", "foundation"]
    assert good["rule"] == "district = 2 of (mca, discipline, foundation)"
    # Without a final newline, with URLs, and `quorum none` without witnesses.
    for text in (
        TWO_OF_THREE.rstrip("\n"),
        "quorum none",
        f"witness a {MCA.vkey} https://w.example/\nquorum a\n",
    ):
        assert (await page.evaluate(POLICY, text))["ok"] is True, text


# --- Python and JS on the same inputs -------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    policy: str
    note: Callable[[str], str]  # the checkpoint note, from the export's own
    met: bool  # the checkpoint meets the policy
    cosigned: tuple[str, ...]  # the listed witnesses whose lines verify
    check: str | None = None  # the check that fails (None: passes)


def lines_by(*witnesses: Witness, at: int = T0) -> Callable[[str], str]:
    def make(note: str) -> str:
        text = text_of(note)
        return with_signatures(note, [w.line(text, at + i) for i, w in enumerate(witnesses)])

    return make


def then(first: Callable[[str], str], extra: Callable[[str], list[str]]) -> Callable[[str], str]:
    return lambda note: with_signatures(first(note), extra(text_of(first(note))))


def other_checkpoint_line(note: str) -> str:
    """FOUNDATION's cosignature of another checkpoint of the same log, on this note."""
    cp = parse_checkpoint(text_of(note))
    return FOUNDATION.line(Checkpoint(cp.origin, cp.size + 1, cp.root_hash).text(), T0)


def log_line(vkey: str) -> str:
    return f"log {vkey}\n"


def parity_cases(world: World) -> list[Case]:
    a_log = world.log_vkeys[0]
    stranger_log = Ed25519PrivateKey.from_private_bytes(bytes([9]) * 32)
    origin = parse_checkpoint(text_of(note_of(world.export))).origin
    foreign_log = Verifier.from_public_key(origin, stranger_log.public_key()).vkey()
    nested = (
        f"witness a {MCA.vkey}\nwitness b {DISCIPLINE.vkey}\nwitness c {FOUNDATION.vkey}\n"
        "group ab any a b\ngroup q all ab c\nquorum q\n"
    )
    q_fail = "witness.quorum"
    return [
        Case(
            "three of 2-of-3",
            TWO_OF_THREE,
            lines_by(*THREE),
            True,
            ("discipline", "foundation", "mca"),
        ),
        Case("two of 2-of-3", TWO_OF_THREE, lines_by(MCA, FOUNDATION), True, ("foundation", "mca")),
        Case("one of 2-of-3", TWO_OF_THREE, lines_by(DISCIPLINE), False, ("discipline",), q_fail),
        Case("none of 2-of-3", TWO_OF_THREE, lambda n: n, False, (), q_fail),
        Case("one and a stranger", TWO_OF_THREE, lines_by(STRANGER, MCA), False, ("mca",), q_fail),
        Case(
            "two and a corrupted third",
            TWO_OF_THREE,
            then(lines_by(MCA, DISCIPLINE), lambda t: [corrupted(FOUNDATION.line(t, T0), 30)]),
            False,
            (),
            "witness.cosignature",
        ),
        Case(
            "two and a timestamp flipped",
            TWO_OF_THREE,
            then(lines_by(MCA), lambda t: [corrupted(DISCIPLINE.line(t, T0), 11)]),
            False,
            (),
            "witness.cosignature",
        ),
        Case(
            "two and a line of another checkpoint",
            TWO_OF_THREE,
            lambda n: with_signatures(lines_by(MCA, DISCIPLINE)(n), [other_checkpoint_line(n)]),
            False,
            (),
            "witness.cosignature",
        ),
        Case(
            "a line twice, the second corrupted (every line of a known key is checked)",
            TWO_OF_THREE,
            then(lines_by(MCA, DISCIPLINE), lambda t: [corrupted(MCA.line(t, T0 + 5), 40)]),
            False,
            (),
            "witness.cosignature",
        ),
        Case(
            "a line under the witness's name and another key id",
            TWO_OF_THREE,
            then(lines_by(MCA), lambda t: [corrupted(DISCIPLINE.line(t, T0), 2)]),
            False,
            ("mca",),
            q_fail,
        ),
        Case(
            "a timestamp of 2^63 - 1",
            TWO_OF_THREE,
            lines_by(MCA, DISCIPLINE, at=2**63 - 2),
            True,
            ("discipline", "mca"),
        ),
        Case("quorum none", policy(quorum="none"), lambda n: n, True, ()),
        Case(
            "quorum one witness",
            policy(quorum="foundation"),
            lines_by(FOUNDATION),
            True,
            ("foundation",),
        ),
        Case(
            "all of three, two",
            policy(members="all mca discipline foundation"),
            lines_by(MCA, DISCIPLINE),
            False,
            ("discipline", "mca"),
            q_fail,
        ),
        Case(
            "any of three, one",
            policy(members="any mca discipline foundation"),
            lines_by(FOUNDATION),
            True,
            ("foundation",),
        ),
        Case("nested, a and c", nested, lines_by(MCA, FOUNDATION), True, ("a", "c")),
        Case("nested, a and b", nested, lines_by(MCA, DISCIPLINE), False, ("a", "b"), q_fail),
        Case(
            "the log listed",
            log_line(a_log) + TWO_OF_THREE,
            lines_by(MCA, DISCIPLINE),
            True,
            ("discipline", "mca"),
        ),
        Case(
            "another log listed",
            log_line(foreign_log) + TWO_OF_THREE,
            lines_by(MCA, DISCIPLINE),
            False,
            ("discipline", "mca"),
            q_fail,
        ),
    ]


def python_cosigned(case: Case, note: str, log_vkeys: list[str]) -> tuple[str, ...] | None:
    """The listed witnesses whose lines verify, by app.audit.note.open_note with the log's keys
    and the policy's cosigners; None when it refuses the note."""
    labels = {}
    for line in case.policy.split("\n"):
        words = line.split()
        if words[:1] == ["witness"]:
            labels[parse_cosigner_key(words[2]).name] = words[1]
    cosigners = [
        parse_cosigner_key(w.split()[2]) for w in case.policy.split("\n") if w.startswith("witness")
    ]
    try:
        _, signatures = open_note(note, [*map(parse_verifier_key, log_vkeys), *cosigners])
    except NoteError:
        return None
    return tuple(sorted(labels[s.name] for s in signatures if s.name in labels))


async def test_python_and_js_agree_on_a_table_of_cases(page: Any, world: World) -> None:
    original = note_of(world.export)
    for case in parity_cases(world):
        note = case.note(original)
        result = await js_export(
            page, with_note(world.export, note), jwks=world.jwks, witnessPolicy=case.policy
        )
        assert result["ok"] is (case.check is None), (case.name, result["failure"])
        assert (result["failure"] or {}).get("check") == case.check, case.name
        if case.check != "witness.cosignature":
            assert tuple(names(result)) == case.cosigned, case.name
            assert result["witnesses"]["met"] is case.met, case.name
        # Python's signed-note reading of the same note: the same witnesses, the same refusal.
        python = python_cosigned(case, note, world.log_vkeys)
        if case.check == "witness.cosignature":
            assert python is None, case.name
        else:
            assert python == case.cosigned, case.name


async def test_the_python_policy_module_agrees(page: Any, world: World) -> None:
    """The same table and the malformed policies through app.audit.witness_policy (written
    beside this, from the same texts), where it exists."""
    witness_policy = pytest.importorskip("app.audit.witness_policy")
    original = note_of(world.export)
    verifiers = [parse_verifier_key(v) for v in world.log_vkeys]
    for case in parity_cases(world):
        note = case.note(original)
        verdict = witness_policy.parse_policy(case.policy).check(note, verifiers)
        assert verdict.met is (case.check is None), (case.name, verdict.reason)
        if case.check != "witness.cosignature":
            assert tuple(sorted(c.witness for c in verdict.cosigned)) == case.cosigned, case.name
    for name, text, line in bad_policies():
        with pytest.raises(witness_policy.PolicyError) as caught:
            witness_policy.parse_policy(text)
        assert (caught.value.line or 0) == line, name
        assert (await page.evaluate(POLICY, text))["ok"] is False, name
