"""Service statistics: groups, totals, periods, reach, and the reconciliation with the journal.

Projects and service records are written with SQL; every approved record's credit is a real
`service_credit` posting through the sequencer, and every reversed record's credit is really
reversed, as approval and correction do.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.ledger import service as ledger
from app.ledger.outcomes import IdempotencyRef
from app.ledger.posting import Draft
from tests.conftest import Api

CST = timezone(timedelta(hours=8))
STATS = "/v1/stats/service"


@dataclass
class Region:
    """One book with two certifying teams, two communities, three members and their projects."""

    api: Api
    book: str = ""
    team_a: str = ""
    team_b: str = ""
    issuance: dict[str, str] = field(default_factory=dict)  # organisation -> HOUR issuance
    community_1: str = ""
    community_2: str = ""
    members: list[str] = field(default_factory=list)
    hours: dict[str, str] = field(default_factory=dict)  # member -> HOUR account
    projects: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    slot: int = 0

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        r = await self.api.client.post(
            path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
        )
        assert r.status_code in (200, 201), r.text
        return r.json()

    async def organisation(self, kind: str, name: str, issuance: bool = False) -> str:
        body: dict[str, Any] = {"book": self.book, "kind": kind, "name": name}
        if issuance:
            body["accounts"] = [{"asset": "HOUR", "purpose": "issuance", "overdraft_limit": 10**9}]
        org = await self.post("/v1/organisations", body)
        if issuance:
            self.issuance[org["id"]] = org["accounts"][0]["id"]
        return str(org["id"])

    async def member(self) -> str:
        body = {
            "book": self.book,
            "display_name": "李志愿",
            "phone": f"139{uuid.uuid4().int % 10**8:08d}",
            "birth_date": "1985-03-02",
            "identity": {"provider": "wechat", "subject": f"o_{uuid.uuid4().hex}"},
        }
        data = await self.post("/v1/members", body)
        member = str(data["id"])
        self.hours[member] = next(a["account_id"] for a in data["accounts"] if a["asset"] == "HOUR")
        self.members.append(member)
        return member

    async def project(self, organisation: str, category: str, community: str | None) -> str:
        project = uuid.uuid4()
        async with self.api.app.state.sessions() as session, session.begin():
            await session.execute(
                text(
                    "INSERT INTO projects (id, book_code, organisation_id, community_id, title, "
                    "category, place, starts_at, ends_at, capacity, checkin_key, created_by) "
                    "VALUES (:id, :b, CAST(:o AS uuid), CAST(:c AS uuid), '陪伴老人', :cat, "
                    "'活动中心', :s, :e, 10, :k, :by)"
                ),
                {
                    "id": project,
                    "b": self.book,
                    "o": organisation,
                    "c": community,
                    "cat": category,
                    "s": datetime(2026, 1, 1, tzinfo=CST),
                    "e": datetime(2027, 12, 31, tzinfo=CST),
                    "k": os.urandom(32),
                    "by": uuid.uuid4(),
                },
            )
        return str(project)

    async def credit(
        self, organisation: str, member: str, minutes: int, record: str, project: str, ev: str
    ) -> str:
        """A real service_credit posting; its tx id."""
        draft = Draft(
            self.book,
            "post",
            "service_credit",
            [(self.issuance[organisation], -minutes), (self.hours[member], minutes)],
            "",
            {"record": record, "project": project, "evidence": ev},
        )
        ref = IdempotencyRef(self.api.credential, f"test-credit:{uuid.uuid4()}", record)
        outcome = await self.api.app.state.sequencer.submit(draft, ref)
        assert outcome.status_code == 201, outcome.body
        return str(outcome.body["id"])

    async def reverse(self, tx_id: str) -> str:
        async with self.api.app.state.sessions() as session:
            original = await ledger.get_transaction(session, uuid.UUID(tx_id))
        ref = IdempotencyRef(self.api.credential, f"test-reversal:{tx_id}", tx_id)
        outcome = await ledger.reverse_transaction(self.api.app.state.sequencer, original, ref)
        assert outcome.status_code == 201, outcome.body
        return str(outcome.body["id"])

    async def record(
        self,
        project: str,
        member: str,
        minutes: int,
        day: date,
        evidence: str = "checkin",
        status: str = "approved",
        posted: int | None = None,
    ) -> str:
        """A service record; an approved or reversed one is credited in the ledger first
        (`posted` minutes, default its own; 0: not posted at all), a reversed one then
        reversed."""
        record = str(uuid.uuid4())
        organisation = await self._organisation_of(project)
        tx_id = reversal = None
        if status in ("approved", "reversed"):
            amount = minutes if posted is None else posted
            if amount:
                tx_id = await self.credit(organisation, member, amount, record, project, evidence)
            else:
                tx_id = str(uuid.uuid4())  # names a transaction the ledger never had
            if status == "reversed":
                reversal = await self.reverse(tx_id)
        self.slot += 1  # each record its own time: no overlap for one member
        start = datetime.combine(day, time(8), CST) + timedelta(minutes=7 * self.slot)
        is_open = status == "open"
        async with self.api.app.state.sessions() as session, session.begin():
            await session.execute(
                text(
                    "INSERT INTO service_records (id, book_code, project_id, organisation_id, "
                    "member_id, evidence, attested_by, started_at, ended_at, credited_minutes, "
                    "service_day, status, entered_by, tx_id, reversal_tx_id) VALUES "
                    "(CAST(:id AS uuid), :b, CAST(:p AS uuid), CAST(:o AS uuid), "
                    "CAST(:m AS uuid), :ev, :att, :s, :e, :min, :day, :st, :by, "
                    "CAST(:tx AS uuid), CAST(:rv AS uuid))"
                ),
                {
                    "id": record,
                    "b": self.book,
                    "p": project,
                    "o": organisation,
                    "m": member,
                    "ev": evidence,
                    "att": "陈站长" if evidence == "manual" else None,
                    "s": start,
                    "e": None if is_open else start + timedelta(minutes=5),
                    "min": None if is_open else minutes,
                    "day": None if is_open else day,
                    "st": status,
                    "by": uuid.uuid4(),
                    "tx": tx_id,
                    "rv": reversal,
                },
            )
        return record

    async def _organisation_of(self, project: str) -> str:
        async with self.api.app.state.sessions() as session:
            found = await session.execute(
                text("SELECT organisation_id::text FROM projects WHERE id = CAST(:p AS uuid)"),
                {"p": project},
            )
            return str(found.scalar_one())

    async def credential(self, role: str, book: str | None, organisation: str | None) -> str:
        body: dict[str, Any] = {"role": role, "book": book}
        if organisation is not None:
            body["organisation_id"] = organisation
        return str((await self.post("/v1/credentials", body))["token"])

    async def stats(self, who: str = "admin", **query: Any) -> httpx.Response:
        params = {"book": self.book} | {k.rstrip("_"): v for k, v in query.items()}
        params = {k: v for k, v in params.items() if v is not None}
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return await self.api.client.get(STATS, params=params, headers=headers)

    async def ok(self, who: str = "admin", **query: Any) -> dict[str, Any]:
        r = await self.stats(who, **query)
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data


NOV_3, NOV_5, NOV_10, NOV_11, NOV_12, NOV_20 = (date(2026, 11, d) for d in (3, 5, 10, 11, 12, 20))
DEC_1, DEC_2, DEC_31 = date(2026, 12, 1), date(2026, 12, 2), date(2026, 12, 31)


@pytest.fixture
async def region(api: Api) -> Region:
    """The region on the test's own database, for a test that writes."""
    return await build_region(api)


@pytest.fixture(scope="module")
async def shared(module_api: Api) -> Region:
    """The region built once for the module's tests that only read it."""
    return await build_region(module_api)


async def build_region(api: Api) -> Region:
    """Team A certifies P1 (扶老, community 1) and P2 (环保, community 2); team B certifies P3
    (扶老, no community) and P4 (文化, community 1). Six approved records of members m1-m3,
    and one each pending, rejected, reversed and open."""
    g = Region(api)
    g.book = await api.book()
    g.team_a = await g.organisation("volunteer_team", "阳光志愿队", issuance=True)
    g.team_b = await g.organisation("social_org", "绿叶社工", issuance=True)
    g.community_1 = await g.organisation("community", "幸福里社区")
    g.community_2 = await g.organisation("community", "和平社区")
    kiosk = await g.organisation("kiosk_site", "爱心超市")
    m1, m2, m3 = [await g.member() for _ in range(3)]
    p1 = await g.project(g.team_a, "elder_care", g.community_1)
    p2 = await g.project(g.team_a, "environment", g.community_2)
    p3 = await g.project(g.team_b, "elder_care", None)
    p4 = await g.project(g.team_b, "culture", g.community_1)
    g.projects = {"p1": p1, "p2": p2, "p3": p3, "p4": p4}
    await g.record(p1, m1, 60, NOV_3)
    await g.record(p1, m2, 90, NOV_5, "manual")
    await g.record(p2, m1, 30, NOV_20)
    await g.record(p3, m3, 120, DEC_1)
    await g.record(p4, m1, 45, DEC_2, "manual")
    await g.record(p3, m2, 15, DEC_31)
    # Not certified service: none of these counts.
    await g.record(p1, m3, 500, NOV_10, status="pending")
    await g.record(p2, m3, 400, NOV_11, "manual", status="rejected")
    await g.record(p4, m2, 200, NOV_12, status="reversed")
    await g.record(p1, m3, 0, NOV_12, status="open")
    other_book = await api.book()
    g.tokens = {
        "admin": await g.credential("admin", g.book, None),
        "platform": api.token,
        "auditor": await g.credential("auditor", g.book, None),
        "team_a": await g.credential("org", g.book, g.team_a),
        "team_b": await g.credential("org", g.book, g.team_b),
        "mini": await g.credential("miniprogram", g.book, None),
        "kiosk": await g.credential("kiosk", g.book, kiosk),
        "admin_away": await g.credential("admin", other_book, None),
        "auditor_platform": await g.credential("auditor", None, None),
    }
    return g


def figures(group: dict[str, Any]) -> tuple[Any, ...]:
    """(key, label, records, minutes, hours, volunteers, checkin, manual)."""
    return (
        group["key"],
        group["label"],
        group["records"],
        group["minutes"],
        group["hours"],
        group["volunteers"],
        group["checkin_minutes"],
        group["manual_minutes"],
    )


async def test_by_category_with_totals_and_reconciled_ledger(shared: Region) -> None:
    data = await shared.ok()
    assert data["book"] == shared.book and data["group_by"] == "category"
    assert data["from"] is None and data["to"] is None
    assert data["timezone"] == "Asia/Shanghai"
    assert [figures(g) for g in data["groups"]] == [
        ("elder_care", "扶老", 4, 285, "4.75", 3, 195, 90),
        ("culture", "文化", 1, 45, "0.75", 1, 0, 45),
        ("environment", "环保", 1, 30, "0.50", 1, 30, 0),
    ]
    assert data["totals"] == {
        "records": 6,
        "minutes": 360,
        "hours": "6.00",
        "volunteers": 3,  # distinct members, though the groups' volunteers add up to 5
        "checkin_minutes": 225,
        "manual_minutes": 135,
        "projects": 4,
    }
    # The reversed record's 200 minutes were credited and taken back.
    assert data["ledger"] == {
        "service_credit_minutes": 560,
        "reversed_minutes": 200,
        "net_minutes": 360,
        "reconciled": True,
    }


async def test_by_organisation_ties_are_ordered_by_key(shared: Region) -> None:
    data = await shared.ok(group_by="organisation")
    a, b = shared.team_a, shared.team_b
    expected = {
        a: (a, "阳光志愿队", 3, 180, "3.00", 2, 90, 90),
        b: (b, "绿叶社工", 3, 180, "3.00", 3, 135, 45),
    }
    assert [figures(g) for g in data["groups"]] == [expected[k] for k in sorted(expected)]
    assert data["totals"]["volunteers"] == 3 and data["ledger"]["reconciled"] is True


async def test_by_community_without_one_is_unspecified(shared: Region) -> None:
    data = await shared.ok(group_by="community")
    assert [figures(g) for g in data["groups"]] == [
        (shared.community_1, "幸福里社区", 3, 195, "3.25", 2, 60, 135),
        (None, "未指定", 2, 135, "2.25", 2, 135, 0),
        (shared.community_2, "和平社区", 1, 30, "0.50", 1, 30, 0),
    ]


async def test_by_month_in_month_order(shared: Region) -> None:
    data = await shared.ok(group_by="month")
    assert [figures(g) for g in data["groups"]] == [
        ("2026-11", "2026-11", 3, 180, "3.00", 2, 90, 90),
        ("2026-12", "2026-12", 3, 180, "3.00", 3, 135, 45),
    ]
    assert data["totals"]["minutes"] == data["ledger"]["net_minutes"] == 360


async def test_period_is_inclusive_and_ledger_follows_it(shared: Region) -> None:
    data = await shared.ok(group_by="month", from_="2026-11-05", to="2026-12-01")
    assert data["from"] == "2026-11-05" and data["to"] == "2026-12-01"
    assert [(g["key"], g["minutes"], g["records"]) for g in data["groups"]] == [
        ("2026-11", 120, 2),
        ("2026-12", 120, 1),
    ]
    totals = data["totals"]
    assert (totals["records"], totals["minutes"], totals["volunteers"]) == (3, 240, 3)
    assert (totals["checkin_minutes"], totals["manual_minutes"], totals["projects"]) == (
        150,
        90,
        3,
    )
    # The record reversed on 12 November is inside the period: credited and taken back.
    assert data["ledger"] == {
        "service_credit_minutes": 440,
        "reversed_minutes": 200,
        "net_minutes": 240,
        "reconciled": True,
    }
    only_from = await shared.ok(from_="2026-12-02")
    assert only_from["totals"]["minutes"] == 60 and only_from["ledger"]["net_minutes"] == 60
    only_to = await shared.ok(to="2026-11-03")
    assert only_to["totals"]["minutes"] == 60 and only_to["ledger"]["reconciled"] is True
    empty = await shared.ok(from_="2025-01-01", to="2025-12-31")
    assert empty["groups"] == []
    assert empty["totals"] == {
        "records": 0,
        "minutes": 0,
        "hours": "0.00",
        "volunteers": 0,
        "checkin_minutes": 0,
        "manual_minutes": 0,
        "projects": 0,
    }
    assert empty["ledger"]["net_minutes"] == 0 and empty["ledger"]["reconciled"] is True


async def test_an_approval_without_its_posting_does_not_reconcile(region: Region) -> None:
    jan, feb = date(2027, 1, 5), date(2027, 2, 5)
    m1 = region.members[0]
    await region.record(region.projects["p1"], m1, 60, jan, posted=0)  # never posted
    await region.record(region.projects["p3"], m1, 50, feb, posted=40)  # posted 40, not 50
    missing = await region.ok(from_="2027-01-01", to="2027-01-31")
    assert missing["totals"]["minutes"] == 60
    assert missing["ledger"] == {
        "service_credit_minutes": 0,
        "reversed_minutes": 0,
        "net_minutes": 0,
        "reconciled": False,
    }
    wrong = await region.ok(from_="2027-02-01", to="2027-02-28")
    assert wrong["totals"]["minutes"] == 50 and wrong["totals"]["hours"] == "0.83"
    assert wrong["ledger"]["net_minutes"] == 40 and wrong["ledger"]["reconciled"] is False
    whole = await region.ok()
    assert whole["totals"]["minutes"] == 470 and whole["ledger"]["net_minutes"] == 400
    assert whole["ledger"]["reconciled"] is False
    # 2026 on its own still agrees with the journal.
    year = await region.ok(from_="2026-01-01", to="2026-12-31")
    assert year["ledger"]["reconciled"] is True
    # Only team A's figure is off by the unposted record; team B's by the short posting.
    team_a = await region.ok("team_a")
    assert (team_a["totals"]["minutes"], team_a["ledger"]["net_minutes"]) == (240, 180)
    team_b = await region.ok("team_b")
    assert (team_b["totals"]["minutes"], team_b["ledger"]["net_minutes"]) == (230, 220)


async def test_a_reversal_the_records_do_not_know_of_does_not_reconcile(region: Region) -> None:
    """A credit reversed in the ledger while its record still says approved."""
    m3 = region.members[2]
    await region.record(region.projects["p2"], m3, 25, date(2027, 3, 1))
    async with region.api.app.state.sessions() as session:
        tx = await session.execute(
            text("SELECT tx_id::text FROM service_records WHERE service_day = '2027-03-01'")
        )
        tx_id = tx.scalar_one()
    await region.reverse(tx_id)
    data = await region.ok(from_="2027-03-01", to="2027-03-01")
    assert data["totals"]["minutes"] == 25
    assert data["ledger"] == {
        "service_credit_minutes": 25,
        "reversed_minutes": 25,
        "net_minutes": 0,
        "reconciled": False,
    }


async def test_a_service_credit_without_a_record_does_not_reconcile(region: Region) -> None:
    orphan = str(uuid.uuid4())
    m2 = region.members[1]
    await region.credit(region.team_a, m2, 33, orphan, region.projects["p1"], "checkin")
    data = await region.ok()
    assert data["totals"]["minutes"] == 360
    assert data["ledger"]["service_credit_minutes"] == 593
    assert data["ledger"]["net_minutes"] == 393 and data["ledger"]["reconciled"] is False
    assert (await region.ok("team_a"))["ledger"]["reconciled"] is False
    assert (await region.ok("team_b"))["ledger"]["reconciled"] is True
    # With a period, a credit naming no record (or not even an id) is placed on the local
    # day it was posted.
    await region.credit(region.team_b, m2, 7, "not-a-record-id", region.projects["p3"], "manual")
    today = datetime.now(CST).date()
    around = {"from_": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))}
    recent = await region.ok(**around)
    # Whatever the records of these days, the journal has the two credits' 40 minutes more.
    assert recent["ledger"]["net_minutes"] - recent["totals"]["minutes"] == 33 + 7
    assert recent["ledger"]["reconciled"] is False
    team_b = await region.ok("team_b", **around)
    assert team_b["ledger"]["net_minutes"] - team_b["totals"]["minutes"] == 7


async def test_an_organisation_sees_only_what_it_certified(shared: Region) -> None:
    team_a = await shared.ok("team_a")
    assert [figures(g) for g in team_a["groups"]] == [
        ("elder_care", "扶老", 2, 150, "2.50", 2, 60, 90),
        ("environment", "环保", 1, 30, "0.50", 1, 30, 0),
    ]
    assert team_a["totals"]["minutes"] == 180 and team_a["totals"]["projects"] == 2
    assert team_a["ledger"] == {
        "service_credit_minutes": 180,
        "reversed_minutes": 0,
        "net_minutes": 180,
        "reconciled": True,
    }
    team_b = await shared.ok("team_b", group_by="organisation")
    assert [g["key"] for g in team_b["groups"]] == [shared.team_b]
    assert team_b["ledger"] == {
        "service_credit_minutes": 380,
        "reversed_minutes": 200,
        "net_minutes": 180,
        "reconciled": True,
    }
    # Its own book is the default; another book is out of reach.
    params = {"group_by": "month"}
    headers = {"Authorization": f"Bearer {shared.tokens['team_a']}"}
    own = await shared.api.client.get(STATS, params=params, headers=headers)
    assert own.status_code == 200 and own.json()["totals"]["minutes"] == 180
    other = await shared.api.client.get(STATS, params={"book": "zz-none"}, headers=headers)
    assert other.status_code == 404


async def test_who_may_read(shared: Region) -> None:
    assert (await shared.ok("auditor"))["totals"]["minutes"] == 360
    assert (await shared.ok("platform"))["totals"]["minutes"] == 360
    assert (await shared.ok("auditor_platform"))["ledger"]["reconciled"] is True
    for who in ("mini", "kiosk"):
        r = await shared.stats(who)
        assert r.status_code == 403, r.text
        assert r.headers["content-type"] == "application/problem+json"
    away = await shared.stats("admin_away")
    assert away.status_code == 404
    assert away.headers["content-type"] == "application/problem+json"
    unknown = await shared.stats("platform", book="nosuchbook")
    assert unknown.status_code == 404
    anonymous = await shared.api.client.get(
        STATS, params={"book": shared.book}, headers={"Authorization": ""}
    )
    assert anonymous.status_code == 401


async def test_invalid_queries_are_problems(shared: Region) -> None:
    reversed_period = await shared.stats(from_="2026-12-01", to="2026-11-01")
    assert reversed_period.status_code == 422
    assert reversed_period.headers["content-type"] == "application/problem+json"
    problem = reversed_period.json()
    assert problem["type"] == "urn:timebank:problem:validation"
    assert [e["field"] for e in problem["errors"]] == ["query/from", "query/to"]
    no_book = await shared.api.client.get(STATS)  # the platform admin names no book
    assert no_book.status_code == 422
    assert no_book.json()["detail"].startswith("book is required: ")
    assert shared.book in no_book.json()["books"]
    assert no_book.json()["errors"][0]["field"] == "query/book"
    for query in ({"group_by": "member"}, {"from": "2026-13-01"}, {"book": "Not A Book"}):
        r = await shared.stats(**query)
        assert r.status_code == 422, (query, r.text)
        assert r.headers["content-type"] == "application/problem+json"
