"""Expiry of units with a validity period (no HTTP).

An asset may have a validity period of n years (`assets.expires_after_years`): units earned in
calendar year Y (service time zone) lapse at the start of year Y + n + 1. Lots are not stored:
they are derived from an account's posted legs, in journal order (`lots.py`).

`expire_lapsed` posts, per member account, one `expiry` entry that moves the lapsed and unspent
units to the book's `expired` account. It reads the account's legs and its last seq in one
snapshot, computes what lapsed, and posts on the condition that the account has had no entry
since (`Draft.unmoved_since`): a spending that commits in between makes the ledger refuse the
expiry (`account-moved`), and the account is read again. So an expiry never takes units that
had not lapsed, and is never posted and then undone. Its idempotency key names the seq it read,
and running again posts nothing new: the expiry entries consumed the lapsed lots.

A run writes no rows of its own: each expiry is one entry, appended whole with its key in one
of the sequencer's transactions (the `expired` account is opened beforehand, in a committed
transaction of its own). So a run that fails or is killed part way leaves only whole expiries,
and the next run (of the same day) posts exactly what is left (docs/exchange.md §11.2).

A dry run (`dry_run=True`) reads and computes exactly as a run does and posts nothing: its
summary is the plan `timebank expire` shows before it asks to post.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.exchange.accounts import EXPIRED, book_account
from app.exchange.assets.service import validity_years
from app.exchange.expiry.lots import Lots, Movement, expiry_plan, replay, upcoming
from app.http.caller import SYSTEM_CREDENTIAL
from app.kit.canonical_json import JsonObject
from app.kit.faults import fault_point
from app.ledger.journal import KIND_HOLD, KIND_HOLD_VOID, KIND_SERVICE_CREDIT
from app.ledger.outcomes import IdempotencyRef, refusal
from app.ledger.posting import Draft
from app.ledger.sequencer import Sequencer

log = structlog.get_logger(__name__)

KIND_EXPIRY = "expiry"
# Accounts read and posted together (the sequencer groups their entries into batches).
CHUNK = 256
# Tries per account when another posting to it commits between the read and the expiry.
ATTEMPTS = 4

# ---------------------------------------------------------------------------------------------
# Reading lots from the journal

# A service credit's day of service, read from the entry itself (so a verifier holding the
# export derives the same lots); entries written before it was recorded have none.
SERVICE_DAY = (
    f"CASE WHEN e.kind = '{KIND_SERVICE_CREDIT}' THEN "
    "CAST(convert_from(e.body, 'UTF8') AS json) #>> '{meta,service_day}' END"
)
MOVEMENTS = (
    "SELECT l.account_id, l.seq, e.kind, e.tx_id::text AS tx_id, e.posted_at, "
    f"e.reverses::text AS reverses, l.amount, {SERVICE_DAY} AS service_day "
    "FROM (SELECT account_id::text AS account_id, book_code, seq, sum(amount)::bigint AS amount "
    "FROM journal_legs WHERE account_id = ANY(CAST(:ids AS uuid[])) "
    "GROUP BY account_id, book_code, seq) l "
    "JOIN journal_entries e ON e.book_code = l.book_code AND e.seq = l.seq "
    "ORDER BY l.account_id, l.seq"
)
NO_LOTS = (KIND_HOLD, KIND_HOLD_VOID)  # reservations: posted balances do not move


def _day_start(service_day: str | None, zone: ZoneInfo) -> datetime | None:
    """The start of a service day in `zone` (None when there is none, or it is not a date)."""
    if service_day is None:
        return None
    try:
        day = date.fromisoformat(service_day)
    except ValueError:
        return None
    return datetime.combine(day, time(), tzinfo=zone)


async def _histories(
    session: AsyncSession, account_ids: Sequence[str], zone: ZoneInfo
) -> dict[str, list[Movement]]:
    """Each account's movements that make or take lots, in journal order (service days are
    cut in `zone`)."""
    rows = await session.execute(text(MOVEMENTS), {"ids": list(account_ids)})
    histories: dict[str, list[Movement]] = {account_id: [] for account_id in account_ids}
    for row in rows:
        if row.kind not in NO_LOTS and row.amount:
            earned_at = _day_start(row.service_day, zone)
            histories[row.account_id].append(
                Movement(row.tx_id, row.posted_at, row.amount, row.reverses, earned_at)
            )
    return histories


async def account_lots(session: AsyncSession, account_id: str, zone: ZoneInfo) -> Lots:
    """The lots of an account, replayed from the journal (service days cut in `zone`)."""
    return replay((await _histories(session, [account_id], zone))[account_id])


async def upcoming_expiries(
    session: AsyncSession, account_id: str, years: int, zone: ZoneInfo, after: date
) -> list[tuple[date, int]]:
    """(lapse date, amount) of the account's units that lapse after `after`, soonest first."""
    return upcoming(await account_lots(session, account_id, zone), years, zone, after)


# ---------------------------------------------------------------------------------------------
# Posting expiries

Progress = Callable[[int, int], None]
# How many of the accounts a run takes from its summary names (the plan an operator confirms).
NAMED_ACCOUNTS = 10


@dataclass(frozen=True, slots=True)
class ExpirySummary:
    """What an expiry run did, or with `dry_run` what it would post now."""

    as_of: date
    accounts_examined: int
    entries_posted: int
    units_expired_by_asset: dict[str, int]
    accounts_unsettled: int
    dry_run: bool = False
    units_expired_by_book: dict[str, dict[str, int]] = field(default_factory=dict)
    # The first accounts (in book and id order) the run took from, at most NAMED_ACCOUNTS.
    first_accounts: list[str] = field(default_factory=list)

    def as_json(self) -> JsonObject:
        """The summary as `timebank expire` prints it."""
        return {
            "as_of": self.as_of.isoformat(),
            "dry_run": self.dry_run,
            "accounts_examined": self.accounts_examined,
            "entries_posted": self.entries_posted,
            "units_expired_by_asset": self.units_expired_by_asset,
            "units_expired_by_book": self.units_expired_by_book,
            "first_accounts": self.first_accounts,
            "accounts_unsettled": self.accounts_unsettled,
        }


@dataclass(frozen=True, slots=True)
class _Target:
    account_id: str
    book: str
    asset: str
    years: int


@dataclass(slots=True)
class _Run:
    sessions: async_sessionmaker[AsyncSession]
    sequencer: Sequencer
    as_of: date
    zone: ZoneInfo
    dry_run: bool = False
    expired_accounts: dict[tuple[str, str], str] = field(default_factory=dict)
    examined: int = 0
    posted: int = 0
    unsettled: int = 0
    units: dict[str, int] = field(default_factory=dict)
    by_book: dict[str, dict[str, int]] = field(default_factory=dict)
    taken_from: list[tuple[str, str]] = field(default_factory=list)  # (book, account id)

    def count(self, target: _Target, amount: int) -> None:
        """One expiry posted (or, in a dry run, that would be)."""
        self.posted += 1
        self.units[target.asset] = self.units.get(target.asset, 0) + amount
        book = self.by_book.setdefault(target.book, {})
        book[target.asset] = book.get(target.asset, 0) + amount
        self.taken_from.append((target.book, target.account_id))

    def summary(self) -> ExpirySummary:
        return ExpirySummary(
            self.as_of,
            self.examined,
            self.posted,
            dict(sorted(self.units.items())),
            self.unsettled,
            self.dry_run,
            {book: dict(sorted(units.items())) for book, units in sorted(self.by_book.items())},
            [account for _, account in sorted(self.taken_from)[:NAMED_ACCOUNTS]],
        )


def expiry_ref(account_id: str, as_of: date, read_seq: int, amount: int) -> IdempotencyRef:
    """The key of an account's expiry as of a day, computed from the journal up to `read_seq`
    (the account's last leg when it was read)."""
    return IdempotencyRef(
        SYSTEM_CREDENTIAL,
        f"expiry:{account_id}:{as_of.isoformat()}:{read_seq}",
        f"{as_of.isoformat()}:{amount}",
    )


async def _targets(
    sessions: async_sessionmaker[AsyncSession], asset: str, years: int, as_of: date, zone: ZoneInfo
) -> list[_Target]:
    """Open member accounts of `asset` with something available and a credit earned before
    the first day whose earnings have not lapsed by `as_of` (the others have nothing to expire):
    a first credit posted before it (`posted_at` never decreases within a book), or a service
    credit of a service day before it (a record approved or imported later)."""
    cutoff = datetime(as_of.year - years, 1, 1, tzinfo=zone)
    async with sessions() as session:
        rows = await session.execute(
            text(
                "SELECT a.id::text AS id, a.book_code FROM accounts a "
                "WHERE a.asset = :asset AND a.owner LIKE 'member:%' AND a.status = 'open' "
                "AND a.posted - a.pending_debits > 0 AND ((SELECT e.posted_at FROM journal_legs l "
                "JOIN journal_entries e ON e.book_code = l.book_code AND e.seq = l.seq "
                "WHERE l.account_id = a.id AND l.amount > 0 ORDER BY l.seq LIMIT 1) < :cutoff "
                "OR EXISTS (SELECT 1 FROM journal_legs l JOIN journal_entries e "
                "ON e.book_code = l.book_code AND e.seq = l.seq WHERE l.account_id = a.id "
                f"AND l.amount > 0 AND e.kind = '{KIND_SERVICE_CREDIT}' "
                f"AND {SERVICE_DAY} < :cutoff_day)) "
                "ORDER BY a.book_code, a.id"
            ),
            {"asset": asset, "cutoff": cutoff, "cutoff_day": cutoff.date().isoformat()},
        )
        return [_Target(row.id, row.book_code, asset, years) for row in rows]


async def _expired_account(run: _Run, book: str, asset: str) -> str:
    found = run.expired_accounts.get((book, asset))
    if found is None:
        found = await book_account(run.sessions, book, EXPIRED, asset)
        run.expired_accounts[(book, asset)] = found
    return found


async def _read(
    run: _Run, targets: list[_Target]
) -> list[tuple[_Target, int, list[tuple[int, int]]]]:
    """Per target: the position read and what to expire, from one snapshot of the journal."""
    ids = [t.account_id for t in targets]
    async with run.sessions() as session, session.begin():
        # One snapshot: the balances and the legs agree.
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        rows = await session.execute(
            text(
                "SELECT id::text AS id, status, posted - pending_debits AS available, last_seq "
                "FROM accounts WHERE id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": ids},
        )
        accounts = {row.id: row for row in rows}
        histories = await _histories(session, ids, run.zone)
    plans = []
    for target in targets:
        account = accounts[target.account_id]
        if account.status != "open":
            continue
        lots = replay(histories[target.account_id])
        plan = expiry_plan(lots, target.years, run.zone, run.as_of, account.available)
        if plan:
            plans.append((target, account.last_seq, plan))
    return plans


async def _post(run: _Run, target: _Target, read_seq: int, plan: list[tuple[int, int]]) -> bool:
    """Post one expiry on the condition that the account has not moved since `read_seq`;
    False when the ledger refused it (to be read and tried again)."""
    amount = sum(n for _, n in plan)
    expired = await _expired_account(run, target.book, target.asset)
    draft = Draft(
        target.book,
        "post",
        KIND_EXPIRY,
        [(target.account_id, -amount), (expired, amount)],
        "",
        {
            "as_of": run.as_of.isoformat(),
            "expires_after_years": target.years,
            "time_zone": run.zone.key,
            "lapsed": [{"earned_year": year, "amount": n} for year, n in plan],
            "read_seq": read_seq,
        },
        unmoved_since={target.account_id: read_seq},
    )
    ref = expiry_ref(target.account_id, run.as_of, read_seq, amount)
    outcome = await run.sequencer.submit(draft, ref)
    if outcome.status_code >= 400 and outcome.replayed:
        # An earlier try from the same reading was refused for a cause outside the account
        # (its answer is kept under the key): nothing was posted from it, so try afresh.
        fresh = IdempotencyRef(ref.credential_id, f"{ref.key}:{uuid.uuid4()}", ref.request_hash)
        outcome = await run.sequencer.submit(draft, fresh)
    if outcome.status_code >= 400:
        log.info(
            "expiry.refused",
            account=target.account_id,
            status=outcome.status_code,
            problem=refusal(outcome).type_uri,
        )
        return False
    fault_point("expiry.run.posted")
    if not outcome.replayed:
        run.count(target, amount)
    return True


async def _settle(run: _Run, targets: list[_Target]) -> None:
    """Expire what lapsed in each target account, reading again the accounts whose expiry
    the ledger refused (most often: they moved meanwhile)."""
    pending = targets
    for _ in range(ATTEMPTS):
        if not pending:
            return
        plans = await _read(run, pending)
        if run.dry_run:
            # The same computation as a posting run, from the same snapshot; nothing is posted.
            for target, _seq, plan in plans:
                run.count(target, sum(n for _, n in plan))
            return
        for target, _seq, _plan in plans:
            await _expired_account(run, target.book, target.asset)
        results = await asyncio.gather(*(_post(run, t, seq, plan) for t, seq, plan in plans))
        pending = [t for (t, _, _), done in zip(plans, results, strict=True) if not done]
    run.unsettled += len(pending)


async def expire_lapsed(
    sessions: async_sessionmaker[AsyncSession],
    sequencer: Sequencer,
    as_of: date,
    zone: ZoneInfo,
    progress: Progress | None = None,
    *,
    dry_run: bool = False,
) -> ExpirySummary:
    """Post `expiry` entries for what lapsed on or before `as_of` in every member account of
    every asset with a validity period; returns a summary. `progress(done, total)` is called
    as accounts are settled. With `dry_run`, the same computation posts nothing (nor opens
    an `expired` account) and the summary says what a run would post now."""
    run = _Run(sessions, sequencer, as_of, zone, dry_run)
    targets: list[_Target] = []
    async with sessions() as session:
        expiring = await validity_years(session)
    for asset, years in sorted(expiring.items()):
        run.units[asset] = 0
        targets.extend(await _targets(sessions, asset, years, as_of, zone))
    run.examined = len(targets)
    if progress is not None:
        progress(0, len(targets))
    for start in range(0, len(targets), CHUNK):
        chunk = targets[start : start + CHUNK]
        await _settle(run, chunk)
        if progress is not None:
            progress(start + len(chunk), len(targets))
    summary = run.summary()
    log.info(
        "exchange.expiry_run",
        as_of=as_of.isoformat(),
        entries=summary.entries_posted,
        units_by_asset=summary.units_expired_by_asset,
        accounts_examined=summary.accounts_examined,
        accounts_unsettled=summary.accounts_unsettled,
        dry_run=dry_run,
    )
    return summary
