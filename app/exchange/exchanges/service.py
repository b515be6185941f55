"""Quotes and exchanges: a member gives units of one asset and receives another's from a pool,
at the terms of one published rule.

A quote fixes the terms (rule version and hash, both amounts, the conditions that passed) for a
short time. Executing it posts one `exchange` entry: the member's `from_asset` to the paying
organisation's pool, and the pool's `to_asset` to the member (two assets, each balancing on its
own). Caps are checked with the member's row locked, against what the journal says the member
already exchanged under the rule's code, so they hold under concurrency and across processes.
The entry is appended inside the request's own transaction (`ledger.InTransaction`), with the
quote's `tx_id` and the request's answer: all commit together or nothing does, whatever fails
or is killed between them.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.exchange import errors
from app.exchange.accounts import (
    CreditLimits,
    credit_limits,
    find_member_account,
    member_account,
)
from app.exchange.exchanges import schemas
from app.exchange.pools.service import pool_account
from app.exchange.ratios import convert
from app.exchange.rules.service import rule_row, sees_rule
from app.exchange.usage import Period, debited_since, period_start
from app.http.caller import SYSTEM_CREDENTIAL, Caller
from app.identity.members import MemberRow
from app.identity.personal import PersonalDataCipher
from app.kit.faults import fault_point
from app.kit.problems import is_problem
from app.ledger.errors import NothingToMove
from app.ledger.outcomes import IdempotencyRef, Outcome, refusal
from app.ledger.posting import Draft
from app.ledger.sequencer import Sequencer
from app.ledger.service import InTransaction, posted_before

KIND_EXCHANGE = "exchange"
PERIODS: tuple[Period, ...] = ("day", "month", "year")


@dataclass(frozen=True, slots=True)
class Terms:
    """What the exchange rules need from the service: its clock, time zone and quote lifetime."""

    now: datetime
    zone: ZoneInfo
    quote_ttl_s: int


def age_on(birth: date, day: date) -> int:
    """Whole years from `birth` to `day`."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def caps_refusal(
    caps: dict[Period, int | None], used: dict[Period, int], amount: int
) -> tuple[Period, int, int] | None:
    """The first cap (period, cap, used) that `amount` more would pass, or None."""
    for period in PERIODS:
        cap = caps[period]
        if cap is not None and used[period] + amount > cap:
            return period, cap, used[period]
    return None


def _caps(rule: Row[Any]) -> dict[Period, int | None]:
    return {"day": rule.cap_day, "month": rule.cap_month, "year": rule.cap_year}


async def _used(
    session: AsyncSession, account: str | None, rule: Row[Any], terms: Terms
) -> dict[Period, int]:
    if account is None:
        return dict.fromkeys(PERIODS, 0)
    # Periods are days, months and years of the time zone the rule was published under.
    zone = ZoneInfo(json.loads(rule.document)["time_zone"])
    return {
        period: await debited_since(
            session,
            account,
            KIND_EXCHANGE,
            period_start(terms.now, zone, period),
            "rule_code",
            rule.code,
        )
        for period in PERIODS
    }


def _check_in_force(rule: Row[Any], now: datetime) -> None:
    if rule.retired_at is not None:
        raise errors.RuleRetired(
            f"exchange rule {rule.code} v{rule.version} was retired: {rule.retired_reason}",
            rule_id=str(rule.id),
        )
    if now < rule.valid_from or (rule.valid_until is not None and now >= rule.valid_until):
        raise errors.RuleNotInForce(
            f"exchange rule {rule.code} v{rule.version} is valid from {rule.valid_from}"
            + (f" until {rule.valid_until}" if rule.valid_until else ""),
            rule_id=str(rule.id),
        )


async def _find_rule(
    session: AsyncSession,
    rule_id: uuid.UUID | None,
    pair: tuple[str | None, str | None],
    book: str,
    now: datetime,
) -> Row[Any]:
    if rule_id is not None:
        return await rule_row(session, rule_id)
    found = await session.scalar(
        text(
            "SELECT r.id FROM exchange_rules r JOIN exchange_rule_pools p ON p.rule_id = r.id "
            "WHERE r.from_asset = :f AND r.to_asset = :t AND p.book_code = :book "
            "AND NOT EXISTS (SELECT 1 FROM exchange_rule_retirements x WHERE x.rule_id = r.id) "
            "AND r.valid_from <= :now AND (r.valid_until IS NULL OR :now < r.valid_until) "
            "ORDER BY r.published_at DESC, r.version DESC LIMIT 1"
        ),
        {"f": pair[0], "t": pair[1], "book": book, "now": now},
    )
    if found is None:
        raise errors.RuleNotFound(
            f"no exchange rule in force converts {pair[0]} to {pair[1]} in book {book!r}"
        )
    return await rule_row(session, found)


async def _conditions(
    session: AsyncSession,
    cipher: PersonalDataCipher,
    rule: Row[Any],
    member: MemberRow,
    amount: int,
    hardship: bool,
    caller: Caller,
    today: date,
) -> list[dict[str, Any]]:
    """The rule's conditions the member meets (recorded in the entry), or the refusal."""
    passed: list[dict[str, Any]] = []
    if rule.step is not None:
        if amount % rule.step:
            raise errors.ExchangeAmountInvalid(
                f"the amount must be a whole number of steps of {rule.step}", step=rule.step
            )
        passed.append({"condition": "step", "step": rule.step})
    if rule.min_age is not None:
        blob = member.birth_date_enc
        born = None if blob is None else cipher.decrypt(blob, f"member:{member.id}:birth_date")
        age = None if born is None else age_on(date.fromisoformat(born), today)
        attested = hardship and caller.role in ("org", "admin")
        if age is not None and age >= rule.min_age:
            passed.append({"condition": "min_age", "min_age": rule.min_age})
        elif (
            attested
            and rule.min_age_hardship is not None
            and age is not None
            and age >= rule.min_age_hardship
        ):
            passed.append(
                {
                    "condition": "min_age_hardship",
                    "min_age": rule.min_age_hardship,
                    "attested_by": caller.credential.id,
                }
            )
        else:
            raise errors.ConditionNotMet(
                f"the rule requires the member to be at least {rule.min_age}"
                + (
                    f" ({rule.min_age_hardship} in hardship attested by an organisation)"
                    if rule.min_age_hardship is not None
                    else ""
                ),
                condition="min_age",
            )
    if rule.min_certified_minutes is not None:
        exchanged_before = await session.scalar(
            text(
                "SELECT 1 FROM exchange_quotes WHERE member_id = :m AND executed_at IS NOT NULL "
                "LIMIT 1"
            ),
            {"m": member.id},
        )
        if exchanged_before:
            passed.append({"condition": "min_certified_minutes", "first_exchange": False})
        else:
            certified = await session.scalar(
                text(
                    "SELECT coalesce(sum(credited_minutes), 0) FROM service_records "
                    "WHERE member_id = :m AND status = 'approved'"
                ),
                {"m": member.id},
            )
            if int(certified or 0) < rule.min_certified_minutes:
                raise errors.ConditionNotMet(
                    f"a first exchange needs {rule.min_certified_minutes} certified minutes of "
                    f"service; the member has {certified}",
                    condition="min_certified_minutes",
                    certified_minutes=int(certified or 0),
                )
            passed.append(
                {
                    "condition": "min_certified_minutes",
                    "first_exchange": True,
                    "min_minutes": rule.min_certified_minutes,
                }
            )
    return passed


def quote_view(quote: Row[Any], rule: Row[Any], now: datetime) -> schemas.QuoteRead:
    """A quote as the API shows it."""
    if quote.tx_id:
        status = "executed"
    elif rule.retired_at is not None:
        status = "void"  # its rule was retired: it will never execute
    else:
        status = "expired" if now >= quote.expires_at else "open"
    return schemas.QuoteRead.model_validate(
        {
            "id": quote.id,
            "member_id": quote.member_id,
            "book": quote.book_code,
            "rule": {
                "id": rule.id,
                "code": rule.code,
                "version": rule.version,
                "hash": rule.rule_hash,
            },
            "give": {"asset": rule.from_asset, "amount": quote.from_amount},
            "receive": {"asset": rule.to_asset, "amount": quote.to_amount},
            "conditions": quote.conditions,
            "expires_at": quote.expires_at,
            "status": status,
            "tx_id": quote.tx_id,
            "executed_at": quote.executed_at,
        }
    )


async def quote_row(session: AsyncSession, quote_id: uuid.UUID, lock: bool = False) -> Row[Any]:
    """A quote's row; 404 if unknown."""
    row = (
        await session.execute(
            text("SELECT * FROM exchange_quotes WHERE id = :id" + (" FOR UPDATE" if lock else "")),
            {"id": quote_id},
        )
    ).one_or_none()
    if row is None:
        raise errors.QuoteNotFound(f"quote {quote_id} does not exist")
    return row


async def create_quote(
    session: AsyncSession,
    cipher: PersonalDataCipher,
    caller: Caller,
    member: MemberRow,
    amount: int,
    rule_id: uuid.UUID | None,
    pair: tuple[str | None, str | None],
    hardship: bool,
    terms: Terms,
) -> schemas.QuoteRead:
    """Price an exchange for a member at the rule in force, for `quote_ttl_s` seconds."""
    book = member.book
    rule = await _find_rule(session, rule_id, pair, book, terms.now)
    if not sees_rule(caller, rule):
        raise errors.RuleNotFound(f"exchange rule {rule_id} does not exist")
    _check_in_force(rule, terms.now)
    if book not in [pool["book"] for pool in rule.pools]:
        raise errors.RuleNotApplicable(
            f"exchange rule {rule.code} v{rule.version} does not apply in book {book!r}"
        )
    if member.status != "active":
        raise errors.MemberNotEligible(f"member {member.id} is {member.status}")
    if rule.organisations is not None and not set(map(str, rule.organisations)) & set(
        map(str, member.organisations)
    ):
        raise errors.RuleNotApplicable(
            f"exchange rule {rule.code} v{rule.version} applies to members of named "
            "organisations only"
        )
    if amount < rule.min_amount or (rule.max_amount is not None and amount > rule.max_amount):
        raise errors.ExchangeAmountInvalid(
            f"the rule accepts {rule.min_amount} to {rule.max_amount or 'any'} per exchange",
            min_amount=rule.min_amount,
            max_amount=rule.max_amount,
        )
    receive = convert(amount, rule.ratio_num, rule.ratio_den)
    if receive < 1:
        raise errors.ExchangeAmountInvalid(
            f"{amount} converts to nothing at {rule.ratio_num}/{rule.ratio_den}"
        )
    today = terms.now.astimezone(terms.zone).date()
    conditions = await _conditions(session, cipher, rule, member, amount, hardship, caller, today)
    account = await find_member_account(session, book, member.id, rule.from_asset)
    refusal = caps_refusal(_caps(rule), await _used(session, account, rule, terms), amount)
    if refusal is not None:
        raise _cap_problem(refusal)
    quote_id = uuid.uuid4()
    await session.execute(
        text(
            "INSERT INTO exchange_quotes (id, rule_id, book_code, member_id, from_amount, "
            "to_amount, conditions, expires_at, created_by) VALUES (:id, :rule, :book, :member, "
            ":give, :receive, CAST(:conditions AS jsonb), :expires, CAST(:by AS uuid))"
        ),
        {
            "id": quote_id,
            "rule": rule.id,
            "book": book,
            "member": member.id,
            "give": amount,
            "receive": receive,
            "conditions": json.dumps(conditions),
            "expires": terms.now + timedelta(seconds=terms.quote_ttl_s),
            "by": caller.credential.id,
        },
    )
    return quote_view(await quote_row(session, quote_id), rule, terms.now)


def _cap_problem(refusal: tuple[Period, int, int]) -> errors.ExchangeCapExceeded:
    period, cap, used = refusal
    return errors.ExchangeCapExceeded(
        f"the member may exchange {cap} per {period} under this rule and has exchanged {used}",
        period=period,
        cap=cap,
        used=used,
    )


def exchange_ref(quote_id: uuid.UUID) -> IdempotencyRef:
    """The key of a quote's one exchange posting."""
    return IdempotencyRef(SYSTEM_CREDENTIAL, f"exchange:{quote_id}", str(quote_id))


def _refused(outcome: Outcome, pool: str) -> Exception:
    refused = refusal(outcome)
    if is_problem(refused, NothingToMove):
        return refused  # the member's own state (a storage cap), not the ledger's or the pool's
    if refused.extra.get("account_id") == pool:
        return errors.PoolEmpty(
            "the paying pool does not hold enough to pay this exchange",
            ledger_problem=refused.problem(),
        )
    return errors.ExchangeRefused(
        f"the ledger refused the exchange: {refused.detail}", ledger_problem=refused.problem()
    )


@dataclass(frozen=True, slots=True)
class Prepared:
    """What executing a quote needs opened beforehand, outside the locks: the member's account
    for the asset received and the storage cap on it."""

    receive: str
    limits: CreditLimits


async def prepare_execution(
    sessions: async_sessionmaker[AsyncSession], quote_id: uuid.UUID
) -> Prepared:
    """Open what executing the quote credits (each in its own committed transaction), before
    the request's transaction takes its locks: it then needs no second connection."""
    async with sessions() as session:
        quote = await quote_row(session, quote_id)
        rule = await rule_row(session, quote.rule_id)
    receive = await member_account(sessions, quote.book_code, quote.member_id, rule.to_asset)
    limits = await credit_limits(sessions, quote.book_code, rule.to_asset, [receive])
    return Prepared(receive, limits)


async def execute_quote(
    session: AsyncSession,
    sequencer: Sequencer,
    caller: Caller,
    quote_id: uuid.UUID,
    terms: Terms,
    prepared: Prepared,
) -> tuple[schemas.QuoteRead, dict[str, Any]]:
    """Execute a quote at its terms (once); returns the quote and the journal entry (as the
    posting answered it)."""
    quote = await quote_row(session, quote_id, lock=True)
    rule = await rule_row(session, quote.rule_id)
    if quote.tx_id is not None:
        raise errors.QuoteUsed(f"quote {quote_id} was executed (transaction {quote.tx_id})")
    book, member_id = quote.book_code, quote.member_id
    # The member's row serialises the member's exchanges: the caps read what committed before.
    # (NO KEY: rows that merely reference the member are not held up.)
    status = await session.scalar(
        text("SELECT status FROM members WHERE id = :id FOR NO KEY UPDATE"), {"id": member_id}
    )
    if status != "active" and not await posted_before(session, exchange_ref(quote_id)):
        raise errors.MemberNotEligible(f"member {member_id} is {status}")
    give = await find_member_account(session, book, member_id, rule.from_asset)
    if give is None:
        raise errors.ExchangeRefused(f"the member holds no {rule.from_asset} in book {book!r}")
    if not await posted_before(session, exchange_ref(quote_id)):
        # A posting under the quote's key with no tx_id on the quote can only be one left by
        # a version that posted before recording (now both commit together): its checks
        # passed, and the cap would count the exchange itself, so it is only replayed.
        if terms.now >= quote.expires_at:
            raise errors.QuoteExpired(f"quote {quote_id} expired at {quote.expires_at}")
        _check_in_force(rule, terms.now)
        refusal = caps_refusal(
            _caps(rule), await _used(session, give, rule, terms), quote.from_amount
        )
        if refusal is not None:
            raise _cap_problem(refusal)
    organisation = next(p["organisation_id"] for p in rule.pools if p["book"] == book)
    pool_in = await pool_account(session, uuid.UUID(organisation), rule.from_asset)
    pool_out = await pool_account(session, uuid.UUID(organisation), rule.to_asset)
    draft = Draft(
        book,
        "post",
        KIND_EXCHANGE,
        [
            (give, -quote.from_amount),
            (pool_in, quote.from_amount),
            (pool_out, -quote.to_amount),
            (prepared.receive, quote.to_amount),
        ],
        "",
        {
            "rule": str(rule.id),
            "rule_code": rule.code,
            "rule_version": rule.version,
            "rule_hash": rule.rule_hash,
            "quote": str(quote_id),
            "conditions": quote.conditions,
        },
        actor=caller.actor(),
        storage_caps=prepared.limits.storage_caps,
        overflow_to=prepared.limits.overflow_to,
        beneficiary=prepared.receive,
    )
    # In this transaction (quote and member locked above): the entry and the quote's tx_id
    # commit together or not at all.
    outcome = await InTransaction(session, sequencer).submit(draft, exchange_ref(quote_id))
    if outcome.status_code >= 400:
        raise _refused(outcome, pool_out)
    fault_point("exchange.execute.posted")
    entry = outcome.body
    await session.execute(
        text(
            "UPDATE exchange_quotes SET tx_id = CAST(:tx AS uuid), executed_at = now() "
            "WHERE id = :id"
        ),
        {"tx": entry["id"], "id": quote_id},
    )
    return quote_view(await quote_row(session, quote_id), rule, terms.now), entry


async def get_quote(session: AsyncSession, quote_id: uuid.UUID, now: datetime) -> schemas.QuoteRead:
    """A quote with its rule."""
    quote = await quote_row(session, quote_id)
    return quote_view(quote, await rule_row(session, quote.rule_id), now)
