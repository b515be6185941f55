"""The statistics as a book grows (`scripts/bench --stats N`, default 200,000): what a request
for the service or the exchange statistics costs with the running totals (folded by the
follower, issue 23) and without them (every entry of their kinds folded by the request itself,
as before the totals existed), at a tenth of N, half of N and N entries.

One book, in process on the embedded PostgreSQL: two certifying organisations, 2,000 members
and four projects. Every entry goes through the sequencer: half are `service_credit` entries
from an organisation's issuance account to a member, each with its approved service record
(inserted as approval does; 500 a service day from 1 January 2026, so that the book grows as
time passes), half `gift` entries between members, all posted today. At each milestone the
follower's fold catches up (its entries/s are reported), then each read is timed in process
(`service_stats` and `exchange_stats`: the whole book, January, one organisation, and the
service by month, whose groups grow with the months the book spans), p50 and p99 of
--stats-samples calls, once with the totals and once in another time zone, which the totals
were not cut in, so the request folds every entry itself. Targets are printed, never asserted:
with the totals, p99 at N at most 1.5 times p99 at the first milestone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any

import asyncpg
from sqlalchemy import text

from app.config import Settings
from app.db import DatabaseUrls
from app.ledger import folds
from app.ledger.outcomes import IdempotencyRef
from app.ledger.posting import Draft
from app.runtime import Runtime
from app.statements import flow_totals
from app.statements.flows import Scope as FlowScope
from app.statements.flows import exchange_stats
from app.volunteering import credit_totals
from app.volunteering.stats import Scope as ServiceScope
from app.volunteering.stats import service_stats

BOOK = "bench_stats"
ZONE = "Asia/Shanghai"
OTHER_ZONE = "UTC"
MEMBERS = 2_000
CST = timezone(timedelta(hours=8))
FOLDS = [flow_totals.FOLD, credit_totals.FOLD]


def log(message: str) -> None:
    print(f"[bench --stats] {message}", flush=True)


async def _setup(urls: DatabaseUrls) -> dict[str, Any]:
    """The book, its organisations and issuance accounts, members and accounts, projects."""
    conn = await asyncpg.connect(urls.app)
    try:
        async with conn.transaction():
            await conn.execute("INSERT INTO books (code, name) VALUES ($1, $1)", BOOK)
            await conn.execute("INSERT INTO book_heads (book_code) VALUES ($1)", BOOK)
            orgs = [uuid.uuid4() for _ in range(2)]
            issuance = []
            for n, org in enumerate(orgs):
                await conn.execute(
                    "INSERT INTO organisations (id, book_code, kind, name) "
                    "VALUES ($1, $2, 'volunteer_team', $3)",
                    org,
                    BOOK,
                    f"队{n}",
                )
                account = uuid.uuid4()
                await conn.execute(
                    "INSERT INTO accounts (id, book_code, asset, owner, overdraft_limit, meta) "
                    "VALUES ($1, $2, 'HOUR', $3, 1000000000000, '{\"purpose\": \"issuance\"}')",
                    account,
                    BOOK,
                    f"org:{org}",
                )
                issuance.append(account)
            members = [uuid.uuid4() for _ in range(MEMBERS)]
            await conn.executemany(
                "INSERT INTO members (id, book_code, volunteer_number) VALUES ($1, $2, $3)",
                [(m, BOOK, f"S{n:09d}") for n, m in enumerate(members)],
            )
            accounts = [uuid.uuid4() for _ in members]
            await conn.executemany(
                "INSERT INTO accounts (id, book_code, asset, owner, overdraft_limit) "
                "VALUES ($1, $2, 'HOUR', $3, 1000000000)",
                [(a, BOOK, f"member:{m}") for a, m in zip(accounts, members, strict=True)],
            )
            projects = []
            for n in range(4):
                project = uuid.uuid4()
                await conn.execute(
                    "INSERT INTO projects (id, book_code, organisation_id, title, category, "
                    "place, starts_at, ends_at, capacity, checkin_key, created_by) VALUES "
                    "($1, $2, $3, '陪伴老人', $4, '活动中心', $5, $6, 100, $7, $8)",
                    project,
                    BOOK,
                    orgs[n % 2],
                    ("elder_care", "environment", "culture", "elder_care")[n],
                    datetime(2026, 1, 1, tzinfo=CST),
                    datetime(2027, 1, 1, tzinfo=CST),
                    os.urandom(32),
                    uuid.uuid4(),
                )
                projects.append((project, orgs[n % 2], issuance[n % 2]))
    finally:
        await conn.close()
    return {"orgs": orgs, "members": members, "accounts": accounts, "projects": projects}


async def _grow(runtime: Runtime, urls: DatabaseUrls, world: dict[str, Any], count: int,
                start: int) -> float:  # fmt: skip
    """Post `count` entries (half service credits with their records, half gifts); the
    postings per second."""
    credential = str(uuid.uuid4())
    records: list[tuple[Any, ...]] = []
    numbers = iter(range(start, start + count))
    started = time.perf_counter()
    rng = random.Random(start)

    async def worker() -> None:
        for n in numbers:
            m = rng.randrange(MEMBERS)
            member, account = world["members"][m], world["accounts"][m]
            if n % 2:
                other = world["accounts"][(m + 1 + rng.randrange(MEMBERS - 1)) % MEMBERS]
                draft = Draft(BOOK, "post", "gift", [(str(account), -1), (str(other), 1)])
            else:
                project, org, issuance = world["projects"][rng.randrange(4)]
                record = uuid.uuid4()
                minutes = 30 + n % 90
                draft = Draft(
                    BOOK,
                    "post",
                    "service_credit",
                    [(str(issuance), -minutes), (str(account), minutes)],
                    "",
                    {"record": str(record), "project": str(project), "evidence": "checkin"},
                )
            outcome = await runtime.sequencer.submit(
                draft, IdempotencyRef(credential, f"stats-{n}", str(n))
            )
            if outcome.status_code != 201:
                raise RuntimeError(f"posting refused: {outcome.body}")
            if not n % 2:
                # Each member's records one after the other: no two overlap.
                begins = datetime(2026, 1, 1, 8, tzinfo=CST) + timedelta(minutes=10 * n)
                # The book grows as time passes: 500 service credits a day.
                day = date(2026, 1, 1) + timedelta(days=n // 1000)
                records.append(
                    (record, BOOK, project, org, member, begins, begins + timedelta(minutes=5),
                     minutes, day, uuid.UUID(outcome.body["id"]))
                )  # fmt: skip

    await asyncio.gather(*(worker() for _ in range(64)))
    rate = count / (time.perf_counter() - started)
    conn = await asyncpg.connect(urls.app)
    try:
        await conn.executemany(
            "INSERT INTO service_records (id, book_code, project_id, organisation_id, member_id,"
            " evidence, started_at, ended_at, credited_minutes, service_day, status, entered_by,"
            " tx_id) VALUES ($1, $2, $3, $4, $5, 'checkin', $6, $7, $8, $9, 'approved', $5, $10)",
            records,
        )
    finally:
        await conn.close()
    return rate


async def _timed(runtime: Runtime, call: Any, samples: int) -> dict[str, float]:
    latencies = []
    for _ in range(samples):
        async with runtime.sessions() as session:
            started = time.perf_counter()
            await call(session)
            latencies.append(time.perf_counter() - started)
            await session.rollback()
    latencies.sort()

    def at(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3, 2)

    return {"p50_ms": at(0.5), "p99_ms": at(0.99)}


def _reads(world: dict[str, Any], zone: str) -> dict[str, Any]:
    org = str(world["orgs"][0])
    january = (date(2026, 1, 1), date(2026, 1, 31))
    return {
        "service, whole book": lambda s: service_stats(s, ServiceScope(BOOK), "category", zone),
        "service, one month": lambda s: service_stats(
            s, ServiceScope(BOOK, None, *january), "category", zone
        ),
        "service, one organisation": lambda s: service_stats(
            s, ServiceScope(BOOK, org), "category", zone
        ),
        "service, by month (one group a month)": lambda s: service_stats(
            s, ServiceScope(BOOK), "month", zone
        ),
        "exchange, whole book": lambda s: exchange_stats(s, FlowScope(BOOK), "month", zone),
        "exchange, one organisation, by day": lambda s: exchange_stats(
            s, FlowScope(BOOK, uuid.UUID(org)), "day", zone
        ),
    }


async def measure(urls: DatabaseUrls, settings: Settings, n: int, samples: int) -> dict[str, Any]:
    """Grow the book to `n` entries and time the statistics at each milestone."""
    world = await _setup(urls)
    runtime = await Runtime.open(urls.app, settings)
    results = []
    grown = 0
    try:
        for milestone in sorted({max(1, n // 10), max(1, n // 2), n}):
            rate = await _grow(runtime, urls, world, milestone - grown, grown)
            grown = milestone
            started = time.perf_counter()
            folded = await folds.fold_behind(runtime.sessions, FOLDS, ZONE, max_chunks=10**9)
            fold_s = time.perf_counter() - started
            async with runtime.sessions() as session:
                months = await session.scalar(
                    text("SELECT count(*) FROM service_record_months WHERE book_code = :b"),
                    {"b": BOOK},
                )
            row: dict[str, Any] = {
                "entries": milestone,
                "postings_per_s": round(rate),
                "fold_entries_per_s": round(folded / fold_s) if fold_s else None,
                "record_month_rows": months,
                "with_totals": {},
                "without_totals": {},
            }
            for name, call in _reads(world, ZONE).items():
                row["with_totals"][name] = await _timed(runtime, call, samples)
            for name, call in _reads(world, OTHER_ZONE).items():
                row["without_totals"][name] = await _timed(runtime, call, max(3, samples // 10))
            log(f"{milestone:,} entries: {row}")
            results.append(row)
    finally:
        await runtime.close()
    first, last = results[0]["with_totals"], results[-1]["with_totals"]
    ratios = {k: round(last[k]["p99_ms"] / first[k]["p99_ms"], 2) for k in first}
    return {
        "entries": n,
        "milestones": results,
        "p99_at_n_over_first": ratios,
        "target": "with the totals, p99 at N <= 1.5 x p99 at the first milestone",
        "pass": all(r <= 1.5 for r in ratios.values()),
        "how": __doc__,
    }


def render(result: dict[str, Any]) -> str:
    """The table: p50 / p99 ms of each read at each milestone, with and without the totals."""
    lines = []
    heads = [f"{m['entries']:,}" for m in result["milestones"]]
    lines.append("| read (p50 / p99 ms) | " + " | ".join(heads) + " |")
    lines.append("|---" * (len(heads) + 1) + "|")
    names = list(result["milestones"][0]["with_totals"])
    for totals, label in (("with_totals", "totals"), ("without_totals", "no totals")):
        for name in names:
            cells = [
                f"{m[totals][name]['p50_ms']} / {m[totals][name]['p99_ms']}"
                for m in result["milestones"]
            ]
            lines.append(f"| {name} ({label}) | " + " | ".join(cells) + " |")
    folds_ = [f"{m['fold_entries_per_s']:,}/s" for m in result["milestones"]]
    lines.append("| fold rate | " + " | ".join(folds_) + " |")
    lines.append(f"p99 at N / first: {result['p99_at_n_over_first']}; pass: {result['pass']}")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--stats",
        type=int,
        nargs="?",
        const=200_000,
        default=None,
        metavar="N",
        help="grow a book of service credits and gifts to N entries (default 200,000) and time "
        "the statistics with and without their running totals (bench/stats.py)",
    )
    p.add_argument("--stats-samples", type=int, default=50, help="calls timed per read")
