"""Plays the demo's plan through the real application in-process.

`create_app` runs with its lifespan and an httpx client talks to its ASGI interface, so every
rule, posting and journal notice takes the same path as a real client's. Each member's steps
are played in the order of their service time, members concurrently. The service reads "now"
from `app.state.clock`: while seeding it is each request's simulated moment (a context
variable, so concurrent members each have their own), and it is restored afterwards.

The book is created once: a later run finds it and reports what is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import text

from app.config import Settings
from app.identity.credentials import create_credential
from app.kit.clock import utc_now
from app.ops.demo.district import (
    COMMUNITIES,
    DEMO_BOOK,
    DEMO_BOOK_NAME,
    KIOSK,
    SEED,
    SERVICE_ORGS,
    STATION,
    OrgSpec,
)
from app.ops.demo.plan import (
    STEP_ORDER,
    DemoError,
    MemberPlan,
    NeedPlan,
    Plan,
    ProjectPlan,
    Step,
    build_plan,
)
from app.ops.demo.summary import DistrictSummary, district_summary

# Requests in flight at once where their order does not matter.
CONCURRENCY = 8
BULK_APPROVE_BATCH = 200

# Starts a phase of the work (a name and how many steps), answering how to advance it.
Advance = Callable[[int], None]
PhaseStart = Callable[[str, int], Advance]

# The simulated moment of the request in flight (unset: the real time).
_NOW: contextvars.ContextVar[datetime | None] = contextvars.ContextVar("demo_now", default=None)


def _demo_clock() -> datetime:
    moment = _NOW.get()
    return utc_now() if moment is None else moment.astimezone(UTC)


def _no_progress(name: str, total: int) -> Advance:
    return lambda n: None


async def _limited(
    coros: Iterable[Coroutine[Any, Any, Any]], limit: int = CONCURRENCY
) -> list[Any]:
    """Run coroutines at most `limit` at a time; the first failure cancels the others and is
    raised as itself."""
    gate = asyncio.Semaphore(limit)

    async def run(coro: Coroutine[Any, Any, Any]) -> Any:
        async with gate:
            return await coro

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(run(c)) for c in coros]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


class _Seeder:
    """Plays the plan through the API, as each of the district's callers."""

    plan: Plan  # made once the book is open and the catalogue read

    def __init__(self, client: httpx.AsyncClient, admin_token: str, progress: PhaseStart) -> None:
        self.client = client
        self.progress = progress
        self.tokens: dict[str, str] = {"admin": admin_token}
        self.orgs: dict[str, str] = {}

    async def call(
        self,
        method: str,
        path: str,
        who: str,
        body: Any = None,
        member: MemberPlan | None = None,
        at: datetime | None = None,
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        if member is not None:
            headers["X-Member-Id"] = member.id
        if method in ("POST", "PATCH"):
            headers["Idempotency-Key"] = f"demo-{uuid.uuid4().hex}"
        moment = _NOW.set(at)
        try:
            answer = await self.client.request(method, path, json=body, headers=headers)
        finally:
            _NOW.reset(moment)
        if answer.status_code not in (200, 201):
            raise DemoError(f"{method} {path} as {who}: {answer.status_code} {answer.text}")
        return answer.json()

    # The district's bodies.

    async def open_book(self, members: int, days: int, settings: Settings) -> None:
        """Open the book, read the service catalogue and plan the district."""
        body = {"code": DEMO_BOOK, "name": DEMO_BOOK_NAME}
        await self.call("POST", "/v1/books", "admin", body)
        catalog = await self.call("GET", "/v1/service-catalog", "admin")
        self.plan = build_plan(
            members,
            days,
            utc_now(),
            ZoneInfo(settings.service_timezone),
            settings.service_daily_cap_minutes,
            (c["code"] for c in catalog["categories"]),
            (g["code"] for g in catalog["target_groups"]),
        )

    async def organisations(self) -> None:
        async def create(spec: OrgSpec, parent: str | None, issuance: bool) -> None:
            body: dict[str, Any] = {
                "book": DEMO_BOOK,
                "kind": spec.kind,
                "name": spec.name,
                "person_in_charge": spec.person_in_charge,
                "maker_checker": spec.maker_checker,
            }
            if parent is not None:
                body["parent_id"] = parent
            if issuance:
                body["accounts"] = [
                    {"asset": "HOUR", "purpose": "issuance", "overdraft_limit": 10**9}
                ]
            created = await self.call("POST", "/v1/organisations", "admin", body)
            self.orgs[spec.key] = created["id"]

        await create(STATION, None, False)
        station = self.orgs[STATION.key]
        for spec in COMMUNITIES:
            await create(spec, station, False)
        for spec in SERVICE_ORGS:
            await create(spec, station, True)
        await create(KIOSK, station, False)

    async def grant_credentials(self) -> None:
        grants: list[tuple[str, str, str | None, str]] = [
            (STATION.key, "org", STATION.key, f"{STATION.name} 工作站"),
            *((c.key, "org", c.key, f"{c.name} 居委会") for c in COMMUNITIES),
        ]
        for spec in SERVICE_ORGS:
            grants.append((spec.key, "org", spec.key, f"{spec.name} 录入"))
            grants.append((f"{spec.key}:review", "org", spec.key, f"{spec.name} 审核"))
        grants += [
            (KIOSK.key, "kiosk", KIOSK.key, f"{KIOSK.name} 收银台"),
            ("mini", "miniprogram", None, "志愿者小程序"),
            ("auditor", "auditor", None, "民政审计"),
        ]
        for who, role, org, name in grants:
            body: dict[str, Any] = {"role": role, "book": DEMO_BOOK, "name": name}
            if org is not None:
                body["organisation_id"] = self.orgs[org]
            created = await self.call("POST", "/v1/credentials", "admin", body)
            self.tokens[who] = created["token"]

    async def needs(self) -> None:
        advance = self.progress("needs", len(self.plan.needs))

        async def register(need: NeedPlan) -> None:
            body = {
                "book": DEMO_BOOK,
                "community_id": self.orgs[COMMUNITIES[need.community].key],
                "category": need.category,
                "target_group": need.target_group,
                "description": need.description,
                "urgency": need.urgency,
            }
            need.id = (await self.call("POST", "/v1/needs", need.registrar, body))["id"]
            advance(1)

        await _limited(register(n) for n in self.plan.needs)

    async def members(self) -> None:
        advance = self.progress("members", len(self.plan.members))

        async def register(m: MemberPlan) -> None:
            body = {
                "book": DEMO_BOOK,
                "display_name": m.name,
                "phone": m.phone,
                "birth_date": m.birth_date.isoformat(),
                "identity": {"provider": "wechat", "subject": f"o_demo_{SEED}_{m.index:06d}"},
            }
            created = await self.call("POST", "/v1/members", m.home, body)
            m.id, m.volunteer_number = created["id"], created["volunteer_number"]
            await self.enrol(m, COMMUNITIES[m.community].key)
            advance(1)

        await _limited(register(m) for m in self.plan.members)

    async def enrol(self, member: MemberPlan, org: str) -> None:
        """The member's consent through the mini-program (an enrolment code), then the
        organisation enrols them with it."""
        path = f"/v1/members/{member.id}/enrolment-codes"
        code = (await self.call("POST", path, "mini", member=member))["code"]
        body = {"enrolment_code": code, "volunteer_number": member.volunteer_number}
        await self.call("POST", f"/v1/organisations/{self.orgs[org]}/members", org, body)

    async def projects(self) -> None:
        advance = self.progress("projects", len(self.plan.projects))

        async def publish(p: ProjectPlan) -> None:
            body: dict[str, Any] = {
                "book": DEMO_BOOK,
                "community_id": self.orgs[COMMUNITIES[p.community].key],
                "title": p.title,
                "category": p.category,
                "place": p.place,
                "starts_at": p.starts.isoformat(),
                "ends_at": p.ends.isoformat(),
                "capacity": p.capacity,
                "need_ids": [self.plan.needs[n].id for n in p.needs],
            }
            if p.fixed_minutes is not None:
                body |= {"credit_policy": "fixed", "fixed_minutes": p.fixed_minutes}
            if p.cap_minutes_per_day is not None:
                body["cap_minutes_per_day"] = p.cap_minutes_per_day
            p.id = (await self.call("POST", "/v1/projects", p.org, body))["id"]
            advance(1)

        await _limited(publish(p) for p in self.plan.projects)

    # Service.

    async def _step(self, step: Step) -> None:
        plan = self.plan
        member = plan.members[step.member]
        project = plan.projects[step.project]
        org = project.org
        if step.kind == "enrol":
            await self.enrol(member, org)
        elif step.kind == "signup":
            path = f"/v1/projects/{project.id}/signups"
            if step.by_org:
                await self.call("POST", path, org, {"member_id": member.id}, at=step.at)
            else:
                await self.call("POST", path, "mini", member=member, at=step.at)
        elif step.kind == "cancel":
            path = f"/v1/projects/{project.id}/signups/{member.id}"
            await self.call("DELETE", path, "mini", member=member, at=step.at)
        elif step.kind == "visit":
            assert step.leave is not None
            code_path = f"/v1/projects/{project.id}/checkin-code"
            code = (await self.call("GET", code_path, org, at=step.at))["code"]
            record = await self.call(
                "POST",
                f"/v1/projects/{project.id}/checkin",
                "mini",
                {"code": code},
                member=member,
                at=step.at,
            )
            step.record_id = record["id"]
            code = (await self.call("GET", code_path, org, at=step.leave))["code"]
            await self.call(
                "POST",
                f"/v1/service-records/{step.record_id}/checkout",
                "mini",
                {"code": code},
                member=member,
                at=step.leave,
            )
            if step.reject is not None:
                await self.call(
                    "POST",
                    f"/v1/service-records/{step.record_id}/reject",
                    f"{org}:review",
                    {"reason": step.reject},
                    at=step.leave,
                )
        else:
            assert step.leave is not None
            record = await self.manual(step, step.entered_end or step.leave)
            step.record_id = record["id"]

    async def manual(self, step: Step, end: datetime, corrects: str | None = None) -> Any:
        org = self.plan.projects[step.project].org
        body: dict[str, Any] = {
            "project_id": self.plan.projects[step.project].id,
            "member_id": self.plan.members[step.member].id,
            "started_at": step.at.isoformat(),
            "ended_at": end.isoformat(),
            "attested_by": next(o.person_in_charge for o in SERVICE_ORGS if o.key == org),
        }
        if corrects is not None:
            body["corrects_record_id"] = corrects
        return await self.call("POST", "/v1/service-records", org, body, at=end)

    async def service(self) -> None:
        by_member: dict[int, list[Step]] = defaultdict(list)
        for step in self.plan.steps:
            by_member[step.member].append(step)
        advance = self.progress("service", len(self.plan.steps))

        async def live(steps: list[Step]) -> None:
            for step in sorted(steps, key=lambda s: (s.at, STEP_ORDER[s.kind])):
                await self._step(step)
                advance(1)

        await _limited(live(steps) for _, steps in sorted(by_member.items()))

    async def approvals(self) -> None:
        pending: dict[str, list[str]] = defaultdict(list)
        for step in self.plan.steps:
            if step.record_id and step.reject is None:
                pending[self.plan.projects[step.project].org].append(step.record_id)
        advance = self.progress("approvals", sum(len(ids) for ids in pending.values()))

        async def approve(org: str, ids: list[str]) -> None:
            reviewer = f"{org}:review"
            # The first few one by one, as they came in; the rest in bulk, as at month's end.
            for record_id in ids[:3]:
                await self.call("POST", f"/v1/service-records/{record_id}/approve", reviewer)
                advance(1)
            for start in range(3, len(ids), BULK_APPROVE_BATCH):
                batch = ids[start : start + BULK_APPROVE_BATCH]
                answer = await self.call(
                    "POST", "/v1/service-records/approve", reviewer, {"record_ids": batch}
                )
                if answer["refused"]:
                    refused = [r for r in answer["results"] if r["status"] != 200]
                    raise DemoError(f"bulk approval refused {refused[:3]}")
                advance(len(batch))

        await _limited(approve(org, ids) for org, ids in sorted(pending.items()))

    async def disputes(self) -> None:
        plan = self.plan
        step = plan.corrected
        if step is not None and step.leave is not None:
            org = plan.projects[step.project].org
            member = plan.members[step.member]
            local_end = step.leave.astimezone(plan.tz).strftime("%H:%M")
            dispute = await self.call(
                "POST",
                f"/v1/service-records/{step.record_id}/disputes",
                "mini",
                {"reason": f"我当天一直服务到{local_end}，记录少了一个小时"},
                member=member,
            )
            await self.call(
                "POST",
                f"/v1/service-records/{step.record_id}/reverse",
                f"{org}:review",
                {"reason": "录入时结束时间填错，少记一小时"},
            )
            fixed = await self.manual(step, step.leave, corrects=step.record_id)
            await self.call("POST", f"/v1/service-records/{fixed['id']}/approve", f"{org}:review")
            await self.call(
                "POST",
                f"/v1/service-disputes/{dispute['id']}/answer",
                f"{org}:review",
                {
                    "outcome": "upheld",
                    "answer": "已核对纸质签到表，按实际服务时长更正",
                    "corrected_record_id": fixed["id"],
                },
            )
        step = plan.dismissed
        if step is not None:
            org = plan.projects[step.project].org
            dispute = await self.call(
                "POST",
                f"/v1/service-records/{step.record_id}/disputes",
                "mini",
                {"reason": "签退时手机没电，实际服务到活动结束"},
                member=plan.members[step.member],
            )
            await self.call(
                "POST",
                f"/v1/service-disputes/{dispute['id']}/answer",
                f"{org}:review",
                {
                    "outcome": "dismissed",
                    "answer": "经核对签到签退记录并向现场负责人确认，记录无误",
                },
            )

    async def needs_met(self) -> None:
        await _limited(
            self.call("PATCH", f"/v1/needs/{need.id}", need.registrar, {"status": "met"})
            for need in self.plan.needs
            if need.met
        )


async def seed_demo(
    settings: Settings,
    members: int = 300,
    days: int = 30,
    progress: PhaseStart | None = None,
) -> DistrictSummary:
    """Seed the demo district once (through the API, in-process); later runs report it.

    `settings.database_url` names the (migrated) database. Rate limits are off for the
    seeding's own credentials: they are this process's.
    """
    from app.main import create_app

    progress = progress or _no_progress
    started = time.monotonic()
    app = create_app(settings.model_copy(update={"rate_limit_per_s": 0.0}))
    async with app.router.lifespan_context(app):
        sessions = app.state.sessions
        async with sessions() as session:
            exists = await session.scalar(
                text("SELECT 1 FROM books WHERE code = :b"), {"b": DEMO_BOOK}
            )
        if exists:
            return await district_summary(sessions)
        async with sessions() as session, session.begin():
            admin, token = await create_credential(session, "admin", name="timebank demo")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://demo.timebank", timeout=120
        ) as client:
            original_clock = app.state.clock
            app.state.clock = _demo_clock
            seeder = _Seeder(client, token, progress)
            try:
                await seeder.open_book(members, days, settings)
                await seeder.organisations()
                await seeder.grant_credentials()
                await seeder.needs()
                await seeder.members()
                await seeder.projects()
                await seeder.service()
                await seeder.approvals()
                await seeder.disputes()
                await seeder.needs_met()
            except DemoError as exc:
                raise DemoError(f"{exc} (book {DEMO_BOOK!r} is left partly seeded)") from exc
            finally:
                app.state.clock = original_clock
                # The seeding's platform credential ends with it (its token was never shown);
                # best effort: a failure of its own must not hide the seeding's.
                with contextlib.suppress(Exception):
                    await seeder.call("POST", f"/v1/credentials/{admin.id}/revoke", "admin")
        summary = await district_summary(sessions)
    return dataclasses.replace(summary, created=True, seconds=round(time.monotonic() - started, 1))
