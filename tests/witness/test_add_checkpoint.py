"""POST /add-checkpoint: every answer of tlog-witness, with its exact status, type and body."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import sqlite3
from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from structlog.testing import capture_logs

from app.audit import merkle
from app.audit.cosignature import timestamp_of, with_signatures
from app.audit.note import open_note
from app.witness import store as store_module
from app.witness.app import MAX_BODY_BYTES
from app.witness.store import WitnessStore
from tests.witness.conftest import NOW, WITNESS, Log, Witnessed, client_of, leaf, origin_path

PROBLEM = "application/problem+json"


async def post(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    return await client.post("/add-checkpoint", content=body)


def problem(response: httpx.Response, status: int, slug: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    document: dict[str, object] = response.json()
    assert document["type"] == f"urn:timebank:problem:{slug}"
    assert document["status"] == status
    return document


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} "):
            return float(line.split()[-1])
    return 0.0


async def test_a_first_checkpoint_is_cosigned_and_the_cosignature_verifies(
    witnessed: Witnessed, client: httpx.AsyncClient
) -> None:
    log = witnessed.log
    response = await post(client, log.body(0, 5))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    line = response.text
    assert line.startswith(f"\u2014 {WITNESS} ") and line.endswith("\n")
    assert line.count("\n") == 1
    # The client's way: append the lines to the checkpoint and verify with the witness's key.
    text, found = open_note(with_signatures(log.note(5), [line]), [witnessed.cosigner])
    assert [s.name for s in found] == [WITNESS]
    assert timestamp_of(found[0]) == NOW
    assert text.split("\n")[:2] == [log.origin, "5"]


async def test_the_cosignature_checks_by_the_c2sp_text_alone(
    witnessed: Witnessed, client: httpx.AsyncClient
) -> None:
    # tlog-cosignature/v1 read directly: `— <name> base64(key id(4) || timestamp(8) || sig(64))`,
    # key id SHA-256(name || 0x0A || 0x04 || public key)[:4], Ed25519 over
    # "cosignature/v1\ntime <t>\n" and the checkpoint's text.
    log = witnessed.log
    response = await post(client, log.body(0, 11))
    dash, name, b64 = response.text.rstrip("\n").split(" ")
    raw = base64.b64decode(b64, validate=True)
    public = witnessed.cosigner.public_key.public_bytes_raw()
    assert (dash, name, len(raw)) == ("\u2014", WITNESS, 4 + 8 + 64)
    assert raw[:4] == hashlib.sha256(WITNESS.encode() + b"\n\x04" + public).digest()[:4]
    timestamp = int.from_bytes(raw[4:12], "big")
    assert timestamp == NOW
    text = log.note(11).split("\n\n")[0] + "\n"
    message = f"cosignature/v1\ntime {timestamp}\n{text}".encode()
    Ed25519PublicKey.from_public_bytes(public).verify(raw[12:], message)


async def test_consistency_from_n_to_m_with_real_proofs(
    witnessed: Witnessed, client: httpx.AsyncClient
) -> None:
    log = witnessed.log
    sizes = [0, 1, 2, 3, 7, 8, 13, 16, 17, 40, 64]
    for old, new in itertools.pairwise(sizes):
        response = await post(client, log.body(old, new))
        assert response.status_code == 200, (old, new, response.text)
    served = await client.get(origin_path(log.origin))
    assert served.status_code == 200
    _, found = open_note(served.text, [log.verifier, witnessed.cosigner])
    assert [s.name for s in found] == [log.origin, WITNESS]
    assert served.text.split("\n")[1] == "64"


async def test_the_same_checkpoint_again_is_cosigned_again(
    witnessed: Witnessed, client: httpx.AsyncClient
) -> None:
    log = witnessed.log
    assert (await post(client, log.body(0, 9))).status_code == 200
    assert (await post(client, log.body(9, 9))).status_code == 200
    # A proof where none is due is refused, even for the same tree.
    response = await post(client, log.body(9, 9, proof=[leaf(0)]))
    problem(response, 422, "witness-unexpected-proof")


async def test_the_same_size_with_another_root_is_an_alarm_kept_as_evidence(
    witnessed: Witnessed, client: httpx.AsyncClient
) -> None:
    log = witnessed.log
    assert (await post(client, log.body(0, 10))).status_code == 200
    forked = Log(log.origin, log.key, [*log.leaves[:9], leaf(9, "rewritten"), *log.leaves[10:]])
    body = forked.body(10, 10)
    with capture_logs() as logs:
        response = await post(client, body)
    document = problem(response, 422, "witness-inconsistent")
    assert document["reason"] == "same-size-different-root"
    alarms = [e for e in logs if e["event"] == "witness.alarm"]
    assert alarms == [
        {
            "event": "witness.alarm",
            "log_level": "error",
            "origin": log.origin,
            "old_size": 10,
            "size": 10,
            "stored_size": 10,
            "reason": "same-size-different-root",
            "stored_root": base64.b64encode(log.root(10)).decode(),
            "claimed_root": base64.b64encode(forked.root(10)).decode(),
        }
    ]
    metrics = (await client.get("/metrics")).text
    assert metric(metrics, "timebank_witness_server_alarms_total", origin=log.origin) == 1
    assert (
        metric(metrics, "timebank_witness_server_refusals_total", origin=log.origin, status="422")
        == 1
    )
    [evidence] = WitnessStore(witnessed.root / "witness.db").evidence()
    assert (evidence.origin, evidence.alarm, evidence.status, evidence.reason) == (
        log.origin,
        True,
        422,
        "same-size-different-root",
    )
    assert evidence.body == body
    assert (evidence.stored_root, evidence.claimed_root) == (log.root(10), forked.root(10))
    # Nothing moved: the true checkpoint still extends what was cosigned.
    assert (await post(client, log.body(10, 12))).status_code == 200


async def test_a_rewritten_history_fails_the_consistency_proof(
    witnessed: Witnessed, client: httpx.AsyncClient
) -> None:
    log = witnessed.log
    assert (await post(client, log.body(0, 6))).status_code == 200
    forked = Log(log.origin, log.key, [*log.leaves[:3], leaf(3, "rewritten"), *log.leaves[4:]])
    with capture_logs() as logs:
        response = await post(client, forked.body(6, 11))
    assert problem(response, 422, "witness-inconsistent")["reason"] == "consistency-proof-failed"
    assert [e["reason"] for e in logs if e["event"] == "witness.alarm"] == [
        "consistency-proof-failed"
    ]
    served = await client.get(origin_path(log.origin))
    assert served.text.split("\n")[1] == "6"


async def test_a_size_0_checkpoint_must_have_the_empty_trees_root(
    witnessed: Witnessed, client: httpx.AsyncClient
) -> None:
    log = witnessed.log
    response = await post(client, log.body(0, 0, note=log.note(0, root=leaf(0))))
    assert problem(response, 422, "witness-inconsistent")["reason"] == "empty-tree-root"
    response = await post(client, log.body(0, 0))
    assert response.status_code == 200
    assert log.root(0) == merkle.EMPTY_ROOT


async def test_a_proof_from_old_size_0_is_refused_without_an_alarm(
    witnessed: Witnessed, client: httpx.AsyncClient
) -> None:
    log = witnessed.log
    with capture_logs() as logs:
        response = await post(client, log.body(0, 4, proof=[leaf(0)]))
    document = problem(response, 422, "witness-unexpected-proof")
    assert "reason" not in document
    assert [e["event"] for e in logs] == ["witness.refused"]
    assert logs[0]["log_level"] == "warning" and logs[0]["reason"] == "unexpected-proof"
    [evidence] = WitnessStore(witnessed.root / "witness.db").evidence()
    assert (evidence.alarm, evidence.reason) == (False, "unexpected-proof")


async def test_a_wrong_old_size_is_409_with_the_stored_size(
    witnessed: Witnessed, client: httpx.AsyncClient
) -> None:
    log = witnessed.log
    response = await post(client, log.body(3, 8))
    assert response.status_code == 409
    assert response.headers["content-type"] == "text/x.tlog.size"
    assert response.content == b"0\n"
    assert (await post(client, log.body(0, 8))).status_code == 200
    for old in (0, 5):
        response = await post(client, log.body(old, 12))
        assert (response.status_code, response.content) == (409, b"8\n")
        assert response.headers["content-type"] == "text/x.tlog.size"
    # A 409 is how a log learns the size: not kept as evidence.
    assert WitnessStore(witnessed.root / "witness.db").evidence() == []


async def test_an_old_size_above_the_checkpoints_is_400(
    witnessed: Witnessed, client: httpx.AsyncClient
) -> None:
    log = witnessed.log
    response = await post(client, log.body(9, 8))
    problem(response, 400, "witness-old-size-too-large")


async def test_an_unknown_origin_is_404(client: httpx.AsyncClient) -> None:
    stranger = Log(origin="elsewhere.example/log")
    with capture_logs() as logs:
        response = await post(client, stranger.body(0, 3))
    problem(response, 404, "witness-unknown-log")
    assert logs[0]["event"] == "witness.refused" and logs[0]["origin"] == ""
    metrics = (await client.get("/metrics")).text
    assert metric(metrics, "timebank_witness_server_refusals_total", origin="", status="404") == 1


async def test_a_trusted_keys_bad_signature_is_403(
    witnessed: Witnessed, client: httpx.AsyncClient
) -> None:
    log = witnessed.log
    note = log.note(5)
    # Flip one bit of the log's signature: the key name and id still match a trusted key.
    head, b64 = note.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(b64))
    raw[-1] ^= 1
    forged = f"{head} {base64.b64encode(bytes(raw)).decode()}\n"
    response = await post(client, log.body(0, 5, note=forged))
    assert problem(response, 403, "witness-signature-refused")["origin"] == log.origin
    # Another key under the origin's name is ignored: no trusted signature at all.
    impostor = Log(origin=log.origin)
    problem(await post(client, impostor.body(0, 5)), 403, "witness-signature-refused")
    # A trusted signature beside an unknown one is enough.
    both = with_signatures(log.note(5), [impostor.note(5).split("\n\n")[1]])
    assert (await post(client, log.body(0, 5, note=both))).status_code == 200
    metrics = (await client.get("/metrics")).text
    assert (
        metric(metrics, "timebank_witness_server_refusals_total", origin=log.origin, status="403")
        == 2
    )


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "empty"),
        (b"old 0\n", "no empty line"),
        (b"old 00\n\nX", "leading zero"),
        (b"old -1\n\nX", "negative"),
        (b"old 1 \n\nX", "trailing space"),
        (b"Old 1\n\nX", "keyword"),
        (b"old 99999999999999999999\n\nX", "too large"),
        (b"old 1\nAAAA\n\nX", "short hash"),
        (b"old 1\n" + b"A" * 43 + b"=\n\nX", "not canonical base64"),
        (b"old 1\n\xff\n\nX", "not UTF-8"),
        (b"old 0\n\n", "no checkpoint"),
        (b"old 0\n\norigin\n5\n", "no signature block"),
        (b"old 0\n\norigin\nfive\nAAAA\n\n\xe2\x80\x94 o AAAA\n", "not a checkpoint"),
    ],
)
async def test_a_malformed_body_is_400(client: httpx.AsyncClient, body: bytes, why: str) -> None:
    problem(await post(client, body), 400, "witness-malformed-request")


async def test_more_than_63_proof_lines_is_400(
    witnessed: Witnessed, client: httpx.AsyncClient
) -> None:
    log = witnessed.log
    response = await post(client, log.body(3, 8, proof=[leaf(0)] * 64))
    problem(response, 400, "witness-malformed-request")
    # 63 lines parse (and then fail as a proof: the stored size is 0, so this is a 409 first).
    assert (await post(client, log.body(3, 8, proof=[leaf(0)] * 63))).status_code == 409


async def test_a_signature_line_of_an_unknown_key_that_is_malformed_is_400(
    witnessed: Witnessed, client: httpx.AsyncClient
) -> None:
    note = witnessed.log.note(5) + "\u2014 someone not-base64!\n"
    response = await post(client, witnessed.log.body(0, 5, note=note))
    problem(response, 400, "witness-malformed-request")


async def test_a_body_over_the_cap_is_413(client: httpx.AsyncClient) -> None:
    response = await post(client, b"old 0\n" + b"A" * MAX_BODY_BYTES)
    problem(response, 413, "witness-body-too-large")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"B" * (MAX_BODY_BYTES // 4)

    # Without a Content-Length, the cap applies as the body arrives.
    response = await client.post("/add-checkpoint", content=chunks())
    problem(response, 413, "witness-body-too-large")


async def test_the_monitoring_checkpoint_is_404_until_cosigned(
    witnessed: Witnessed, client: httpx.AsyncClient
) -> None:
    log = witnessed.log
    problem(await client.get(origin_path(log.origin)), 404, "witness-no-checkpoint")
    problem(await client.get(origin_path("elsewhere")), 404, "witness-no-checkpoint")
    problem(await client.get("/ABC/checkpoint"), 404, "witness-no-checkpoint")
    await post(client, log.body(0, 3))
    served = await client.get(origin_path(log.origin))
    assert served.status_code == 200
    assert served.headers["content-type"] == "text/plain; charset=utf-8"
    # The log's verified signature, then the witness's cosignature; an unknown one dropped.
    signatures = served.text.split("\n\n")[1].splitlines()
    assert [line.split()[1] for line in signatures] == [log.origin, WITNESS]


async def test_other_paths_and_methods_are_problems(client: httpx.AsyncClient) -> None:
    problem(await client.get("/nothing/here"), 404, "witness-not-found")
    refused = await client.get("/add-checkpoint")
    problem(refused, 405, "witness-method-not-allowed")
    assert refused.headers["allow"] == "POST"
    health = await client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok", "name": WITNESS}


async def test_the_state_is_durable_across_app_instances(witnessed: Witnessed) -> None:
    log = witnessed.log
    async with client_of(witnessed.root) as first:
        assert (await post(first, log.body(0, 20))).status_code == 200
    async with client_of(witnessed.root) as second:
        response = await post(second, log.body(0, 30))
        assert (response.status_code, response.content) == (409, b"20\n")
        assert (await post(second, log.body(20, 30))).status_code == 200
        served = await second.get(origin_path(log.origin))
    assert served.text.split("\n")[1] == "30"


async def test_the_key_is_never_logged(witnessed: Witnessed, client: httpx.AsyncClient) -> None:
    secret = (witnessed.root / "witness.key").read_text().strip().split("+", 4)[4]
    with capture_logs() as logs:
        await post(client, witnessed.log.body(0, 4))
        await post(client, witnessed.log.body(0, 4))
    assert logs and secret not in json.dumps(logs, default=str)


async def test_a_store_locked_past_the_timeout_is_503(
    witnessed: Witnessed, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.05)
    holder = sqlite3.connect(witnessed.root / "witness.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        response = await post(client, witnessed.log.body(0, 3))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    problem(response, 503, "witness-unavailable")
    assert response.headers["retry-after"] == "1"
    assert (await post(client, witnessed.log.body(0, 3))).status_code == 200
