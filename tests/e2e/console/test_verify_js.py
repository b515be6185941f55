"""The console's export verifier, app/console/static/verify.js, in headless Chromium against the
app served on a real port: a true export of a book of every kind of entry verifies with the
tree size and root the Python verifier (app.audit.offline) reports; tampered copies fail at
the check and `seq` docs/audit-format.md §8.5 names, with the Python verifier's verdict; a range
export verifies with its prefix; an export without receipts (`receipts=false`) verifies, and
tampered or mixed ones fail as in Python; one receipt (with its entry, with its tlog-proof
bundle) and a service proof verify, and tampered ones do not."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit import keys, merkle, offline, receipts
from app.audit.checkpoint import Checkpoint, sign_checkpoint
from app.kit import deep_json
from app.kit.canonical_json import canonical_bytes
from app.ledger.posting import Draft
from app.volunteering import proofs
from tests.audit.test_deep_entries import deep_book
from tests.conftest import Api, gather_limited
from tests.e2e.browser import TIMEOUT_MS
from tests.e2e.serving import serving
from tests.e2e.test_kiosk_page import tampered

pytestmark = pytest.mark.slow  # a server on a port and Chromium
ROOT = Path(__file__).resolve().parents[3]
ZERO = "0" * 64
VERIFY = (
    "async ([text, options]) => (await import('/console/verify.js')).verifyExport(text, options)"
)
Lines = list[str]


# --- the browser and the app ----------------------------------------------------------------------


@pytest.fixture(scope="module")
async def base(module_api: Api) -> AsyncIterator[str]:
    async with serving(module_api.app) as url:
        yield url


@pytest.fixture(scope="module")
async def page(browser: Any, base: str) -> AsyncIterator[Any]:
    """/console/ (a stub page: the origin the module is imported from)."""
    context = await browser.new_context(base_url=base)
    context.set_default_timeout(TIMEOUT_MS * 4)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto("/console/")
    yield page
    await context.close()
    assert errors == []


async def js_verify(page: Any, text: str, **options: Any) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(VERIFY, [text, options])
    return result


# --- the book -------------------------------------------------------------------------------------


@dataclass
class World:
    book: str
    text: str  # its export, whole
    bare: str  # the same, receipts=false
    jwks: dict[str, Any]
    early: dict[str, Any]  # a checkpoint signed when the book was part-way
    kinds: set[str]


def ok(r: Any) -> dict[str, Any]:
    assert r.status_code in (200, 201), r.text
    data: dict[str, Any] = r.json()
    return data


async def post(api: Api, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return ok(await api.client.post(path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex}))


async def build(api: Api) -> World:
    """A few hundred entries: deep metas (tests/audit/test_deep_entries.py), transfers with
    non-ASCII memos and metas whose keys JCS sorts by UTF-16 code units, holds posted, voided
    and left pending, reversals, notices, and a second asset."""
    book = (await deep_book(api)).code
    issuance, alice = await api.funded(book, 1_000_000)
    bob, carol = await api.account(book), await api.account(book)
    meta = {
        "z": 1,
        "é": "e\u0301",
        "\U0001f600": "😀",
        "\uff41": [1.5, -0.5, 1e21],
        "ctl": "\t\u2028",
    }
    sent = await gather_limited(
        [
            api.transfer(
                book, alice, (bob, carol)[i % 2], 1 + i % 7, memo=f"陪伴老人 {i}", meta=meta
            )
            for i in range(200)
        ],
        limit=16,
    )
    assert all(r.status_code == 201 for r in sent), [r.text for r in sent if r.status_code != 201]
    early = ok(await api.client.post(f"/v1/books/{book}/checkpoints"))

    def hold(amount: int) -> dict[str, Any]:
        return {
            "from_account_id": alice,
            "to_account_id": bob,
            "amount": amount,
            "expires_in": 3600,
        }

    held = [await post(api, f"/v1/books/{book}/holds", hold(10 + i)) for i in range(30)]
    for i, h in enumerate(held[:20]):
        action = "post" if i % 2 else "void"
        await post(api, f"/v1/holds/{h['id']}/{action}", {"amount": 5} if i % 2 else None)
    for r in sent[:15]:
        await post(api, f"/v1/transactions/{r.json()['id']}/reversal")
    for i in range(4):
        body = {"role": "auditor", "book": book, "name": f"审计 {i}"}
        granted = await post(api, "/v1/credentials", body)
        await post(api, f"/v1/credentials/{granted['id']}/revoke")
    await api.funded(book, 70, asset="POINT")
    export = await api.client.get(f"/v1/books/{book}/export")
    assert export.status_code == 200, export.text
    kinds = {deep_json.loads(line)["entry"]["kind"] for line in lines_of(export.text)[:-1]}
    bare = await api.client.get(f"/v1/books/{book}/export", params={"receipts": "false"})
    assert bare.status_code == 200, bare.text
    jwks = ok(await api.client.get("/.well-known/jwks.json"))
    return World(book, export.text, bare.text, jwks, early, kinds)


@pytest.fixture(scope="module")
async def world(module_api: Api) -> World:
    return await build(module_api)


# --- the Python verifier --------------------------------------------------------------------------


def python_verdict(
    text: str, jwks: dict[str, Any] | None = None, checkpoint: str | None = None
) -> tuple[bool, int | None, offline.ExportReport | None]:
    raw = text.encode()
    assert raw.endswith(b"\n")
    lines = raw[:-1].split(b"\n")
    try:
        report = offline.verify_export(lines[:-1], lines[-1], jwks, checkpoint)
    except offline.VerifyError as exc:
        return False, exc.seq, None
    return True, None, report


def lines_of(text: str) -> Lines:
    """The lines of a JSON Lines file (str.splitlines would also split at U+2028, which JCS
    writes as itself inside strings)."""
    assert text.endswith("\n")
    return text[:-1].split("\n")


def joined(lines: Lines) -> str:
    return "".join(f"{line}\n" for line in lines)


def dumps(value: Any) -> str:
    return canonical_bytes(value).decode()  # any depth, any member order a verifier accepts


def flip_b64url(segment: str, at: int = 10) -> str:
    raw = bytearray(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    raw[at] ^= 1
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def rehash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(entry)).hexdigest()


# --- tampering: each returns the new lines and the (check, seq) verify.js must report -----------

Tamper = Callable[[Lines, int], tuple[Lines, str, int | None]]


def with_line(lines: Lines, k: int, change: Callable[[dict[str, Any]], None]) -> Lines:
    line = deep_json.loads(lines[k - 1])
    change(line)
    return [*lines[: k - 1], dumps(line), *lines[k:]]


def amount_changed(lines: Lines, k: int) -> tuple[Lines, str, int | None]:
    def change(line: dict[str, Any]) -> None:
        line["entry"]["legs"][0]["amount"] -= 1
        line["entry"]["legs"][1]["amount"] += 1

    return with_line(lines, k, change), "entry.hash", k


def entry_removed(lines: Lines, k: int) -> tuple[Lines, str, int | None]:
    return [*lines[: k - 1], *lines[k:]], "entry.seq", k


def line_duplicated(lines: Lines, k: int) -> tuple[Lines, str, int | None]:
    return [*lines[:k], lines[k - 1], *lines[k:]], "entry.seq", k + 1


def receipt_signature_flipped(lines: Lines, k: int) -> tuple[Lines, str, int | None]:
    def change(line: dict[str, Any]) -> None:
        header, payload, signature = line["receipt"].split(".")
        line["receipt"] = f"{header}.{payload}.{flip_b64url(signature)}"

    return with_line(lines, k, change), "receipt.signature", k


def prev_hash_changed(lines: Lines, k: int) -> tuple[Lines, str, int | None]:
    def change(line: dict[str, Any]) -> None:
        line["entry"]["prev_hash"] = ZERO

    return with_line(lines, k, change), "entry.hash", k


def prev_hash_changed_and_rehashed(lines: Lines, k: int) -> tuple[Lines, str, int | None]:
    """The hash recomputed: the entry is self-consistent, its receipt still states the
    original prev_hash and entry_hash."""

    def change(line: dict[str, Any]) -> None:
        line["entry"]["prev_hash"] = ZERO
        line["entry_hash"] = rehash(line["entry"])

    return with_line(lines, k, change), "receipt.claims", k


def entry_rehashed(lines: Lines, k: int) -> tuple[Lines, str, int | None]:
    """Entry k's memo changed and its entry_hash recomputed: its own hash holds; the receipt,
    signed when it was posted, catches it (before the chain would, at k + 1)."""

    def change(line: dict[str, Any]) -> None:
        line["entry"]["memo"] = "nothing to see"
        line["entry_hash"] = rehash(line["entry"])

    return with_line(lines, k, change), "receipt.claims", k


def tail_rewritten(lines: Lines, k: int) -> tuple[Lines, str, int | None]:
    """Entry k changed and every later entry re-chained and re-hashed (the rewrite
    docs/ledger-format.md §9 says an export alone cannot catch): the chain holds, the
    receipts catch it at k."""
    out, previous = lines[: k - 1], None
    for raw in lines[k - 1 : -1]:
        line = deep_json.loads(raw)
        if previous is None:
            line["entry"]["memo"] = "rewritten"
        else:
            line["entry"]["prev_hash"] = previous
        line["entry_hash"] = previous = rehash(line["entry"])
        out.append(dumps(line))
    return [*out, lines[-1]], "receipt.claims", k


def checkpoint_signature_flipped(lines: Lines, k: int) -> tuple[Lines, str, int | None]:
    trailer = json.loads(lines[-1])
    text, signature = trailer["checkpoint"]["note"].rsplit(" ", 1)
    blob = bytearray(base64.b64decode(signature.rstrip("\n"), validate=True))
    blob[10] ^= 1
    trailer["checkpoint"]["note"] = f"{text} {base64.b64encode(bytes(blob)).decode()}\n"
    return [*lines[:-1], json.dumps(trailer)], "checkpoint.signature", None


def consistency_forged(lines: Lines, k: int) -> tuple[Lines, str, int | None]:
    trailer = json.loads(lines[-1])
    trailer["consistency"] = ["00" * 32]
    return [*lines[:-1], json.dumps(trailer)], "merkle.consistency", trailer["to_seq"]


TAMPERS = [
    amount_changed,
    entry_removed,
    line_duplicated,
    receipt_signature_flipped,
    prev_hash_changed,
    prev_hash_changed_and_rehashed,
    entry_rehashed,
    tail_rewritten,
    checkpoint_signature_flipped,
    consistency_forged,
]


def stranger() -> keys.SigningKey:
    return keys.SigningKey(keys.generate_private_key())


def published(key: keys.SigningKey) -> dict[str, Any]:
    return dict(keys.jwks([keys.PublishedKey(key.public_key, datetime(2020, 1, 1, tzinfo=UTC))]))


def resigned_tail(
    lines: Lines,
    k: int,
    key: keys.SigningKey,
    sign_from: int,
    rechain: bool = True,
    member: tuple[str, str] = ("memo", "forged"),
) -> tuple[Lines, bytes]:
    """Entry k's `member` changed, the tail re-chained (unless not `rechain`), every receipt
    from `sign_from` re-signed with `key` (keeping each `iat`); also the rewritten tree's root."""
    out, leaves, previous = [], [], None
    for seq, raw in enumerate(lines[:-1], 1):
        line = deep_json.loads(raw)
        entry = line["entry"]
        if seq == k:
            entry[member[0]] = member[1]
        elif seq > k and rechain:
            entry["prev_hash"] = previous
        line["entry_hash"] = previous = rehash(entry)
        leaf = merkle.leaf_hash(canonical_bytes(entry))
        if seq >= sign_from:
            payload = line["receipt"].split(".")[1]
            iat = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["iat"]
            claims = receipts.claims_of(entry, line["entry_hash"], leaf.hex(), iat)
            line["receipt"] = receipts.sign_receipt(claims, key)
        leaves.append(leaf)
        out.append(dumps(line) if seq >= min(k, sign_from) else raw)
    return out, merkle.root_from_leaves(leaves)


# --- tests ----------------------------------------------------------------------------------------


async def test_a_true_export_verifies_as_the_python_verifier_says(page: Any, world: World) -> None:
    assert {"transfer", "hold", "hold.post", "hold.void", "reversal"} <= world.kinds
    assert {"notice.credential_granted", "notice.credential_revoked"} <= world.kinds
    entries = len(lines_of(world.text)) - 1
    assert entries >= 250
    fine, _, report = python_verdict(world.text, world.jwks)
    assert fine and report is not None

    for options, trusted in (({"jwks": world.jwks}, True), ({}, False)):
        result = await js_verify(page, world.text, **options)
        assert result["failure"] is None and result["ok"] is True, result["failure"]
        assert result["trusted_keys"] is trusted
        assert (result["book"], result["fromSeq"], result["toSeq"]) == (world.book, 1, entries)
        assert result["entries"] == entries
        assert result["treeSize"] == report.checkpoint.size == entries
        assert result["root"] == report.root.hex() == result["checkpoint"]["root"]
        assert result["head"] == json.loads(lines_of(world.text)[-2])["entry_hash"]
        assert result["kids"] == sorted(report.kids)
        assert all(c["ok"] for c in result["checks"])
        codes = await page.evaluate("async () => (await import('/console/verify.js')).CHECKS")
        assert {c["check"] for c in result["checks"]} <= set(codes)
        assert "merkle.consistency" in [c["check"] for c in result["checks"]]

    # The same file as bytes, with a checkpoint kept from part-way (§8.5 step 6).
    result = await page.evaluate(
        """async ([text, jwks, checkpoint]) => {
            const m = await import('/console/verify.js');
            const bytes = new TextEncoder().encode(text);
            const calls = [];
            const r = await m.verifyExport(bytes, { jwks, checkpoint,
                onProgress: (done, total) => calls.push([done, total]) });
            return [r, calls];
        }""",
        [world.text, world.jwks, world.early["note"]],
    )
    verdict, calls = result
    assert verdict["ok"] is True, verdict["failure"]
    assert verdict["checks"][-1] == {"check": "checkpoint.trusted", "ok": True}
    assert calls[-1] == [entries, entries] and calls == sorted(calls)
    assert python_verdict(world.text, world.jwks, world.early["note"])[0]


@pytest.mark.parametrize("tamper", TAMPERS)
async def test_a_tampered_export_fails_at_the_right_seq_and_check(
    page: Any, world: World, tamper: Tamper
) -> None:
    lines = lines_of(world.text)
    entries = [deep_json.loads(line)["entry"] for line in lines[:-1]]
    # A transfer in the middle of the chain, after the deep metas.
    k = next(e["seq"] for e in entries[len(entries) // 2 :] if e["kind"] == "transfer")
    changed, check, seq = tamper(lines, k)
    text = joined(changed)
    result = await js_verify(page, text, jwks=world.jwks)
    assert result["ok"] is False
    failure = result["failure"]
    assert (failure["check"], failure["seq"]) == (check, seq), failure
    assert failure["message_zh"] and failure["message_en"]
    assert result["checks"][-1] == {"check": check, "ok": False}
    # The Python verifier refuses it too, blaming the same entry.
    fine, python_seq, _ = python_verdict(text, world.jwks)
    assert not fine and python_seq == seq
    # Without trusted keys (the file's own), the same verdict.
    alone = await js_verify(page, text)
    assert alone["failure"] == failure and alone["trusted_keys"] is False


async def test_an_export_without_receipts_verifies_as_the_python_verifier_says(
    page: Any, world: World
) -> None:
    entries = len(lines_of(world.bare)) - 1
    assert entries == len(lines_of(world.text)) - 1
    fine, _, report = python_verdict(world.bare, world.jwks)
    assert fine and report is not None and report.receipts == 0
    result = await js_verify(page, world.bare, jwks=world.jwks)
    assert result["ok"] is True, result["failure"]
    assert (result["entries"], result["receipts"], result["kids"]) == (entries, 0, [])
    assert result["root"] == report.root.hex() == result["checkpoint"]["root"]
    assert result["head"] == report.head
    checks = [c["check"] for c in result["checks"]]
    assert "receipt.signature" not in checks and "receipt.claims" not in checks
    assert {"entry.hash", "chain.prev_hash", "merkle.consistency"} <= set(checks)
    signed = await js_verify(page, world.text, jwks=world.jwks)
    assert signed["receipts"] == entries
    assert "receipt.signature" in [c["check"] for c in signed["checks"]]
    assert signed["root"] == result["root"]


def receipts_mixed(lines: Lines, k: int) -> tuple[Lines, str, int | None]:
    """Line k with a receipt among lines without (what the service never writes)."""

    def change(line: dict[str, Any]) -> None:
        line["receipt"] = "x.y.z"

    return with_line(lines, k, change), "line.members", k


# Without receipts, what a receipt catches first falls to the chain or to the Merkle root.
BARE_TAMPERS: list[tuple[Tamper, str | None]] = [
    (amount_changed, None),
    (entry_removed, None),
    (line_duplicated, None),
    (prev_hash_changed, None),
    (entry_rehashed, "chain.prev_hash"),
    (tail_rewritten, "merkle.consistency"),
    (consistency_forged, None),
    (receipts_mixed, None),
]


@pytest.mark.parametrize(("tamper", "check"), BARE_TAMPERS)
async def test_a_tampered_export_without_receipts_fails_as_in_python(
    page: Any, world: World, tamper: Tamper, check: str | None
) -> None:
    lines = lines_of(world.bare)
    entries = [deep_json.loads(line)["entry"] for line in lines[:-1]]
    k = next(e["seq"] for e in entries[len(entries) // 2 :] if e["kind"] == "transfer")
    changed, expected, seq = tamper(lines, k)
    if check is not None:
        expected, seq = check, len(entries) if check == "merkle.consistency" else k
    text = joined(changed)
    result = await js_verify(page, text, jwks=world.jwks)
    assert result["ok"] is False
    assert (result["failure"]["check"], result["failure"]["seq"]) == (expected, seq)
    fine, python_seq, _ = python_verdict(text, world.jwks)
    assert not fine and python_seq == seq


async def test_keys_that_lack_the_signing_key_refuse_the_export(page: Any, world: World) -> None:
    other = published(stranger())
    result = await js_verify(page, world.text, jwks=other)
    assert result["ok"] is False
    assert (result["failure"]["check"], result["failure"]["seq"]) == ("checkpoint.signature", None)
    assert not python_verdict(world.text, other)[0]
    # A key set with both keys: the service's checkpoint opens, and the verdict holds.
    both = {"keys": world.jwks["keys"] + other["keys"]}
    assert (await js_verify(page, world.text, jwks=both))["ok"] is True


async def test_a_forgery_under_other_keys_passes_only_untrusted(page: Any, world: World) -> None:
    """A rewrite of the tail whose receipts are re-signed by the forger. (1) With a checkpoint
    re-signed too and the file's `jwks` replaced, the file is self-consistent: it verifies with
    its own keys (trusted_keys false) and not with the service's; had the forger not re-chained
    the tail, the chain would catch it. (2) Keeping the service's checkpoint, with the forger's
    key added to the file's keys: the receipts pass, and the Merkle root is what catches it."""
    lines = lines_of(world.text)
    k = len(lines) - 20
    key = stranger()
    trailer = json.loads(lines[-1])

    def under_own_keys(body: Lines, root: bytes) -> str:
        forged = copy.deepcopy(trailer)
        origin = forged["checkpoint"]["origin"]
        note = sign_checkpoint(Checkpoint(origin, len(body), root), origin, key.private_key)
        forged["checkpoint"]["note"], forged["consistency"] = note, []
        forged["jwks"] = published(key)
        return joined([*body, json.dumps(forged)])

    # Not re-chained: every signature holds, the chain breaks after k (blame k, §8.5 3.5).
    text = under_own_keys(*resigned_tail(lines, k, key, sign_from=1, rechain=False))
    alone = await js_verify(page, text)
    assert (alone["failure"]["check"], alone["failure"]["seq"]) == ("chain.prev_hash", k)
    assert python_verdict(text)[:2] == (False, k)
    # The first entry's prev_hash not 64 zeros: entry 1 itself is to blame.
    text = under_own_keys(*resigned_tail(lines, 1, key, 1, member=("prev_hash", "11" * 32)))
    alone = await js_verify(page, text)
    assert (alone["failure"]["check"], alone["failure"]["seq"]) == ("chain.prev_hash", 1)
    assert python_verdict(text)[:2] == (False, 1)

    text = under_own_keys(*resigned_tail(lines, k, key, sign_from=1))
    alone = await js_verify(page, text)
    assert alone["ok"] is True and alone["trusted_keys"] is False, alone["failure"]
    assert alone["kids"] == [key.kid]
    assert python_verdict(text)[0]
    trusted = await js_verify(page, text, jwks=world.jwks)
    assert (trusted["failure"]["check"], trusted["failure"]["seq"]) == (
        "checkpoint.signature",
        None,
    )
    assert not python_verdict(text, world.jwks)[0]

    body, _ = resigned_tail(lines, k, key, sign_from=k)
    kept = copy.deepcopy(trailer)
    kept["jwks"] = {"keys": world.jwks["keys"] + published(key)["keys"]}
    text = joined([*body, json.dumps(kept)])
    alone = await js_verify(page, text)
    assert (alone["failure"]["check"], alone["failure"]["seq"]) == (
        "merkle.consistency",
        trailer["to_seq"],
    )
    assert python_verdict(text)[:2] == (False, trailer["to_seq"])
    trusted = await js_verify(page, text, jwks=world.jwks)
    assert (trusted["failure"]["check"], trusted["failure"]["seq"]) == ("receipt.signature", k)
    assert python_verdict(text, world.jwks)[:2] == (False, k)


def popcount(n: int) -> int:
    return bin(n).count("1")


async def test_a_range_verifies_with_its_prefix(page: Any, world: World, module_api: Api) -> None:
    size = len(lines_of(world.text)) - 1
    kept = world.early["tree_size"]  # the checkpoint kept part-way
    first = (kept - 16) // 8 * 8 + 6  # first − 1 ends in 101: a prefix of several subtrees
    last = kept + 30
    assert popcount(first - 1) >= 3 and first - 1 <= kept <= last < size
    r = await module_api.client.get(
        f"/v1/books/{world.book}/export", params={"from_seq": first, "to_seq": last}
    )
    assert r.status_code == 200, r.text
    text = r.text
    trailer = json.loads(lines_of(text)[-1])
    assert len(trailer["prefix"]) == popcount(first - 1) and trailer["consistency"]
    fine, _, report = python_verdict(text, world.jwks, world.early["note"])
    assert fine and report is not None

    result = await js_verify(page, text, jwks=world.jwks, checkpoint=world.early["note"])
    assert result["ok"] is True, result["failure"]
    assert (result["fromSeq"], result["toSeq"], result["entries"]) == (
        first,
        last,
        last - first + 1,
    )
    assert result["treeSize"] == report.checkpoint.size == size
    assert result["root"] == report.root.hex() != result["checkpoint"]["root"]
    assert result["checks"][-1] == {"check": "checkpoint.trusted", "ok": True}

    def with_trailer(**changes: Any) -> str:
        return joined([*lines_of(text)[:-1], json.dumps({**trailer, **changes})])

    flipped = [("ff" if h[:2] != "ff" else "00") + h[2:] for h in trailer["prefix"][:1]]
    cases = [
        (with_trailer(prefix=flipped + trailer["prefix"][1:]), "merkle.consistency", last),
        (with_trailer(prefix=trailer["prefix"][1:]), "prefix", None),
        (with_trailer(to_seq=last + 1), "entries.missing", last + 1),
    ]
    for changed, check, seq in cases:
        verdict = await js_verify(page, changed, jwks=world.jwks)
        assert (verdict["failure"]["check"], verdict["failure"]["seq"]) == (check, seq)
        assert python_verdict(changed, world.jwks)[:2] == (False, seq)
    # A kept checkpoint that disagrees with the file, signed by a key the caller trusts: at a
    # size within the range, and at the size of the file's checkpoint.
    key = stranger()
    both = {"keys": world.jwks["keys"] + published(key)["keys"]}
    origin = world.early["origin"]
    for at in (kept, size):
        lie = sign_checkpoint(Checkpoint(origin, at, bytes(32)), origin, key.private_key)
        verdict = await js_verify(page, text, jwks=both, checkpoint=lie)
        assert (verdict["failure"]["check"], verdict["failure"]["seq"]) == (
            "checkpoint.trusted",
            None,
        )
        assert not python_verdict(text, both, lie)[0]
    # A trusted checkpoint the range cannot be related to (its size past to_seq, not the
    # file's checkpoint).
    short = await module_api.client.get(
        f"/v1/books/{world.book}/export", params={"from_seq": 2, "to_seq": kept - 1}
    )
    assert short.status_code == 200, short.text
    verdict = await js_verify(page, short.text, jwks=world.jwks, checkpoint=world.early["note"])
    assert (verdict["failure"]["check"], verdict["failure"]["seq"]) == ("checkpoint.trusted", None)
    assert not python_verdict(short.text, world.jwks, world.early["note"])[0]


def literal_changed(lines: Lines, k: int, old: str, new: str) -> Lines:
    assert old in lines[k - 1]
    return [*lines[: k - 1], lines[k - 1].replace(old, new, 1), *lines[k:]]


async def test_what_is_not_strict_json_lines_is_refused_as_python_refuses_it(
    page: Any, world: World
) -> None:
    lines = lines_of(world.text)
    entries = [deep_json.loads(line)["entry"] for line in lines[:-1]]
    k = next(e["seq"] for e in entries[len(entries) // 2 :] if e["kind"] == "transfer")
    amount = entries[k - 1]["legs"][1]["amount"]
    trailer = json.loads(lines[-1])
    cases: list[tuple[str, str, str, int | None]] = [
        ("a blank line", joined([*lines[:k], "", *lines[k:]]), "file", None),
        ("no final newline", world.text[:-1], "file", None),
        (
            "an amount written 5.0",
            joined(literal_changed(lines, k, f'"amount":{amount},', f'"amount":{amount}.0,')),
            "entry.shape",
            k,
        ),
        (
            "an integer past 2^53 in meta",
            joined(literal_changed(lines, k, '"meta":{', '"meta":{"big":9007199254740993,')),
            "line.json",
            k,
        ),
        (
            "NaN in meta",
            joined(literal_changed(lines, k, '"meta":{', '"meta":{"n":NaN,')),
            "line.json",
            k,
        ),
        (
            "a member twice",
            joined(literal_changed(lines, k, '{"entry":', '{"receipt":"x","entry":')),
            "line.json",
            k,
        ),
        (
            "an extra member",
            joined(literal_changed(lines, k, '{"entry":', '{"extra":1,"entry":')),
            "line.members",
            k,
        ),
        (
            "an upper-case tx_id",
            joined(
                literal_changed(lines, k, entries[k - 1]["tx_id"], entries[k - 1]["tx_id"].upper())
            ),
            "entry.shape",
            k,
        ),
        (
            "an extra member on the checkpoint line",
            joined([*lines[:-1], json.dumps({**trailer, "extra": 1})]),
            "checkpoint.line",
            None,
        ),
        ("no checkpoint line", joined(lines[:-1]), "checkpoint.line", None),
    ]
    for name, text, check, seq in cases:
        verdict = await js_verify(page, text, jwks=world.jwks)
        assert verdict["ok"] is False, name
        assert (verdict["failure"]["check"], verdict["failure"]["seq"]) == (check, seq), name
        if text.endswith("\n"):  # (the CLI reads lines; an unterminated last one is its own)
            fine, python_seq, _ = python_verdict(text, world.jwks)
            assert not fine, name
            if seq is not None:
                assert python_seq == seq, name


# --- one receipt, one service proof ---------------------------------------------------------------

RECEIPT = """async ([token, jwks, options]) =>
    (await import('/console/verify.js')).verifyReceiptToken(token, jwks, options)"""
SERVICE_PROOF = """async ([text, jwks]) =>
    (await import('/console/verify.js')).verifyServiceProof(text, jwks)"""


def python_receipt(token: str, jwks: dict[str, Any], options: dict[str, Any]) -> bool:
    try:
        report = offline.verify_receipt(token, jwks, proof=options.get("proof"))
        if "entry" in options:
            entry = options["entry"]
            receipts.check_receipt_entry(report.claims, entry, rehash(entry))
    except (offline.VerifyError, receipts.ReceiptError):
        return False
    return True


def stray_bits(token: str) -> str:
    """The same signature bytes, its last base64url digit with unused bits set (86 digits hold
    64 bytes: the last digit's low 4 bits are unused)."""
    digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = digits.index(token[-1])
    assert len(token.split(".")[2]) == 86 and last & 0x0F == 0
    return token[:-1] + digits[last | 0x01]


def flip_proof_hash(bundle: str) -> str:
    lines = bundle.split("\n")
    assert lines[1].startswith("index ") and lines[2]
    raw = bytearray(base64.b64decode(lines[2]))
    raw[0] ^= 1
    return "\n".join([*lines[:2], base64.b64encode(bytes(raw)).decode(), *lines[3:]])


async def test_a_receipt_alone_with_its_entry_and_with_its_proof(
    page: Any, world: World, module_api: Api
) -> None:
    lines = lines_of(world.text)
    k = len(lines) // 2
    line, other = deep_json.loads(lines[k - 1]), deep_json.loads(lines[k])
    token, entry = line["receipt"], line["entry"]
    proof = await module_api.client.get(f"/v1/transactions/{entry['tx_id']}/proof")
    assert proof.status_code == 200, proof.text
    bundle = proof.text
    docs = re.findall(
        r"^eyJ[\w-]+\.[\w-]+\.[\w-]+$", (ROOT / "docs/audit-format.md").read_text(), re.M
    )
    cases: list[tuple[str, str, dict[str, Any], dict[str, Any], str | None]] = [
        ("alone", token, world.jwks, {}, None),
        ("with its entry", token, world.jwks, {"entry": entry}, None),
        ("with its proof", token, world.jwks, {"proof": bundle}, None),
        ("docs §6.5", docs[0], DOCS_JWKS, {}, None),
        ("tampered", tampered(token), world.jwks, {}, "receipt.signature"),
        ("signature not canonical", stray_bits(token), world.jwks, {}, "receipt.signature"),
        ("docs §6.5 tampered", tampered(docs[0]), DOCS_JWKS, {}, "receipt.signature"),
        ("unknown key", token, published(stranger()), {}, "receipt.signature"),
        ("another entry", token, world.jwks, {"entry": other["entry"]}, "receipt.claims"),
        ("another's proof", other["receipt"], world.jwks, {"proof": bundle}, "proof.inclusion"),
        (
            "proof tampered",
            token,
            world.jwks,
            {"proof": flip_proof_hash(bundle)},
            "proof.inclusion",
        ),
    ]
    for name, receipt, jwks, options, check in cases:
        verdict = await page.evaluate(RECEIPT, [receipt, jwks, options])
        assert verdict["ok"] is (check is None), (name, verdict["failure"])
        assert (verdict["failure"] or {}).get("check") == check, name
        assert python_receipt(receipt, jwks, options) is (check is None), name
        if check is None and receipt == token:
            assert (
                verdict["claims"]["seq"] == k
                and verdict["claims"]["entry_hash"] == line["entry_hash"]
            )
    with_proof = await page.evaluate(RECEIPT, [token, world.jwks, {"proof": bundle}])
    assert with_proof["checkpoint"]["treeSize"] >= k


DOCS_JWKS = {
    "keys": [
        {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",
            "use": "sig",
            "alg": "Ed25519",
            "valid_from": "2026-01-01T00:00:00Z",
            "valid_until": "2027-01-01T00:00:00Z",
        }
    ]
}
RFC8032_KEY = keys.SigningKey(
    Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    )
)


def python_proof(token: str, jwks: dict[str, Any]) -> bool:
    try:
        proofs.verify_proof_token(token, jwks)
    except proofs.ProofTokenError:
        return False
    return True


async def test_a_service_proof_verifies_and_a_tampered_one_does_not(page: Any, region: Any) -> None:
    example = (ROOT / "docs/service-proof.md").read_text().split("## 10. Worked example", 1)[1]
    docs_jwks = json.loads(re.findall(r"```json\n(.*?)\n```", example, re.S)[0])
    docs_token = re.findall(r"```text\n(.*?)\n```", example, re.S)[1]
    issued = await region.proof("admin")
    assert issued.status_code == 200, issued.text
    live_jwks = (await region.api.client.get("/.well-known/jwks.json")).json()
    body = issued.json()
    header, payload, signature = docs_token.split(".")
    forged_payload = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).replace(
        b'"minutes":210', b'"minutes":600'
    )
    document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    document["totals"]["minutes"] = 600  # signed with the key, but the totals do not add up
    wrong_totals = proofs.sign_document(document, RFC8032_KEY)
    ended = {"keys": [dict(k, valid_until="2026-11-27T02:30:00Z") for k in docs_jwks["keys"]]}
    b64 = base64.urlsafe_b64encode(forged_payload).rstrip(b"=").decode()
    cases: list[tuple[str, str, dict[str, Any], str | None, bool]] = [
        ("docs §10", docs_token, docs_jwks, None, True),
        ("the service's JSON answer", json.dumps(body, ensure_ascii=False), live_jwks, None, True),
        ("the service's token", body["token"], live_jwks, None, True),
        ("minutes changed", f"{header}.{b64}.{signature}", docs_jwks, "proof.signature", False),
        ("another key set", body["token"], docs_jwks, "proof.signature", False),
        ("signed after its key ended", docs_token, ended, "proof.document", False),
        ("totals that do not add up", wrong_totals, docs_jwks, "proof.totals", True),
    ]
    for name, text, jwks, check, python_ok in cases:
        verdict = await page.evaluate(SERVICE_PROOF, [text, jwks])
        assert verdict["ok"] is (check is None), (name, verdict["failure"])
        assert (verdict["failure"] or {}).get("check") == check, name
        # app.volunteering.proofs checks steps 1–6 of §5; the totals (a SHOULD) only here.
        token = text if not text.startswith("{") else json.loads(text)["token"]
        assert python_proof(token, jwks) is python_ok, name
    verdict = await page.evaluate(SERVICE_PROOF, [body["token"], live_jwks])
    assert verdict["document"] == body["document"]


# --- a large book ---------------------------------------------------------------------------------

LARGE = 10_000


async def test_ten_thousand_entries_verify_in_the_page(page: Any, module_api: Api) -> None:
    book = await module_api.book()
    issuance, member = await module_api.funded(book, 0)
    drafts = [
        Draft(book, "post", "transfer", [(issuance, -1 - i % 5), (member, 1 + i % 5)], f"第 {i} 笔")
        for i in range(LARGE)
    ]
    sequencer = module_api.app.state.sequencer
    written = await gather_limited([sequencer.submit(d) for d in drafts], limit=1024)
    assert all(w.status_code == 201 for w in written)
    jwks = (await module_api.client.get("/.well-known/jwks.json")).json()
    # The console's way: the page fetches the export itself and verifies it.
    for query in ("", "?receipts=false"):
        result = await page.evaluate(
            """async ([book, query, token, jwks]) => {
                const m = await import('/console/verify.js');
                const r = await fetch(`/v1/books/${book}/export${query}`,
                    { headers: { Authorization: `Bearer ${token}` } });
                const text = await r.text();
                const calls = [];
                const started = performance.now();
                const verdict = await m.verifyExport(text, { jwks,
                    onProgress: (done, total) => calls.push([done, total]) });
                return { verdict, calls, ms: performance.now() - started, bytes: text.length };
            }""",
            [book, query, module_api.token, jwks],
        )
        verdict = result["verdict"]
        assert verdict["ok"] is True, verdict["failure"]
        assert verdict["entries"] == verdict["treeSize"] == LARGE
        assert verdict["receipts"] == (0 if query else LARGE)
        assert result["calls"][-1] == [LARGE, LARGE] and len(result["calls"]) >= LARGE // 1024
        # Reported, not asserted (no timing assertions): see the report of issue 22.
        print(
            f"\nverify.js{query}: {LARGE} entries, {result['bytes']} characters in "
            f"{result['ms']:.0f} ms"
        )
