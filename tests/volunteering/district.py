"""A small district for volunteering tests: a community, a social-work station, two volunteer
teams with HOUR issuance accounts, members, and a credential for each kind of caller."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx

from tests.conftest import Api

CST = timezone(timedelta(hours=8))
# The tests' "now": a Friday morning in the district (the app's clock is set to it).
MORNING = datetime(2026, 11, 20, 9, 0, tzinfo=CST)


@dataclass
class District:
    api: Api
    book: str = ""
    community: str = ""
    station: str = ""
    team: str = ""
    team_issuance: str = ""
    other_team: str = ""
    tokens: dict[str, str] = field(default_factory=dict)
    credentials: dict[str, str] = field(default_factory=dict)
    members: list[dict[str, Any]] = field(default_factory=list)

    def at(self, moment: datetime) -> None:
        """Set the service's clock."""
        self.api.app.state.clock = lambda: moment.astimezone(UTC)

    async def call(
        self,
        method: str,
        path: str,
        who: str = "admin",
        body: Any = None,
        member: str | None = None,
        key: str | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        if member is not None:
            headers["X-Member-Id"] = member
        if method in ("POST", "PATCH"):
            headers["Idempotency-Key"] = key or uuid.uuid4().hex
        return await self.api.client.request(method, path, json=body, headers=headers)

    async def ok(self, method: str, path: str, who: str = "admin", **kw: Any) -> Any:
        r = await self.call(method, path, who, **kw)
        assert r.status_code in (200, 201), r.text
        return r.json()

    async def organisation(self, kind: str, issuance: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "book": self.book,
            "kind": kind,
            "name": f"{kind} {uuid.uuid4().hex[:4]}",
        }
        if issuance:
            body["accounts"] = [{"asset": "HOUR", "purpose": "issuance", "overdraft_limit": 10**9}]
        data: dict[str, Any] = await self.ok("POST", "/v1/organisations", "admin", body=body)
        return data

    async def member(self, team: str = "team") -> dict[str, Any]:
        """A member registered by a team (so enrolled in it) and enrolled in the community."""
        body = {
            "book": self.book,
            "display_name": "李志愿",
            "phone": f"139{uuid.uuid4().int % 10**8:08d}",
            "birth_date": "1985-03-02",
            "identity": {"provider": "wechat", "subject": f"o_{uuid.uuid4().hex}"},
        }
        data: dict[str, Any] = await self.ok("POST", "/v1/members", team, body=body)
        # The member's consent: an enrolment code (an admin asks for it here).
        code = await self.ok("POST", f"/v1/members/{data['id']}/enrolment-codes", "admin")
        await self.ok(
            "POST",
            f"/v1/organisations/{self.community}/members",
            "admin",
            body={"enrolment_code": code["code"]},
        )
        data["hours"] = next(a["account_id"] for a in data["accounts"] if a["asset"] == "HOUR")
        self.members.append(data)
        return data

    async def project(self, who: str = "team", **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "book": self.book,
            "community_id": self.community,
            "title": "陪伴空巢老人",
            "category": "elder_care",
            "place": "幸福里社区活动中心",
            "starts_at": MORNING.isoformat(),
            "ends_at": (MORNING + timedelta(hours=3)).isoformat(),
            "capacity": 10,
        } | fields
        data: dict[str, Any] = await self.ok("POST", "/v1/projects", who, body=body)
        return data

    async def code(self, project: str, who: str = "team") -> str:
        return str((await self.ok("GET", f"/v1/projects/{project}/checkin-code", who))["code"])

    async def manual(
        self,
        project: str,
        member: str,
        start: datetime,
        minutes: int,
        who: str = "team",
        **fields: Any,
    ) -> httpx.Response:
        body = {
            "project_id": project,
            "member_id": member,
            "started_at": start.isoformat(),
            "ended_at": (start + timedelta(minutes=minutes)).isoformat(),
            "attested_by": "陈站长",
        } | fields
        return await self.call("POST", "/v1/service-records", who, body=body)

    async def balance(self, account: str) -> int:
        return int((await self.ok("GET", f"/v1/accounts/{account}"))["posted"])


async def build_district(api: Api) -> District:
    d = District(api)
    d.book = await api.book()
    d.tokens["platform"] = api.token
    admin = await api.client.post(
        "/v1/credentials",
        json={"role": "admin", "book": d.book},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    d.tokens["admin"] = admin.json()["token"]
    d.community = (await d.organisation("community"))["id"]
    d.station = (await d.organisation("social_work_station"))["id"]
    team = await d.organisation("volunteer_team", issuance=True)
    d.team, d.team_issuance = team["id"], team["accounts"][0]["id"]
    d.other_team = (await d.organisation("volunteer_team", issuance=True))["id"]
    kiosk = (await d.organisation("kiosk_site"))["id"]
    for name, role, org in (
        ("team", "org", d.team),
        ("team_checker", "org", d.team),
        ("other_team", "org", d.other_team),
        ("station", "org", d.station),
        ("community", "org", d.community),
        ("mini", "miniprogram", None),
        ("auditor", "auditor", None),
        ("kiosk", "kiosk", kiosk),
    ):
        body: dict[str, Any] = {"role": role, "book": d.book}
        if org is not None:
            body["organisation_id"] = org
        created = await d.ok("POST", "/v1/credentials", "admin", body=body)
        d.tokens[name], d.credentials[name] = created["token"], created["id"]
    d.at(MORNING - timedelta(days=1))
    return d
