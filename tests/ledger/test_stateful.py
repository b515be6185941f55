"""Hypothesis drives random postings, holds, reversals and freezes against a model.

After every step: each account's balances equal the model's, and per asset the book sums to
zero. At the end of each run the book's chain and balances are recomputed from the journal.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from app.identity.credentials import create_credential
from app.ledger.verify import BookSummary
from app.ledger.verify_runner import verify_book
from app.main import create_app
from tests.conftest import SETTINGS, ScratchDatabase

LIMIT = 1_000


@dataclass
class Model:
    asset: str
    limit: int = 0
    open: bool = True
    posted: int = 0
    pd: int = 0
    pc: int = 0

    def can_take(self, amount: int) -> bool:
        return self.posted - self.pd - amount + self.limit >= 0


@dataclass
class World:
    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient
    app_url: str

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)


@dataclass
class Book:
    code: str
    accounts: dict[str, Model] = field(default_factory=dict)
    holds: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    reversible: list[tuple[str, str, str, int]] = field(default_factory=list)


def make_machine(world: World) -> type[RuleBasedStateMachine]:
    client = world.client

    class LedgerMachine(RuleBasedStateMachine):
        book: Book

        def post(self, url: str, body: dict[str, Any] | None = None) -> httpx.Response:
            kwargs: dict[str, Any] = {"headers": {"Idempotency-Key": uuid.uuid4().hex}}
            if body is not None:
                kwargs["json"] = body
            return world.run(client.post(url, **kwargs))  # type: ignore[no-any-return]

        @initialize()
        def open_book(self) -> None:
            code = f"h{uuid.uuid4().hex[:10]}"
            opened = world.run(client.post("/v1/books", json={"code": code, "name": code}))
            assert opened.status_code == 201, opened.text
            self.book = Book(code)
            for asset, limit in [
                ("HOUR", LIMIT),
                ("HOUR", 0),
                ("HOUR", 0),
                ("HOUR", 50),
                ("POINT", LIMIT),
                ("POINT", 0),
            ]:
                r = world.run(
                    client.post(
                        f"/v1/books/{code}/accounts",
                        json={"asset": asset, "owner": "h", "overdraft_limit": limit},
                    )
                )
                assert r.status_code == 201, r.text
                self.book.accounts[r.json()["id"]] = Model(asset, limit)

        def pair(self, data: st.DataObject) -> tuple[str, str]:
            ids = list(self.book.accounts)
            src = data.draw(st.sampled_from(ids))
            same = [
                a
                for a in ids
                if a != src and self.book.accounts[a].asset == self.book.accounts[src].asset
            ]
            return src, data.draw(st.sampled_from(same))

        @rule(data=st.data(), amount=st.integers(1, 400))
        def transfer(self, data: st.DataObject, amount: int) -> None:
            src, dst = self.pair(data)
            a, b = self.book.accounts[src], self.book.accounts[dst]
            r = self.post(
                f"/v1/books/{self.book.code}/transactions",
                {
                    "legs": [
                        {"account_id": src, "amount": -amount},
                        {"account_id": dst, "amount": amount},
                    ]
                },
            )
            if not (a.open and b.open):
                assert r.status_code == 409 and r.json()["type"].endswith(":account-not-open")
            elif not a.can_take(amount):
                assert r.status_code == 409 and r.json()["type"].endswith(":insufficient-funds")
            else:
                assert r.status_code == 201, r.text
                a.posted -= amount
                b.posted += amount
                self.book.reversible.append((r.json()["id"], src, dst, amount))

        @rule(data=st.data(), amount=st.integers(1, 300))
        def hold(self, data: st.DataObject, amount: int) -> None:
            src, dst = self.pair(data)
            a, b = self.book.accounts[src], self.book.accounts[dst]
            r = self.post(
                f"/v1/books/{self.book.code}/holds",
                {"from_account_id": src, "to_account_id": dst, "amount": amount},
            )
            if not (a.open and b.open):
                assert r.status_code == 409
            elif not a.can_take(amount):
                assert r.status_code == 409 and r.json()["type"].endswith(":insufficient-funds")
            else:
                assert r.status_code == 201, r.text
                a.pd += amount
                b.pc += amount
                self.book.holds[r.json()["id"]] = (src, dst, amount)

        @precondition(lambda self: bool(self.book.holds))
        @rule(data=st.data(), void=st.booleans())
        def resolve(self, data: st.DataObject, void: bool) -> None:
            hold_id = data.draw(st.sampled_from(list(self.book.holds)))
            src, dst, held = self.book.holds[hold_id]
            a, b = self.book.accounts[src], self.book.accounts[dst]
            amount = data.draw(st.integers(1, held))
            if void:
                r = self.post(f"/v1/holds/{hold_id}/void")
            else:
                r = self.post(f"/v1/holds/{hold_id}/post", {"amount": amount})
                if not (a.open and b.open):
                    assert r.status_code == 409
                    return
            assert r.status_code == 200, r.text
            del self.book.holds[hold_id]
            a.pd -= held
            b.pc -= held
            if not void:
                a.posted -= amount
                b.posted += amount
                self.book.reversible.append((r.json()["id"], src, dst, amount))

        @precondition(lambda self: bool(self.book.reversible))
        @rule(data=st.data())
        def reverse(self, data: st.DataObject) -> None:
            index = data.draw(st.integers(0, len(self.book.reversible) - 1))
            tx_id, src, dst, amount = self.book.reversible[index]
            a, b = self.book.accounts[src], self.book.accounts[dst]
            r = self.post(f"/v1/transactions/{tx_id}/reversal")
            if not (a.open and b.open):
                assert r.status_code == 409
            elif not b.can_take(amount):
                assert r.status_code == 409 and r.json()["type"].endswith(":insufficient-funds")
            else:
                assert r.status_code == 201, r.text
                a.posted += amount
                b.posted -= amount
                self.book.reversible.pop(index)
                again = self.post(f"/v1/transactions/{tx_id}/reversal")
                assert again.status_code == 409

        @rule(data=st.data())
        def toggle_freeze(self, data: st.DataObject) -> None:
            account_id = data.draw(st.sampled_from(list(self.book.accounts)))
            model = self.book.accounts[account_id]
            status = "open" if not model.open else "frozen"
            r = world.run(client.patch(f"/v1/accounts/{account_id}", json={"status": status}))
            assert r.status_code == 200, r.text
            model.open = not model.open

        @rule(data=st.data(), amounts=st.lists(st.integers(1, 120), min_size=2, max_size=12))
        def burst(self, data: st.DataObject, amounts: list[int]) -> None:
            """Concurrent transfers from one account: apply what the ledger accepted."""
            src, dst = self.pair(data)
            url = f"/v1/books/{self.book.code}/transactions"

            async def fire() -> list[httpx.Response]:
                return await asyncio.gather(
                    *(
                        client.post(
                            url,
                            json={
                                "legs": [
                                    {"account_id": src, "amount": -n},
                                    {"account_id": dst, "amount": n},
                                ]
                            },
                            headers={"Idempotency-Key": uuid.uuid4().hex},
                        )
                        for n in amounts
                    )
                )

            for n, r in zip(amounts, world.run(fire()), strict=True):
                assert r.status_code in (201, 409), r.text
                if r.status_code == 201:
                    self.book.accounts[src].posted -= n
                    self.book.accounts[dst].posted += n
                    self.book.reversible.append((r.json()["id"], src, dst, n))

        @invariant()
        def balances_match_model_and_sum_to_zero(self) -> None:
            if not hasattr(self, "book"):
                return
            totals: dict[str, int] = {}
            for account_id, model in self.book.accounts.items():
                got = world.run(client.get(f"/v1/accounts/{account_id}")).json()
                assert (got["posted"], got["pending_debits"], got["pending_credits"]) == (
                    model.posted,
                    model.pd,
                    model.pc,
                ), account_id
                assert got["available"] + got["overdraft_limit"] >= 0
                totals[model.asset] = totals.get(model.asset, 0) + got["posted"]
            assert set(totals.values()) == {0}

        def teardown(self) -> None:
            if not hasattr(self, "book"):
                return

            async def check() -> BookSummary:
                return await verify_book(world.app_url, self.book.code)

            assert world.run(check()).open_holds == len(self.book.holds)

    return LedgerMachine


@pytest.mark.slow  # many long random runs: no process, but long
def test_ledger_state_machine(database: ScratchDatabase) -> None:
    loop = asyncio.new_event_loop()
    app = create_app(SETTINGS.model_copy(update={"database_url": database.app_url}))
    lifespan = app.router.lifespan_context(app)
    loop.run_until_complete(lifespan.__aenter__())
    try:

        async def token() -> str:
            async with app.state.sessions() as session, session.begin():
                return (await create_credential(session, "admin"))[1]

        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://h",
            headers={"Authorization": f"Bearer {loop.run_until_complete(token())}"},
        )
        world = World(loop, client, database.app_url)
        machine = make_machine(world)
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=25,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
                derandomize=True,
            ),
        )
        loop.run_until_complete(client.aclose())
    finally:
        loop.run_until_complete(lifespan.__aexit__(None, None, None))
        loop.close()
