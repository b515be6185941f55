"""Each step of a kiosk redemption (redeem, confirm, cancel, expiry) fails or dies between its
posting and its own rows: with no retry, the journal, the redemption, the code and the stock
still agree and the site's report reconciles; the step then succeeds as if never tried
(docs/kiosk.md §3.4)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from app.kiosk import redemptions
from app.kit import faults
from tests.conftest import Api, ScratchDatabase
from tests.consistency import checks
from tests.consistency.faults import dies, fails, killed_at
from tests.kiosk.shop import Shop, build_shop

ZONE = ZoneInfo("Asia/Shanghai")


@pytest.fixture
async def shop(api: Api) -> Shop:
    return await build_shop(api)


@dataclass
class Scene:
    """A member with 50 points, an item of 3 pieces at 10, and (unless the step is redeeming)
    a pending redemption of one piece."""

    shop: Shop
    member: dict[str, Any]
    item: dict[str, Any]
    redemption: dict[str, Any] | None = None

    @property
    def points(self) -> str:
        return self.shop.points_account(self.member)


async def _scene(s: Shop, pending: bool) -> Scene:
    member = await s.member()
    await s.points_to(member, 50)
    scene = Scene(s, member, await s.item("大米", 10, stock=3))
    if pending:
        r = await s.redeem(await s.code(member), [(scene.item, 1)])
        assert r.status_code == 201, r.text
        scene.redemption = r.json()
    return scene


async def _state(scene: Scene, database: ScratchDatabase) -> dict[str, Any]:
    """What must agree (the checks, the report) and what must not move (the head, the
    redemption, the stock, the points)."""
    s = scene.shop
    conn = await asyncpg.connect(database.app_url)
    try:
        problems = await checks.all_problems(conn)
        head = await conn.fetchval("SELECT seq FROM book_heads WHERE book_code = $1", s.book)
        days = await conn.fetch(
            "SELECT DISTINCT (posted_at AT TIME ZONE 'Asia/Shanghai')::date AS day "
            "FROM journal_entries WHERE book_code = $1",
            s.book,
        )
    finally:
        await conn.close()
    reconciled = []
    for day in sorted({row["day"] for row in days} | {datetime.now(ZONE).date()}):
        report = await s.ok("GET", f"/v1/kiosk/sites/{s.site}/report?date={day}", "kiosk")
        reconciled.append(report["reconciled"] or report["differences"])
    listed = await s.ok("GET", f"/v1/kiosk/sites/{s.site}/redemptions", "kiosk")
    item = await s.get_item(scene.item)
    return {
        "problems": problems,
        "head": head,
        "reconciled": all(r is True for r in reconciled) or reconciled,
        "redemptions": sorted(r["status"] for r in listed["items"]),
        "stock": (item["stock"], item["reserved"]),
        "available": await s.available(scene.points),
    }


async def _expire(s: Shop) -> int:
    state = s.api.app.state
    return await redemptions.expire_due(state.sessions, state.sequencer, state.clock())


# The step, done normally through the in-process app.
async def _redeem(scene: Scene, code: str) -> None:
    r = await scene.shop.redeem(code, [(scene.item, 1)])
    assert r.status_code == 201, r.text


async def _confirm(scene: Scene, _: str) -> None:
    assert scene.redemption is not None
    r = await scene.shop.confirm(scene.redemption["id"])
    assert r.status_code == 200, r.text


async def _cancel(scene: Scene, _: str) -> None:
    assert scene.redemption is not None
    r = await scene.shop.cancel(scene.redemption["id"])
    assert r.status_code == 200, r.text


async def _expiry(scene: Scene, _: str) -> None:
    assert await _expire(scene.shop) == 1


Step = Callable[[Scene, str], Awaitable[None]]


@dataclass(frozen=True)
class Action:
    point: str
    pending: bool
    again: Step
    # The state once the step succeeded: redemptions, (stock, reserved), available points.
    after: tuple[list[str], tuple[int, int], int]


ACTIONS = {
    "redeem": Action("kiosk.redeem.posted", False, _redeem, (["pending"], (3, 1), 40)),
    "confirm": Action("kiosk.confirm.posted", True, _confirm, (["confirmed"], (2, 0), 40)),
    "cancel": Action("kiosk.cancel.posted", True, _cancel, (["cancelled"], (3, 0), 50)),
    "expire": Action("kiosk.expire.posted", True, _expiry, (["expired"], (3, 0), 50)),
}


async def _done_again(
    scene: Scene, database: ScratchDatabase, action: Action, head: int, code: str
) -> None:
    """The step, taken normally after the failure, completes whole: one entry more (a
    redemption uses the code the failed one tried: it was not used)."""
    await action.again(scene, code)
    after = await _state(scene, database)
    assert (after["problems"], after["head"], after["reconciled"]) == ([], head + 1, True)
    assert (after["redemptions"], after["stock"], after["available"]) == action.after


@pytest.mark.parametrize("name", list(ACTIONS))
async def test_a_step_failing_after_its_posting_leaves_nothing(
    shop: Shop, database: ScratchDatabase, armed: Any, name: str
) -> None:
    action = ACTIONS[name]
    scene = await _scene(shop, action.pending)
    code = await shop.code(scene.member)
    if name == "expire":
        shop.later(121)
    before = await _state(scene, database)
    assert (before["problems"], before["reconciled"]) == ([], True)
    armed(action.point)
    if name == "expire":
        with pytest.raises(faults.InjectedFault):
            await _expire(shop)
    elif name == "redeem":
        await fails(shop.redeem(code, [(scene.item, 1)]))
    else:
        assert scene.redemption is not None
        path = f"/v1/kiosk/redemptions/{scene.redemption['id']}/{name}"
        await fails(shop.call("POST", path, "kiosk"))
    # Nobody retries: the journal and the kiosk's rows agree as they are, as before the step.
    assert await _state(scene, database) == before
    faults.disarm(action.point)
    await _done_again(scene, database, action, before["head"], code)


def _request(s: Shop, server: httpx.AsyncClient, name: str, scene: Scene, code: str) -> Any:
    headers = {"Authorization": f"Bearer {s.tokens['kiosk']}", "Idempotency-Key": "killed"}
    if name == "redeem":
        body = {"code": code, "items": [{"item_id": scene.item["id"], "quantity": 1}]}
        return server.post("/v1/kiosk/redemptions", json=body, headers=headers)
    assert scene.redemption is not None
    return server.post(f"/v1/kiosk/redemptions/{scene.redemption['id']}/{name}", headers=headers)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ACTIONS))
async def test_a_step_killed_after_its_posting_leaves_nothing(
    shop: Shop, database: ScratchDatabase, cli_env: dict[str, str], tmp_path: Path, name: str
) -> None:
    action = ACTIONS[name]
    # The server keeps real time: so does the app that prepares the step and takes it again.
    shop.at(datetime.now(UTC))
    # The expiry is reached by the killed server's own sweeper.
    env = {"TIMEBANK_HOLD_SWEEP_INTERVAL_S": "0.2"} if name == "expire" else None
    async with killed_at(cli_env, tmp_path, action.point, env) as server:
        # Made once the server is up, so that neither the code nor the redemption runs out.
        scene = await _scene(shop, action.pending)
        code = await shop.code(scene.member)
        before = await _state(scene, database)
        assert (before["problems"], before["reconciled"]) == ([], True)
        if name == "expire":
            assert scene.redemption is not None
            conn = await asyncpg.connect(database.app_url)
            try:
                await conn.execute(
                    "UPDATE kiosk_redemptions SET expires_at = now() - interval '1 hour' "
                    "WHERE id = $1",
                    uuid.UUID(scene.redemption["id"]),
                )
            finally:
                await conn.close()
        else:
            await dies(_request(shop, server, name, scene, code))
    # Nobody retries: the journal and the kiosk's rows agree as they are, as before the step.
    assert await _state(scene, database) == before
    await _done_again(scene, database, action, before["head"], code)


async def test_settlements_and_baskets_of_one_item_at_once_neither_deadlock_nor_disagree(
    shop: Shop, database: ScratchDatabase
) -> None:
    # A confirmation or cancellation locks its items before it appends (the book's head stays
    # locked until it commits), as a basket does: otherwise each would wait for the other.
    s = shop
    item = await s.item("面粉", 5, stock=40)
    members = [await s.member() for _ in range(6)]
    for member in members:
        await s.points_to(member, 50)
    pending = []
    for member in members:
        r = await s.redeem(await s.code(member), [(item, 1)])
        assert r.status_code == 201, r.text
        pending.append(r.json()["id"])
    codes = [await s.code(member) for member in members]
    kiosks = ["kiosk", "kiosk_2"] * 3
    answers = await asyncio.gather(
        *(s.confirm(p, kiosk=k) for p, k in zip(pending[:3], kiosks, strict=False)),
        *(s.cancel(p, who=k) for p, k in zip(pending[3:], kiosks, strict=False)),
        *(s.redeem(c, [(item, 2)], kiosk=k) for c, k in zip(codes, reversed(kiosks), strict=True)),
    )
    assert [r.status_code for r in answers] == [200] * 6 + [201] * 6, [r.text for r in answers]
    scene = Scene(s, members[0], item)
    state = await _state(scene, database)
    assert (state["problems"], state["reconciled"], state["stock"]) == ([], True, (37, 12))


async def test_the_checks_see_stock_and_codes_disagree(
    shop: Shop, database: ScratchDatabase
) -> None:
    scene = await _scene(shop, pending=True)
    assert scene.redemption is not None
    conn = await asyncpg.connect(database.app_url)
    try:
        assert await checks.all_problems(conn) == []
        # Corrupted in a transaction that is rolled back: no trigger forbids these updates.
        corrupted = conn.transaction()
        await corrupted.start()
        item = uuid.UUID(scene.item["id"])
        await conn.execute("UPDATE kiosk_items SET stock = 4, reserved = 0 WHERE id = $1", item)
        await conn.execute(
            "UPDATE redeem_codes SET used_at = NULL, redemption_id = NULL WHERE redemption_id = $1",
            uuid.UUID(scene.redemption["id"]),
        )
        stock, codes = await checks.kiosk_stock(conn), await checks.kiosk_codes(conn)
        await corrupted.rollback()
        assert await checks.all_problems(conn) == []
    finally:
        await conn.close()
    assert stock == [
        f"item {scene.item['id']}: 4 on hand, moves 3",
        f"item {scene.item['id']}: 0 reserved, 1 pending",
    ]
    assert len(codes) == 1 and scene.redemption["id"] in codes[0]


async def test_a_hold_posted_outside_its_redemption_is_settled_as_confirmed_at_expiry(
    shop: Shop, database: ScratchDatabase
) -> None:
    # The holds API (or a confirmation of an earlier version that did not finish) posted the
    # hold: the points were taken, so the expiry settles the redemption as confirmed.
    scene = await _scene(shop, pending=True)
    assert scene.redemption is not None
    posted = await shop.ok("POST", f"/v1/holds/{scene.redemption['hold_id']}/post", body={})
    assert (await _state(scene, database))["problems"] != []
    shop.later(121)
    assert await _expire(shop) == 0
    settled = await shop.ok("GET", f"/v1/kiosk/redemptions/{scene.redemption['id']}", "kiosk")
    assert (settled["status"], settled["tx_id"]) == ("confirmed", posted["id"])
    state = await _state(scene, database)
    assert (state["problems"], state["reconciled"], state["stock"]) == ([], True, (2, 0))
