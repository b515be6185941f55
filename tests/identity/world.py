"""A small region for identity tests: two books, organisations, kiosks, members, credentials."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.conftest import Api


def resident_id(body17: str) -> str:
    """A valid resident ID number: 17 digits and their GB 11643 check character."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(body17, weights, strict=True))
    return body17 + "10X98765432"[total % 11]


@dataclass
class World:
    """Ids and tokens of everything the identity tests act on."""

    api: Api
    home: str = ""
    away: str = ""
    org_a: str = ""
    org_b: str = ""
    kiosk: str = ""
    kiosk_other: str = ""
    org_a_hours: str = ""
    member: str = ""
    member_hours: str = ""
    member_other: str = ""
    member_other_number: str = ""
    tx: str = ""
    hold: str = ""
    credential_id: str = ""
    tokens: dict[str, str] = field(default_factory=dict)
    member_number: str = ""
    # Volunteering rows of the authorization matrix (set up when first needed).
    project: str = ""
    need: str = ""
    slot: int = 0
    # Exchange rows: organisation A's funded POINT pool, a standing rule, agreements.
    market: dict[str, str] = field(default_factory=dict)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    async def post(self, path: str, body: dict[str, Any], token: str | None = None) -> Any:
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        r = await self.api.client.post(path, json=body, headers=headers)
        assert r.status_code in (200, 201), r.text
        return r.json()

    async def organisation(self, book: str, kind: str, accounts: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "book": book,
            "kind": kind,
            "name": f"{kind} {uuid.uuid4().hex[:6]}",
        }
        if accounts:
            body["accounts"] = [{"asset": "HOUR", "purpose": "issuance", "overdraft_limit": 10**9}]
        data: dict[str, Any] = await self.post("/v1/organisations", body)
        return data

    async def credential(
        self, role: str, book: str | None, organisation_id: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"role": role, "book": book}
        if organisation_id is not None:
            body["organisation_id"] = organisation_id
        data: dict[str, Any] = await self.post("/v1/credentials", body)
        return data

    async def register(
        self, book: str, organisation_id: str | None = None, **personal: Any
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "book": book,
            "display_name": personal.get("display_name", "王小明"),
            "phone": personal.get("phone", "13812345678"),
            "birth_date": personal.get("birth_date", "1990-05-17"),
            "identity": {"provider": "wechat", "subject": f"o_{uuid.uuid4().hex}"},
        }
        if "resident_id" in personal:
            body["resident_id"] = personal["resident_id"]
            body.pop("birth_date")
        if organisation_id is not None:
            body["organisation_id"] = organisation_id
        r = await self.api.client.post("/v1/members", json=body)
        assert r.status_code == 201, r.text
        data: dict[str, Any] = r.json()
        return data

    async def transfer(self, amount: int = 1) -> str:
        body = {
            "kind": "transfer",
            "legs": [
                {"account_id": self.org_a_hours, "amount": -amount},
                {"account_id": self.member_hours, "amount": amount},
            ],
        }
        data = await self.post(f"/v1/books/{self.home}/transactions", body)
        return str(data["id"])

    async def new_hold(self, amount: int = 1) -> str:
        body = {
            "from_account_id": self.org_a_hours,
            "to_account_id": self.member_hours,
            "amount": amount,
            "expires_in": 600,
        }
        data = await self.post(f"/v1/books/{self.home}/holds", body)
        return str(data["id"])


async def build_world(api: Api) -> World:
    """Two books; in `home`: organisations A and B, two kiosks, members of A and of B."""
    w = World(api)
    w.home = await api.book()
    w.away = await api.book()
    org_a = await w.organisation(w.home, "social_work_station", accounts=True)
    w.org_a, w.org_a_hours = org_a["id"], org_a["accounts"][0]["id"]
    w.org_b = (await w.organisation(w.home, "volunteer_team"))["id"]
    w.kiosk = (await w.organisation(w.home, "kiosk_site"))["id"]
    w.kiosk_other = (await w.organisation(w.home, "kiosk_site"))["id"]
    member = await w.register(w.home, w.org_a)
    w.member, w.member_number = member["id"], member["volunteer_number"]
    w.member_hours = next(a["account_id"] for a in member["accounts"] if a["asset"] == "HOUR")
    other = await w.register(w.home, w.org_b, phone="13900001111")
    w.member_other, w.member_other_number = other["id"], other["volunteer_number"]
    w.tx = await w.transfer(100)
    w.hold = await w.new_hold()
    w.credential_id = (await w.credential("auditor", w.home))["id"]
    specs = {
        "admin": ("admin", w.home, None),
        "auditor": ("auditor", w.home, None),
        "org": ("org", w.home, w.org_a),
        "org_other": ("org", w.home, w.org_b),
        "mini": ("miniprogram", w.home, None),
        "kiosk": ("kiosk", w.home, w.kiosk),
        "kiosk_other": ("kiosk", w.home, w.kiosk_other),
        "admin_away": ("admin", w.away, None),
        "auditor_away": ("auditor", w.away, None),
    }
    for name, (role, book, org) in specs.items():
        w.tokens[name] = (await w.credential(role, book, org))["token"]
    w.tokens["platform"] = api.token
    return w
