"""A district with a charity whose pools fund exchanges: the builder of the exchange tests."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from tests.conftest import Api
from tests.volunteering.district import MORNING, District, build_district


class Market(District):
    charity: str = ""

    async def earn(self, member: dict[str, Any], minutes: int) -> None:
        """Credit a member's HOUR account from the team's issuance account."""
        r = await self.api.transfer(self.book, self.team_issuance, member["hours"], minutes)
        assert r.status_code == 201, r.text

    async def account_of(self, member: dict[str, Any], asset: str) -> str | None:
        row = await self.ok("GET", f"/v1/members/{member['id']}")
        return next((a["account_id"] for a in row["accounts"] if a["asset"] == asset), None)

    async def points(self, member: dict[str, Any]) -> int:
        account = await self.account_of(member, "POINT")
        return 0 if account is None else await self.balance(account)

    async def rule(self, code: str = "hour-point", **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": code,
            "from_asset": "HOUR",
            "to_asset": "POINT",
            "ratio": {"num": 1, "den": 6},
            "min_amount": 30,
            "pools": [{"book": self.book, "organisation_id": self.charity}],
        } | fields
        rule: dict[str, Any] = await self.ok("POST", "/v1/exchange-rules", body=body)
        return rule

    async def quote(self, member: dict[str, Any], amount: int, **fields: Any) -> Any:
        body = {
            "member_id": member["id"],
            "amount": amount,
            "from_asset": "HOUR",
            "to_asset": "POINT",
        } | fields
        return await self.call("POST", "/v1/exchange/quotes", "admin", body=body)

    async def exchange(self, quote_id: str, who: str = "admin", **kw: Any) -> Any:
        return await self.call("POST", "/v1/exchanges", who, body={"quote_id": quote_id}, **kw)

    async def entries(self) -> list[dict[str, Any]]:
        import json

        r = await self.api.client.get(f"/v1/books/{self.book}/export")
        assert r.status_code == 200, r.text
        lines = [json.loads(line) for line in r.text.splitlines()]
        # Each line holds an entry with its hash and receipt; the last one is the checkpoint.
        return [line["entry"] for line in lines if "entry" in line]


async def build_market(api: Api, donated: int = 10_000) -> Market:
    """The district, a charity with HOUR and POINT pools, and `donated` points in its pool."""
    district = await build_district(api)
    market = Market(api)
    market.__dict__.update(district.__dict__)
    market.charity = (await market.organisation("charity"))["id"]
    for asset in ("HOUR", "POINT"):
        await market.ok("POST", f"/v1/organisations/{market.charity}/pools", body={"asset": asset})
    if donated:
        await market.ok(
            "POST",
            f"/v1/organisations/{market.charity}/donations",
            body={"asset": "POINT", "amount": donated, "donor": {"name": "王善人"}},
        )
    market.at(MORNING + timedelta(hours=1))
    return market


def key() -> str:
    return uuid.uuid4().hex
