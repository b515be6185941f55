"""A district with two charity supermarkets (kiosk sites), a charity that gives members points,
and helpers for the kiosk's API: the builder of the kiosk tests."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx

from tests.conftest import Api
from tests.volunteering.district import District, build_district


class Shop(District):
    site: str = ""
    other_site: str = ""
    charity_points: str = ""

    async def points_to(self, member: dict[str, Any], amount: int) -> None:
        """Credit a member's POINT account from the charity's issuance account."""
        account = self.points_account(member)
        r = await self.api.transfer(self.book, self.charity_points, account, amount)
        assert r.status_code == 201, r.text

    def points_account(self, member: dict[str, Any]) -> str:
        return str(next(a["account_id"] for a in member["accounts"] if a["asset"] == "POINT"))

    async def available(self, account: str) -> int:
        return int((await self.ok("GET", f"/v1/accounts/{account}"))["available"])

    async def item(
        self, name: str, price: int, stock: int | None, site: str | None = None
    ) -> dict[str, Any]:
        body = {"name": name, "asset": "POINT", "price": price, "stock": stock}
        path = f"/v1/kiosk/sites/{site or self.site}/items"
        data: dict[str, Any] = await self.ok("POST", path, "admin", body=body)
        return data

    async def get_item(self, item: dict[str, Any]) -> dict[str, Any]:
        items = await self.ok("GET", f"/v1/kiosk/sites/{item['site_id']}/items")
        found: dict[str, Any] = next(i for i in items["items"] if i["id"] == item["id"])
        return found

    async def code(self, member: dict[str, Any]) -> str:
        r = await self.call(
            "POST", f"/v1/members/{member['id']}/redeem-codes", "mini", member=member["id"]
        )
        assert r.status_code == 201, r.text
        return str(r.json()["code"])

    async def redeem(
        self,
        code: str,
        basket: list[tuple[dict[str, Any], int]],
        kiosk: str = "kiosk",
        key: str | None = None,
        **fields: Any,
    ) -> httpx.Response:
        body = {
            "code": code,
            "items": [{"item_id": item["id"], "quantity": n} for item, n in basket],
        } | fields
        return await self.call("POST", "/v1/kiosk/redemptions", kiosk, body=body, key=key)

    async def confirm(
        self, redemption: str, kiosk: str = "kiosk", key: str | None = None
    ) -> httpx.Response:
        path = f"/v1/kiosk/redemptions/{redemption}/confirm"
        return await self.call("POST", path, kiosk, key=key)

    async def cancel(self, redemption: str, who: str = "kiosk") -> httpx.Response:
        return await self.call("POST", f"/v1/kiosk/redemptions/{redemption}/cancel", who)

    def later(self, seconds: int) -> None:
        """Move the service's clock on."""
        now = self.api.app.state.clock()
        self.at(now + timedelta(seconds=seconds))

    async def posted_day(self, tx_id: str) -> str:
        """The service day (Asia/Shanghai) of a journal entry."""
        from zoneinfo import ZoneInfo

        tx = await self.ok("GET", f"/v1/transactions/{tx_id}")
        posted = datetime.fromisoformat(tx["entry"]["posted_at"].replace("Z", "+00:00"))
        return posted.astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()


async def build_shop(api: Api) -> Shop:
    """The district, two kiosk sites with a kiosk credential each (a second one at the first
    site), and a charity with a POINT issuance account."""
    district = await build_district(api)
    shop = Shop(api)
    shop.__dict__.update(district.__dict__)
    shop.site = (await shop.organisation("kiosk_site"))["id"]
    shop.other_site = (await shop.organisation("kiosk_site"))["id"]
    body = {
        "book": shop.book,
        "kind": "charity",
        "name": f"charity {uuid.uuid4().hex[:4]}",
        "accounts": [{"asset": "POINT", "purpose": "issuance", "overdraft_limit": 10**9}],
    }
    charity = await shop.ok("POST", "/v1/organisations", "admin", body=body)
    shop.charity_points = next(a["id"] for a in charity["accounts"] if a["asset"] == "POINT")
    for name, site in (
        ("kiosk", shop.site),
        ("kiosk_2", shop.site),
        ("kiosk_other", shop.other_site),
        ("shop_org", shop.site),
    ):
        role = "org" if name == "shop_org" else "kiosk"
        body = {"role": role, "book": shop.book, "organisation_id": site}
        created = await shop.ok("POST", "/v1/credentials", "admin", body=body)
        shop.tokens[name], shop.credentials[name] = created["token"], created["id"]
    return shop
