"""Expiry: the lot arithmetic (pure: FIFO lots replayed from movements), `expire_lapsed` against
the ledger, and the upcoming expiries members see."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app.exchange.accounts import EXPIRED, book_account, find_book_account, member_account
from app.exchange.expiry import service as expiry
from app.exchange.expiry.lots import (
    Lots,
    Movement,
    expiry_plan,
    lapsed,
    lapses_on,
    replay,
    upcoming,
)
from app.exchange.expiry.service import account_lots, expire_lapsed
from app.ledger import service as ledger_service
from app.ledger.outcomes import IdempotencyRef
from app.ledger.posting import Draft
from app.ledger.verify_runner import verify_book
from tests.conftest import Api

ZONE = ZoneInfo("Asia/Shanghai")
START = datetime(2020, 1, 1, tzinfo=UTC)

# One step of an account's history: a credit, a debit (possibly beyond the balance), or the
# reversal of an earlier step; each after some days.
Step = tuple[str, int, int]
steps = st.lists(
    st.tuples(
        st.sampled_from(["credit", "credit", "debit", "reverse"]),
        st.integers(1, 500),
        st.integers(0, 400),
    ),
    max_size=40,
)


def movements(history: list[Step], within_balance: bool = False) -> list[Movement]:
    """Movements in journal order; with `within_balance`, debits never exceed the balance (the
    ledger's rule for member accounts)."""
    out: list[Movement] = []
    reversed_ids: set[str] = set()
    at, balance = START, 0
    for index, (action, amount, days) in enumerate(history):
        at += timedelta(days=days)
        tx = f"t{index}"
        if action == "credit":
            move = Movement(tx, at, amount)
        elif action == "debit":
            take = min(amount, balance) if within_balance else amount
            if not take:
                continue
            move = Movement(tx, at, -take)
        else:
            candidates = [m for m in out if m.reverses is None and m.tx_id not in reversed_ids]
            if not candidates:
                continue
            original = candidates[amount % len(candidates)]
            if within_balance and original.amount > balance:
                continue
            reversed_ids.add(original.tx_id)
            move = Movement(tx, at, -original.amount, original.tx_id)
        balance += move.amount
        out.append(move)
    return out


def shape(lots: Lots) -> tuple[dict[tuple[datetime, str], int], int]:
    """The lots as amounts per (earning time, crediting entry), and the debt."""
    amounts: dict[tuple[datetime, str], int] = {}
    for lot in lots.held:
        amounts[(lot.earned_at, lot.origin)] = amounts.get((lot.earned_at, lot.origin), 0) + (
            lot.amount
        )
    return amounts, lots.debt


@given(steps)
def test_the_lots_always_sum_to_the_balance_replayed(history: list[Step]) -> None:
    lots, balance = Lots(), 0
    for move in movements(history):
        lots.apply(move)
        balance += move.amount
        assert lots.balance == balance
        assert all(lot.amount > 0 for lot in lots.held) and lots.debt >= 0
        assert [lot.key for lot in lots.held] == sorted(lot.key for lot in lots.held)
        assert sum(lot.amount for lot in lots.remaining()) == max(0, balance)


@given(steps, st.integers(1, 800))
def test_spending_consumes_the_oldest_first(history: list[Step], spend: int) -> None:
    lots = replay(movements(history, within_balance=True))
    before = {lot.key for lot in lots.held}
    held = sum(lot.amount for lot in lots.held)
    lots.apply(Movement("spend", START + timedelta(days=20_000), -spend))
    taken = lots.taken.get("spend", [])
    assert sum(p.amount for p in taken) == min(spend, held)
    assert lots.debt == max(0, spend - held)
    assert {p.key for p in taken} <= before
    if taken and lots.held:
        assert max(p.key for p in taken) <= min(lot.key for lot in lots.held)


@given(steps, st.integers(1, 800))
def test_a_reversed_debit_puts_back_the_lots_it_took(history: list[Step], spend: int) -> None:
    lots = replay(movements(history, within_balance=True))
    before = shape(lots)
    later = START + timedelta(days=20_000)
    lots.apply(Movement("spend", later, -spend))
    lots.apply(Movement("undo", later, spend, "spend"))
    assert shape(lots) == before


@given(steps, st.integers(1, 800))
def test_a_reversed_credit_takes_back_its_own_lot(history: list[Step], credit: int) -> None:
    lots = replay(movements(history, within_balance=True))
    before = shape(lots)
    later = START + timedelta(days=20_000)
    lots.apply(Movement("credit", later, credit))
    lots.apply(Movement("undo", later, -credit, "credit"))
    assert shape(lots) == before


@settings(max_examples=300)
@given(
    steps,
    st.integers(0, 3),
    st.dates(date(2020, 1, 1), date(2050, 12, 31)),
    st.integers(-100, 5000),
)
def test_expiry_takes_only_what_lapsed_and_is_unspent(
    history: list[Step], years: int, as_of: date, available: int
) -> None:
    lots = replay(movements(history, within_balance=True))
    due = lapsed(lots, years, ZONE, as_of)
    plan = expiry_plan(lots, years, ZONE, as_of, available)
    total = sum(n for _, n in plan)
    assert total == max(0, min(sum(n for _, n in due), available))
    assert all(n > 0 for _, n in plan)
    for year, amount in plan:
        assert date(year + years + 1, 1, 1) <= as_of
        assert amount <= dict(due)[year]
    # Taking it (a debit, oldest first) leaves every unit that has not lapsed where it was.
    still_valid = upcoming(lots, years, ZONE, as_of)
    if total:
        lots.apply(Movement("expiry", START + timedelta(days=20_000), -total))
    assert upcoming(lots, years, ZONE, as_of) == still_valid
    assert sum(n for _, n in lapsed(lots, years, ZONE, as_of)) == sum(n for _, n in due) - total
    # Once all that lapsed is taken, expiring again takes nothing.
    if available >= sum(n for _, n in due):
        assert expiry_plan(lots, years, ZONE, as_of, available) == []


def test_lapse_dates_follow_calendar_years_of_the_service_zone() -> None:
    # Earned in 2026, valid for 2 more years: gone on 2029-01-01.
    assert lapses_on(datetime(2026, 3, 1, tzinfo=UTC), 2, ZONE) == date(2029, 1, 1)
    assert lapses_on(datetime(2026, 12, 31, 15, 59, tzinfo=UTC), 2, ZONE) == date(2029, 1, 1)
    # 16:00 UTC on 31 December is already 1 January in Shanghai.
    assert lapses_on(datetime(2026, 12, 31, 16, 0, tzinfo=UTC), 2, ZONE) == date(2030, 1, 1)
    assert lapses_on(datetime(2026, 6, 1, tzinfo=UTC), 0, ZONE) == date(2027, 1, 1)


def test_an_example_history() -> None:
    at = [datetime(y, 6, 1, tzinfo=UTC) for y in (2024, 2025, 2026)]
    lots = replay(
        [
            Movement("a", at[0], 100),
            Movement("b", at[1], 50),
            Movement("c", at[1], -30),  # from 2024's
            Movement("d", at[2], 20),
            Movement("e", at[2], 30, "c"),  # the spending undone: back into 2024
            Movement("f", at[2], -10),
        ]
    )
    assert lots.balance == 160
    assert lapsed(lots, 1, ZONE, date(2026, 1, 1)) == [(2024, 90)]
    assert expiry_plan(lots, 1, ZONE, date(2026, 1, 1), 40) == [(2024, 40)]
    assert upcoming(lots, 1, ZONE, date(2026, 1, 1)) == [
        (date(2027, 1, 1), 50),
        (date(2028, 1, 1), 20),
    ]
    assert expiry_plan(lots, 1, ZONE, date(2027, 1, 1), 500) == [(2024, 90), (2025, 50)]
    assert expiry_plan(lots, 1, ZONE, date(2025, 12, 31), 500) == []


def test_a_service_credit_counts_from_its_service_day() -> None:
    service_day = datetime(2025, 11, 20, tzinfo=ZONE)
    lots = replay(
        [
            Movement("a", datetime(2026, 1, 10, tzinfo=UTC), 50),
            # Approved in March 2026 for service of November 2025: a lot of 2025.
            Movement("b", datetime(2026, 3, 1, tzinfo=UTC), 100, earned_at=service_day),
            # A service day after the posting counts from the posting, never later.
            Movement(
                "c",
                datetime(2026, 3, 2, tzinfo=UTC),
                7,
                earned_at=datetime(2027, 1, 5, tzinfo=ZONE),
            ),
            Movement("d", datetime(2026, 4, 1, tzinfo=UTC), -30),  # the oldest: 2025's
        ]
    )
    assert [(lot.origin, lot.earned_at, lot.amount) for lot in lots.held] == [
        ("b", service_day, 70),
        ("a", datetime(2026, 1, 10, tzinfo=UTC), 50),
        ("c", datetime(2026, 3, 2, tzinfo=UTC), 7),
    ]
    assert upcoming(lots, 2, ZONE, date(2026, 12, 5)) == [
        (date(2028, 1, 1), 70),
        (date(2029, 1, 1), 57),
    ]
    assert expiry_plan(lots, 2, ZONE, date(2028, 1, 1), 500) == [(2025, 70)]


# ---------------------------------------------------------------------------------------------
# Through the ledger: `expire_lapsed` and the balances endpoint


class LedgerClock:
    """The time the sequencer stamps entries with (tests move it to earn in past years)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def ledger_clock(monkeypatch: pytest.MonkeyPatch) -> LedgerClock:
    clock = LedgerClock(datetime(2024, 6, 1, 2, tzinfo=UTC))
    monkeypatch.setattr("app.ledger.sequencer.utc_now", clock)
    return clock


@dataclass
class Scene:
    api: Api
    book: str
    issuance: str  # a charity's POINT issuance account
    member: str
    points: str  # the member's POINT account

    async def post(self, legs: list[tuple[str, int]], kind: str = "points_award") -> dict[str, Any]:
        """A posting straight through the sequencer (stamped by the ledger's clock)."""
        draft = Draft(self.book, "post", kind, legs)
        ref = IdempotencyRef(self.api.credential, uuid.uuid4().hex, "test")
        outcome = await self.api.app.state.sequencer.submit(draft, ref)
        assert outcome.status_code == 201, outcome.body
        body: dict[str, Any] = outcome.body
        return body

    async def earn(self, amount: int) -> dict[str, Any]:
        return await self.post([(self.issuance, -amount), (self.points, amount)])

    async def spend(self, amount: int) -> dict[str, Any]:
        return await self.post([(self.points, -amount), (self.issuance, amount)], "redemption")

    async def posted(self, account: str | None = None) -> int:
        return int((await self.api.balance(account or self.points))["posted"])

    async def expire(self, as_of: date) -> dict[str, Any]:
        state = self.api.app.state
        summary = await expire_lapsed(state.sessions, state.sequencer, as_of, ZONE)
        return summary.as_json()

    async def entries(self, kind: str) -> list[dict[str, Any]]:
        async with self.api.app.state.sessions() as session:
            rows = await session.execute(
                text(
                    "SELECT body FROM journal_entries WHERE book_code = :b AND kind = :k "
                    "ORDER BY seq"
                ),
                {"b": self.book, "k": kind},
            )
            return [json.loads(bytes(row.body)) for row in rows]

    async def expired_account(self) -> str:
        async with self.api.app.state.sessions() as session:
            found = await find_book_account(session, self.book, EXPIRED, "POINT")
        assert found is not None
        return found

    async def lots(self) -> Lots:
        async with self.api.app.state.sessions() as session:
            return await account_lots(session, self.points, ZONE)


async def validity(api: Api, asset: str, years: int | None) -> None:
    r = await api.client.patch(
        f"/v1/assets/{asset}",
        json={"expires_after_years": years},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 200, r.text


async def register(api: Api, book: str) -> dict[str, Any]:
    r = await api.client.post(
        "/v1/members",
        json={
            "book": book,
            "display_name": "王积分",
            "phone": f"138{uuid.uuid4().int % 10**8:08d}",
            "birth_date": "1958-05-04",
            "identity": {"provider": "wechat", "subject": f"o_{uuid.uuid4().hex}"},
        },
    )
    assert r.status_code == 201, r.text
    member: dict[str, Any] = r.json()
    return member


async def make_scene(api: Api, years: int | None = 2) -> Scene:
    """A book with a charity issuing POINT and a member; POINT valid for `years` more years."""
    book = await api.book()
    r = await api.client.post(
        "/v1/organisations",
        json={
            "book": book,
            "kind": "charity",
            "name": "慈善基金会",
            "accounts": [{"asset": "POINT", "purpose": "issuance", "overdraft_limit": 10**12}],
        },
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    member = await register(api, book)
    points = next(a["account_id"] for a in member["accounts"] if a["asset"] == "POINT")
    await validity(api, "POINT", years)
    issuance = next(a["id"] for a in r.json()["accounts"] if a["asset"] == "POINT")
    return Scene(api, book, issuance, member["id"], points)


def year_of(posting: dict[str, Any]) -> int:
    posted_at = datetime.fromisoformat(posting["entry"]["posted_at"].replace("Z", "+00:00"))
    return posted_at.astimezone(ZONE).year


async def verify(api: Api, book: str) -> None:
    await verify_book(api.app.state.settings.database_url, book)


async def test_points_earned_now_lapse_at_the_end_of_the_second_year_after(api: Api) -> None:
    s = await make_scene(api, years=2)
    earned = await api.transfer(s.book, s.issuance, s.points, 500)
    assert earned.status_code == 201, earned.text
    spent = await api.transfer(s.book, s.points, s.issuance, 120)
    assert spent.status_code == 201, spent.text
    lapse = date(year_of(earned.json()) + 3, 1, 1)

    balances = (await api.client.get(f"/v1/members/{s.member}/balances")).json()["balances"]
    by_asset = {b["asset"]: b for b in balances}
    assert by_asset["POINT"]["expiries"] == [{"lapses_on": lapse.isoformat(), "amount": 380}]
    assert by_asset["POINT"]["posted"] == 380 and by_asset["POINT"]["book"] == s.book
    assert by_asset["HOUR"]["expiries"] == []

    before = await s.expire(lapse - timedelta(days=1))
    assert before["entries_posted"] == 0 and before["units_expired_by_asset"] == {"POINT": 0}
    assert before["as_of"] == (lapse - timedelta(days=1)).isoformat()
    assert await s.entries("expiry") == []

    on = await s.expire(lapse)
    assert on["entries_posted"] == 1 and on["units_expired_by_asset"] == {"POINT": 380}
    assert on["accounts_examined"] == 1 and on["accounts_unsettled"] == 0
    [entry] = await s.entries("expiry")
    expired = await s.expired_account()
    assert [(leg["account_id"], leg["amount"]) for leg in entry["legs"]] == [
        (s.points, -380),
        (expired, 380),
    ]
    assert entry["meta"] == {
        "as_of": lapse.isoformat(),
        "expires_after_years": 2,
        "time_zone": ZONE.key,
        "lapsed": [{"earned_year": lapse.year - 3, "amount": 380}],
        "read_seq": spent.json()["seq"],
    }
    assert await s.posted() == 0 and await s.posted(expired) == 380

    again = await s.expire(lapse)
    later = await s.expire(lapse + timedelta(days=800))
    assert again["entries_posted"] == later["entries_posted"] == 0
    assert len(await s.entries("expiry")) == 1
    balances = (await api.client.get(f"/v1/members/{s.member}/balances")).json()["balances"]
    assert {b["asset"]: b["expiries"] for b in balances} == {"HOUR": [], "POINT": []}
    await verify(api, s.book)


async def test_balances_show_the_members_accounts_in_other_books_within_reach(api: Api) -> None:
    s = await make_scene(api, years=0)
    await api.transfer(s.book, s.issuance, s.points, 40)
    other = await api.book()
    issuance = await api.account(other, "POINT", overdraft_limit=10**9)
    away = await member_account(api.app.state.sessions, other, uuid.UUID(s.member), "POINT")
    moved = await api.transfer(other, issuance, away, 25)
    assert moved.status_code == 201, moved.text
    lapse = date(year_of(moved.json()) + 1, 1, 1).isoformat()

    balances = (await api.client.get(f"/v1/members/{s.member}/balances")).json()["balances"]
    assert [(b["book"], b["asset"], b["posted"], b["expiries"]) for b in balances] == [
        (s.book, "HOUR", 0, []),
        (s.book, "POINT", 40, [{"lapses_on": lapse, "amount": 40}]),
        (other, "POINT", 25, [{"lapses_on": lapse, "amount": 25}]),
    ]
    # An admin of the member's book does not reach the other book.
    created = await api.client.post(
        "/v1/credentials",
        json={"role": "admin", "book": s.book},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    token = created.json()["token"]
    r = await api.client.get(
        f"/v1/members/{s.member}/balances", headers={"Authorization": f"Bearer {token}"}
    )
    assert [b["book"] for b in r.json()["balances"]] == [s.book, s.book]


async def test_past_years_lapse_year_by_year_and_holds_keep_what_they_reserve(
    api: Api, ledger_clock: LedgerClock
) -> None:
    s = await make_scene(api, years=1)
    await s.earn(100)  # 2024: valid until the end of 2025
    ledger_clock.at = datetime(2025, 3, 1, tzinfo=UTC)
    await s.earn(50)  # 2025
    await s.spend(30)  # from 2024's
    ledger_clock.at = datetime(2025, 9, 1, tzinfo=UTC)
    mistaken = await s.spend(40)  # from 2024's again
    async with api.app.state.sessions() as session:
        original = await ledger_service.get_transaction(session, uuid.UUID(mistaken["id"]))
    undo = await ledger_service.reverse_transaction(
        api.app.state.sequencer, original, IdempotencyRef(api.credential, "undo", "undo")
    )
    assert undo.status_code == 201, undo.body  # the 40 go back to 2024's lot
    assert lapsed(await s.lots(), 1, ZONE, date(2026, 1, 1)) == [(2024, 70)]

    ledger_clock.at = datetime(2026, 2, 1, tzinfo=UTC)
    hold = Draft(s.book, "hold", "hold", [(s.points, -80), (s.issuance, 80)], expires_in_s=3600)
    held = await api.app.state.sequencer.submit(hold, IdempotencyRef(api.credential, "h", "h"))
    assert held.status_code == 201, held.body
    # 120 posted, 80 held: only 40 of the 70 lapsed can go now.
    first = await s.expire(date(2026, 2, 1))
    assert first["units_expired_by_asset"] == {"POINT": 40}
    assert (await s.entries("expiry"))[-1]["meta"]["lapsed"] == [
        {"earned_year": 2024, "amount": 40}
    ]
    assert (await s.expire(date(2026, 2, 1)))["entries_posted"] == 0
    void = Draft(s.book, "hold_void", "hold_void", hold_id=held.body["id"])
    assert (await api.app.state.sequencer.submit(void)).status_code == 201
    second = await s.expire(date(2026, 2, 1))
    assert second["units_expired_by_asset"] == {"POINT": 30}
    assert (await s.expire(date(2026, 12, 31)))["entries_posted"] == 0

    api.app.state.clock = lambda: datetime(2026, 2, 1, tzinfo=UTC)
    balances = (await api.client.get(f"/v1/members/{s.member}/balances")).json()["balances"]
    point = next(b for b in balances if b["asset"] == "POINT")
    assert point["posted"] == 50
    assert point["expiries"] == [{"lapses_on": "2027-01-01", "amount": 50}]

    ledger_clock.at = datetime(2027, 1, 1, 0, 30, tzinfo=ZONE)
    third = await s.expire(date(2027, 1, 1))
    assert third["units_expired_by_asset"] == {"POINT": 50}
    assert [e["meta"]["lapsed"] for e in await s.entries("expiry")] == [
        [{"earned_year": 2024, "amount": 40}],
        [{"earned_year": 2024, "amount": 30}],
        [{"earned_year": 2025, "amount": 50}],
    ]
    assert await s.posted() == 0 and await s.posted(await s.expired_account()) == 120
    await verify(api, s.book)


async def test_a_spending_between_the_read_and_the_expiry_makes_the_ledger_refuse_it(
    api: Api, ledger_clock: LedgerClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = await make_scene(api, years=1)
    await s.earn(100)  # 2024
    ledger_clock.at = datetime(2025, 5, 1, tzinfo=UTC)
    await s.earn(100)  # 2025
    ledger_clock.at = datetime(2026, 2, 1, tzinfo=UTC)
    read = expiry._read
    spent: list[dict[str, Any]] = []

    async def read_then_spend(run: Any, targets: Any) -> Any:
        plans = await read(run, targets)
        if not spent:  # the member spends 60 of 2024's right after the first read
            spent.append(await s.spend(60))
        return plans

    monkeypatch.setattr(expiry, "_read", read_then_spend)
    summary = await s.expire(date(2026, 2, 1))
    # The first reading would have expired 100, 60 of them 2025's: the ledger refused it
    # (the account moved), and the second reading expired 2024's last 40. Nothing is undone.
    assert summary["entries_posted"] == 1
    assert summary["units_expired_by_asset"] == {"POINT": 40}
    assert summary["accounts_unsettled"] == 0
    [entry] = await s.entries("expiry")
    assert await s.entries("reversal") == []
    assert entry["meta"]["lapsed"] == [{"earned_year": 2024, "amount": 40}]
    # It names the seq it was computed from: the spending's.
    assert entry["meta"]["read_seq"] == spent[0]["seq"]
    assert await s.posted() == 100
    assert upcoming(await s.lots(), 1, ZONE, date(2026, 2, 1)) == [(date(2027, 1, 1), 100)]
    assert (await s.expire(date(2026, 2, 1)))["entries_posted"] == 0
    await verify(api, s.book)


async def test_concurrent_spending_never_makes_units_that_have_not_lapsed_expire(
    api: Api, ledger_clock: LedgerClock
) -> None:
    s = await make_scene(api, years=1)
    for _ in range(3):
        await s.earn(100)  # 2024
    ledger_clock.at = datetime(2025, 5, 1, tzinfo=UTC)
    for _ in range(3):
        await s.earn(100)  # 2025
    ledger_clock.at = datetime(2026, 2, 1, tzinfo=UTC)
    results = await asyncio.gather(s.expire(date(2026, 2, 1)), *(s.spend(7) for _ in range(30)))
    summary = results[0]
    assert summary["accounts_unsettled"] == 0
    lots = await s.lots()
    # Nothing lapsed is left, and what remains is 2025's less any spending beyond 2024's.
    assert lapsed(lots, 1, ZONE, date(2026, 2, 1)) == []
    expired_units = summary["units_expired_by_asset"]["POINT"]
    assert await s.posted() == 600 - 210 - expired_units
    assert await s.entries("reversal") == []
    for entry in await s.entries("expiry"):
        for part in lots.taken[entry["tx_id"]]:
            assert part.earned_at.astimezone(ZONE).year == 2024
    await verify(api, s.book)


async def test_many_accounts_in_chunks_and_frozen_ones_wait(api: Api) -> None:
    s = await make_scene(api, years=0)
    sessions = api.app.state.sessions
    accounts = [
        await member_account(sessions, s.book, uuid.uuid4(), "POINT")
        for _ in range(expiry.CHUNK + 9)
    ]
    postings = await asyncio.gather(
        *(s.post([(s.issuance, -(i + 1)), (a, i + 1)]) for i, a in enumerate(accounts))
    )
    lapse = date(year_of(postings[0]) + 1, 1, 1)
    frozen = accounts[0]
    r = await api.client.patch(f"/v1/accounts/{frozen}", json={"status": "frozen"})
    assert r.status_code == 200, r.text
    summary = await s.expire(lapse)
    total = sum(range(1, len(accounts) + 1))
    assert summary["accounts_examined"] == len(accounts) - 1
    assert summary["entries_posted"] == len(accounts) - 1
    assert summary["units_expired_by_asset"] == {"POINT": total - 1}
    assert (await s.expire(lapse))["entries_posted"] == 0
    r = await api.client.patch(f"/v1/accounts/{frozen}", json={"status": "open"})
    assert r.status_code == 200, r.text
    assert (await s.expire(lapse))["units_expired_by_asset"] == {"POINT": 1}
    assert await s.posted(await s.expired_account()) == total
    await verify(api, s.book)


async def test_a_refused_expiry_is_tried_again_on_the_next_run(api: Api) -> None:
    s = await make_scene(api, years=0)
    earned = await s.earn(15)
    lapse = date(year_of(earned) + 1, 1, 1)
    expired = await book_account(api.app.state.sessions, s.book, EXPIRED, "POINT")
    r = await api.client.patch(f"/v1/accounts/{expired}", json={"status": "frozen"})
    assert r.status_code == 200, r.text
    refused = await s.expire(lapse)
    assert refused["entries_posted"] == 0 and refused["accounts_unsettled"] == 1
    r = await api.client.patch(f"/v1/accounts/{expired}", json={"status": "open"})
    assert r.status_code == 200, r.text
    # The member's account has not moved: the same reading, under a key that was refused.
    settled = await s.expire(lapse)
    assert settled["entries_posted"] == 1 and settled["accounts_unsettled"] == 0
    assert settled["units_expired_by_asset"] == {"POINT": 15}
    assert await s.posted() == 0
