"""Hypothesis: random service periods against a model of the rules.

Each example is a fresh member and a list of periods in three projects (an ordinary one, one
with a fixed credit, one with a cap per day). The service must accept exactly the periods the
model accepts, refuse the others with the rule the model names, and after approval the
member's HOUR balance must equal the minutes the model credited.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.identity.credentials import create_credential
from app.main import create_app
from tests.conftest import SETTINGS, Api, ScratchDatabase
from tests.volunteering.district import CST, District, build_district

DAY0 = datetime(2026, 11, 20, tzinfo=CST)
CAP = SETTINGS.service_daily_cap_minutes
# (starts, ends, fixed_minutes, cap_minutes_per_day), relative to DAY0.
PROJECTS = (
    (timedelta(hours=9), timedelta(days=1, hours=21), None, None),
    (timedelta(hours=6), timedelta(days=1, hours=23), 60, None),
    (timedelta(0), timedelta(days=2), None, 90),
)
period = st.tuples(
    st.integers(0, len(PROJECTS) - 1),
    st.integers(0, 2 * 24 * 4 - 1).map(lambda q: timedelta(minutes=15 * q)),
    st.integers(1, 600).map(lambda m: timedelta(minutes=m)),
)


@dataclass
class Model:
    accepted: list[tuple[datetime, datetime, int, int, date]] = field(default_factory=list)

    def enter(self, project: int, start: datetime, end: datetime) -> tuple[str, int]:
        """The problem slug the rules give (or "" and the credited minutes)."""
        starts, ends, fixed, cap = PROJECTS[project]
        s, e = max(start, DAY0 + starts), min(end, DAY0 + ends)
        if e <= s:
            return "outside-window", 0
        minutes = int((e - s).total_seconds() // 60)
        if minutes < 1:
            return "service-too-short", 0
        minutes = fixed or minutes
        if any(s < b and a < e for a, b, _, _, _ in self.accepted):
            return "overlapping-service", 0
        day = s.astimezone(CST).date()
        same_day = [r for r in self.accepted if r[4] == day]
        if sum(r[3] for r in same_day) + minutes > CAP:
            return "daily-cap-exceeded", 0
        in_project = sum(r[3] for r in same_day if r[2] == project)
        if cap is not None and in_project + minutes > cap:
            return "project-daily-cap-exceeded", 0
        self.accepted.append((s, e, project, minutes, day))
        return "", minutes


async def _example(d: District, projects: list[str], periods: list[Any]) -> None:
    member = await d.member()
    model = Model()
    pending = []
    for index, offset, length in periods:
        start = DAY0 + offset
        expected, minutes = model.enter(index, start, start + length)
        r = await d.manual(projects[index], member["id"], start, int(length.total_seconds() // 60))
        if expected:
            assert r.status_code == 422, r.text
            assert r.json()["type"] == f"urn:timebank:problem:{expected}"
        else:
            assert r.status_code == 201, r.text
            assert r.json()["credited_minutes"] == minutes
            pending.append(r.json()["id"])
    if pending:
        out = await d.ok(
            "POST", "/v1/service-records/approve", "team_checker", body={"record_ids": pending}
        )
        assert out["approved"] == len(pending)
    assert await d.balance(member["hours"]) == sum(r[3] for r in model.accepted)


def test_the_rules_accept_exactly_what_the_model_accepts(database: ScratchDatabase) -> None:
    loop = asyncio.new_event_loop()
    app = create_app(SETTINGS.model_copy(update={"database_url": database.app_url}))
    lifespan = app.router.lifespan_context(app)
    loop.run_until_complete(lifespan.__aenter__())
    try:

        async def setup() -> tuple[District, list[str], httpx.AsyncClient]:
            async with app.state.sessions() as session, session.begin():
                credential, token = await create_credential(session, "admin", name="tests")
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://testserver",
                headers={"Authorization": f"Bearer {token}"},
            )
            district = await build_district(Api(client, token, app, str(credential.id)))
            ids = []
            for starts, ends, fixed, cap in PROJECTS:
                fields: dict[str, Any] = {
                    "starts_at": (DAY0 + starts).isoformat(),
                    "ends_at": (DAY0 + ends).isoformat(),
                    "capacity": 100,
                }
                if fixed is not None:
                    fields |= {"credit_policy": "fixed", "fixed_minutes": fixed}
                if cap is not None:
                    fields["cap_minutes_per_day"] = cap
                ids.append((await district.project(**fields))["id"])
            return district, ids, client

        district, projects, client = loop.run_until_complete(setup())

        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(st.lists(period, min_size=1, max_size=12))
        def check(periods: list[Any]) -> None:
            loop.run_until_complete(_example(district, projects, periods))

        check()
        loop.run_until_complete(client.aclose())
    finally:
        loop.run_until_complete(lifespan.__aexit__(None, None, None))
        loop.close()
