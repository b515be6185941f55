"""A server killed amid a burst of approvals, reversals, redemptions and confirmations, with
no retry afterwards: every action is whole or was never done, and the service's own
reconciliations (statistics, the kiosk's day) agree with the journal."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from app.ledger.verify_runner import verify_book
from tests.conftest import Api, ScratchDatabase
from tests.consistency import checks
from tests.consistency.faults import serving
from tests.kiosk.shop import Shop, build_shop
from tests.volunteering.district import MORNING

EACH = 6  # records approved, records reversed, redemptions confirmed, redemptions started


async def _prepared(s: Shop) -> dict[str, Any]:
    item = await s.item("大米", 3, stock=100)
    project = await s.project(capacity=4 * EACH)
    records = []
    for _ in range(2 * EACH):
        member = await s.member()
        entered = await s.manual(project["id"], member["id"], MORNING, 45)
        assert entered.status_code == 201, entered.text
        records.append(entered.json()["id"])
    for record in records[EACH:]:
        await s.ok("POST", f"/v1/service-records/{record}/approve", "team_checker")
    shoppers = [await s.member() for _ in range(2 * EACH)]
    for shopper in shoppers:
        await s.points_to(shopper, 30)
    pending = []
    for shopper in shoppers[:EACH]:
        r = await s.redeem(await s.code(shopper), [(item, 2)])
        assert r.status_code == 201, r.text
        pending.append(r.json()["id"])
    codes = [await s.code(shopper) for shopper in shoppers[EACH:]]
    return {"item": item, "records": records, "pending": pending, "codes": codes}


def _burst(s: Shop, server: httpx.AsyncClient, world: dict[str, Any]) -> list[Any]:
    def post(who: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {s.tokens[who]}", "Idempotency-Key": uuid.uuid4().hex}
        return server.post(path, json=body, headers=headers)

    records = world["records"]
    basket = [{"item_id": world["item"]["id"], "quantity": 1}]
    return [
        *(post("team_checker", f"/v1/service-records/{r}/approve") for r in records[:EACH]),
        *(
            post("team", f"/v1/service-records/{r}/reverse", {"reason": "时长录错"})
            for r in records[EACH:]
        ),
        *(post("kiosk", f"/v1/kiosk/redemptions/{p}/confirm") for p in world["pending"]),
        *(
            post(
                "kiosk",
                "/v1/kiosk/redemptions",
                {"code": c, "items": basket},
            )
            for c in world["codes"]
        ),
    ]


DONE = """
SELECT (SELECT count(*) FROM service_records WHERE status = 'approved') AS approved,
       (SELECT count(*) FROM service_records WHERE status = 'reversed') AS reversed,
       (SELECT count(*) FROM kiosk_redemptions WHERE status = 'confirmed') AS confirmed,
       (SELECT count(*) FROM kiosk_redemptions) AS redemptions
"""


async def _done(database: ScratchDatabase) -> dict[str, int]:
    """How many of the burst's actions took effect (approvals, reversals, confirmations and
    new redemptions), from the rows the burst started with."""
    conn = await asyncpg.connect(database.app_url)
    try:
        row = await conn.fetchrow(DONE)
    finally:
        await conn.close()
    return {
        "approved": row["approved"] + row["reversed"] - EACH,
        "reversed": row["reversed"],
        "confirmed": row["confirmed"],
        "redeemed": row["redemptions"] - EACH,
    }


@pytest.mark.slow
async def test_a_server_killed_amid_a_burst_leaves_each_action_whole_or_undone(
    api: Api, database: ScratchDatabase, cli_env: dict[str, str], tmp_path: Path
) -> None:
    s = await build_shop(api)
    s.at(datetime.now(UTC))  # the server keeps real time: its codes must not have run out
    world = await _prepared(s)
    async with serving(cli_env, tmp_path, "burst") as served:
        tasks = [asyncio.ensure_future(request) for request in _burst(s, served.client, world)]
        # Killed once a quarter of the answers are back, with the others in flight.
        arriving = asyncio.as_completed(tasks)
        for _ in range(len(tasks) // 4):
            await next(arriving)
        served.process.kill()
        answers = await asyncio.gather(*tasks, return_exceptions=True)
    answered = [a for a in answers if isinstance(a, httpx.Response)]
    cut = [a for a in answers if isinstance(a, httpx.TransportError)]
    assert len(answered) + len(cut) == len(answers) and answered, answers
    assert all(a.status_code in (200, 201) for a in answered), [a.text for a in answered]
    done = await _done(database)
    print(f"answered {len(answered)}, cut off {len(cut)}; done in all: {done}")
    # Every answered action is done; some cut off may be done too (committed, not answered).
    assert sum(done.values()) >= len(answered)

    # Nobody retries. The journal and every feature's rows agree as they are.
    conn = await asyncpg.connect(database.app_url)
    try:
        assert await checks.all_problems(conn) == []
    finally:
        await conn.close()
    await verify_book(database.app_url, s.book)
    stats = await s.ok("GET", f"/v1/stats/service?book={s.book}", "admin")
    assert stats["ledger"]["reconciled"] is True
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    report = await s.ok("GET", f"/v1/kiosk/sites/{s.site}/report?date={today}", "kiosk")
    assert report["reconciled"] is True, report["differences"]
