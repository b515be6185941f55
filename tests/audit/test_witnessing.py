"""The log asks its witnesses (app.audit.witnessing): every witness's cosignature is stored and
served with the checkpoint; a witness that is down delays only its own and catches up from
the size it last cosigned; one that lost its state is caught up from what its 409 says; a
refusal is an alarm (log line, metric, the witness's status) that clears when it cosigns again.

The witnesses here are small in-test parties behind an httpx transport that follow C2SP
tlog-witness's checks (old size, consistency proof against the root they hold); the real
witness service, as separate processes, is tests/e2e/test_witnesses.py's.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import REGISTRY
from sqlalchemy import text

from app.audit import cosignature, merkle, witnessing
from app.audit.checkpoint import parse_checkpoint
from app.audit.note import open_note, parse_verifier_key
from app.audit.witness_config import add_witness, remove_witness, witness_statuses
from app.kit.pg_pool import acquire
from tests.conftest import Api


@dataclass
class FakeWitness:
    """A witness that checks what tlog-witness asks of one: the old size it holds, the proof."""

    name: str
    log_vkeys: list[str]
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    size: int = 0
    root: bytes = merkle.EMPTY_ROOT
    down: bool = False
    clock: int = 1_764_900_000

    @property
    def vkey(self) -> str:
        return cosignature.Cosigner.from_public_key(self.name, self.key.public_key()).vkey()

    def answer(self, body: str) -> httpx.Response:
        head, _, note = body.partition("\n\n")
        lines = head.split("\n")
        old = int(lines[0].removeprefix("old "))
        proof = [base64.b64decode(line) for line in lines[1:]]
        text_ = open_note(note, [parse_verifier_key(v) for v in self.log_vkeys])[0]
        checkpoint = parse_checkpoint(text_)
        if old != self.size:
            return httpx.Response(
                409, text=f"{self.size}\n", headers={"content-type": "text/x.tlog.size"}
            )
        if old == 0:
            consistent = not proof
        elif old == checkpoint.size:
            consistent = not proof and checkpoint.root_hash == self.root
        else:
            consistent = merkle.verify_consistency(
                old, checkpoint.size, proof, self.root, checkpoint.root_hash
            )
        if not consistent:
            return httpx.Response(422, text="inconsistent")
        self.size, self.root = checkpoint.size, checkpoint.root_hash
        self.clock += 1
        return httpx.Response(200, text=cosignature.cosign(text_, self.name, self.key, self.clock))


def transport(witnesses: dict[str, FakeWitness]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        witness = witnesses[request.url.host]
        if witness.down:
            raise httpx.ConnectError("connection refused", request=request)
        assert request.url.path == "/add-checkpoint"
        return witness.answer(request.content.decode())

    return httpx.MockTransport(handle)


async def grow(api: Api, book: str, issuance: str, target: str, count: int) -> int:
    for _ in range(count):
        assert (await api.transfer(book, issuance, target, 1)).status_code == 201
    r = await api.client.post(f"/v1/books/{book}/checkpoints")
    assert r.status_code in (200, 201), r.text
    return int(r.json()["tree_size"])


async def served(api: Api, book: str) -> str:
    r = await api.client.get(f"/v1/books/{book}/checkpoint")
    assert r.status_code == 200, r.text
    return str(r.json()["note"])


async def make_due(api: Api, book: str) -> None:
    """Let the next round ask every witness now (their backoff is the thing not tested)."""
    async with api.app.state.sessions() as session, session.begin():
        await session.execute(
            text("UPDATE book_witnesses SET due_at = now() WHERE book_code = :b"), {"b": book}
        )


class Recorder:
    """Stands in for the module's logger: what it logged, at which level."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __getattr__(self, level: str) -> Any:
        def record(event: str, **fields: Any) -> None:
            self.events.append({"event": event, "level": level, **fields})

        return record


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(witnessing, "log", recorder)
    return recorder


def refusals(book: str, witness: str) -> float:
    value = REGISTRY.get_sample_value(
        "timebank_witness_refusals_total", {"book": book, "witness": witness, "status": "422"}
    )
    return value or 0.0


@pytest.fixture
async def witnessed(api: Api) -> tuple[Api, str, str, str, dict[str, FakeWitness]]:
    book = await api.book()
    issuance, target = await api.funded(book, 0)
    r = await api.client.get(f"/v1/books/{book}/log-keys")
    log_vkeys = r.text.split()
    witnesses = {f"w{i}.test": FakeWitness(f"w{i}.test/witness", log_vkeys) for i in (1, 2, 3)}
    async with acquire(api.app.state.audit.pool) as conn:
        for host, w in witnesses.items():
            await add_witness(conn, book, w.vkey, f"http://{host}")
    return api, book, issuance, target, witnesses


async def ask(api: Api, witnesses: dict[str, FakeWitness]) -> None:
    async with httpx.AsyncClient(transport=transport(witnesses)) as client:
        await witnessing.ask_due(api.app.state.audit.pool, client)


def cosigners(note: str, witnesses: dict[str, FakeWitness]) -> list[str]:
    keys = [cosignature.parse_cosigner_key(w.vkey) for w in witnesses.values()]
    text_ = note[: note.rfind("\n\n") + 1]
    found = []
    for line in note[len(text_) + 1 :].splitlines(keepends=True):
        for key in keys:
            try:
                open_note(text_ + "\n" + line, [key])
            except Exception:
                continue
            found.append(key.name)
    return sorted(found)


async def test_every_witness_cosigns_and_the_checkpoint_carries_the_lines(witnessed) -> None:  # type: ignore[no-untyped-def]
    api, book, issuance, target, witnesses = witnessed
    size = await grow(api, book, issuance, target, 3)
    await ask(api, witnesses)
    note = await served(api, book)
    assert cosigners(note, witnesses) == sorted(w.name for w in witnesses.values())
    # The log's own signature still opens it, unknown lines ignored.
    log_key = parse_verifier_key(
        (await api.client.get(f"/v1/books/{book}/log-keys")).text.split()[0]
    )
    assert parse_checkpoint(open_note(note, [log_key])[0]).size == size
    # The next checkpoint is asked from the size each cosigned, with a real proof.
    bigger = await grow(api, book, issuance, target, 4)
    await ask(api, witnesses)
    assert all(w.size == bigger for w in witnesses.values())
    assert cosigners(await served(api, book), witnesses) == sorted(
        w.name for w in witnesses.values()
    )
    listed = (await api.client.get(f"/v1/books/{book}/witnesses")).json()
    assert listed["alarm"] is False
    assert [i["cosigned_size"] for i in listed["items"]] == [bigger] * 3


async def test_a_witness_that_is_down_catches_up_from_what_it_cosigned(witnessed, logged) -> None:  # type: ignore[no-untyped-def]
    api, book, issuance, target, witnesses = witnessed
    first = await grow(api, book, issuance, target, 2)
    await ask(api, witnesses)
    witnesses["w3.test"].down = True
    second = await grow(api, book, issuance, target, 3)
    await ask(api, witnesses)
    assert [w.size for w in witnesses.values()] == [second, second, first]
    assert [e["level"] for e in logged.events if e["event"] == "audit.witness_unreachable"] == [
        "warning"
    ]
    note = await served(api, book)
    assert len(cosigners(note, witnesses)) == 2  # the others were not held up
    async with acquire(api.app.state.audit.pool) as conn:
        w3 = next(w for w in await witness_statuses(conn, book) if w.name.startswith("w3"))
    assert w3.failures == 1 and w3.cosigned_size == first and not w3.alarm
    witnesses["w3.test"].down = False
    third = await grow(api, book, issuance, target, 1)
    await make_due(api, book)
    await ask(api, witnesses)
    assert [w.size for w in witnesses.values()] == [third] * 3
    assert len(cosigners(await served(api, book), witnesses)) == 3


async def test_a_witness_that_lost_its_state_is_caught_up_through_its_409(witnessed) -> None:  # type: ignore[no-untyped-def]
    api, book, issuance, target, witnesses = witnessed
    await grow(api, book, issuance, target, 2)
    await ask(api, witnesses)
    witnesses["w2.test"].size, witnesses["w2.test"].root = 0, merkle.EMPTY_ROOT
    size = await grow(api, book, issuance, target, 2)
    await ask(api, witnesses)
    assert witnesses["w2.test"].size == size


async def test_a_refusal_is_an_alarm_until_the_witness_cosigns_again(witnessed, logged) -> None:  # type: ignore[no-untyped-def]
    api, book, issuance, target, witnesses = witnessed
    await grow(api, book, issuance, target, 2)
    await ask(api, witnesses)
    # The witness remembers another history of the same size: the log's does not extend it.
    w1 = witnesses["w1.test"]
    w1.root = bytes(32)
    before = refusals(book, w1.name)
    await grow(api, book, issuance, target, 2)
    await ask(api, witnesses)
    alarms = [e for e in logged.events if e["event"] == "audit.witness_refused"]
    assert len(alarms) == 1 and alarms[0]["level"] == "error"
    assert alarms[0]["witness"] == w1.name and alarms[0]["status"] == 422
    assert refusals(book, w1.name) == before + 1
    listed = (await api.client.get(f"/v1/books/{book}/witnesses")).json()
    assert listed["alarm"] is True
    assert [i["alarm"] for i in listed["items"]] == [True, False, False]
    assert listed["items"][0]["refusal"].startswith("422")
    scraped = (await api.client.get("/metrics")).text
    assert f'timebank_witness_alarm{{book="{book}",witness="{w1.name}"}} 1.0' in scraped
    # Not asked again at once: a refusal waits RETRY_REFUSED_S.
    await ask(api, witnesses)
    assert refusals(book, w1.name) == before + 1
    # Its operator restores what it saw; the next round clears the alarm.
    w1.size, w1.root = 0, merkle.EMPTY_ROOT
    await make_due(api, book)
    await ask(api, witnesses)
    listed = (await api.client.get(f"/v1/books/{book}/witnesses")).json()
    assert listed["alarm"] is False
    scraped = (await api.client.get("/metrics")).text
    assert f'timebank_witness_alarm{{book="{book}",witness="{w1.name}"}} 0.0' in scraped


async def test_adding_a_witness_checks_its_key_and_url(api: Api) -> None:
    book = await api.book()
    log_vkey = (await api.client.get(f"/v1/books/{book}/log-keys")).text.split()[0]
    key = Ed25519PrivateKey.generate()
    good = cosignature.Cosigner.from_public_key("w.test/x", key.public_key()).vkey()
    async with acquire(api.app.state.audit.pool) as conn:
        for vkey, url, field_ in (
            (log_vkey, "http://w.test", "vkey"),  # a note key (type 0x01), not a cosigner
            ("nonsense", "http://w.test", "vkey"),
            (good, "ftp://w.test", "url"),
            (good, "http://w.test/?x=1", "url"),
            (good, "HTTP://w.test", "url"),
            (good, "http://w.test/\x00", "url"),
            (
                cosignature.Cosigner.from_public_key("w" * 201, key.public_key()).vkey(),
                "http://w.test",
                "vkey",
            ),
            (good.replace("w.test/x", "w.te\x01st/x", 1), "http://w.test", "vkey"),
        ):
            with pytest.raises(Exception) as refused:
                await add_witness(conn, book, vkey, url)
            assert refused.value.extra["errors"][0]["field"] == field_  # type: ignore[attr-defined]
        added = await add_witness(conn, book, good, "https://w.test/prefix")
    assert added.name == "w.test/x" and added.cosigned_size is None


async def test_a_long_outage_a_far_timestamp_and_a_cut_back_log_are_each_recorded(  # type: ignore[no-untyped-def]
    witnessed, logged
) -> None:
    api, book, issuance, target, witnesses = witnessed
    await grow(api, book, issuance, target, 2)
    # A witness down for days: its backoff stays at the cap (2 ** failures would overflow).
    async with api.app.state.sessions() as session, session.begin():
        await session.execute(
            text("UPDATE book_witnesses SET failures = 2000 WHERE book_code = :b AND name = :n"),
            {"b": book, "n": witnesses["w1.test"].name},
        )
    witnesses["w1.test"].down = True
    # A witness that states a time past year 9999 (C2SP allows up to 2^63 - 1).
    witnesses["w2.test"].clock = 2**62
    # A witness that holds a size this log never signed: the log was cut back.
    witnesses["w3.test"].size = 10**6
    await ask(api, witnesses)
    async with acquire(api.app.state.audit.pool) as conn:
        found = {w.name: w for w in await witness_statuses(conn, book)}
        gap = await conn.fetchval(
            "SELECT due_at - now() FROM book_witnesses WHERE book_code = $1 AND name = $2",
            book,
            witnesses["w1.test"].name,
        )
    down, far, ahead = (found[witnesses[h].name] for h in ("w1.test", "w2.test", "w3.test"))
    assert down.failures == 2001 and not down.alarm
    assert gap.total_seconds() <= witnessing.MAX_BACKOFF_S
    assert far.failures == 1 and "9999" in (far.last_error or "") and not far.alarm
    assert ahead.alarm and (ahead.refusal or "").startswith("409")
    assert cosigners(await served(api, book), witnesses) == []


async def test_a_removed_witness_leaves_no_alarm_behind(witnessed) -> None:  # type: ignore[no-untyped-def]
    api, book, issuance, target, witnesses = witnessed
    await grow(api, book, issuance, target, 2)
    # It remembers another history of size 1: the log's proof from 1 does not reach its root.
    witnesses["w1.test"].size, witnesses["w1.test"].root = 1, bytes(32)
    await ask(api, witnesses)
    name = witnesses["w1.test"].name
    alarm = f'timebank_witness_alarm{{book="{book}",witness="{name}"}}'
    assert f"{alarm} 1.0" in (await api.client.get("/metrics")).text
    async with acquire(api.app.state.audit.pool) as conn:
        assert await remove_witness(conn, book, name)
    assert f"{alarm} 0.0" in (await api.client.get("/metrics")).text
