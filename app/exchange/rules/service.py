"""Exchange rules: versioned, immutable once published, proved by the journal.

Publishing a rule writes its JCS document (and the document's SHA-256) into `exchange_rules`
and, as `notice.rule_published`, into the chain of every book it applies in; publishing a new
version of a code retires the previous one (`notice.rule_retired`). A quote and an exchange
name the rule's hash, so anyone can tell which rule priced an exchange.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.exchange import errors
from app.exchange.pools.service import find_pool
from app.exchange.rules import schemas
from app.http.actions import Notice
from app.http.caller import Caller
from app.identity.authorization import reaches_book, require_book, require_books
from app.kit.canonical_json import JsonObject, canonical_bytes
from app.kit.clock import rfc3339_micro

RULE_COLUMNS = """
SELECT r.*, t.reason AS retired_reason, t.retired_at,
       (SELECT coalesce(json_agg(json_build_object('book', p.book_code,
                                                   'organisation_id', p.organisation_id)
                                 ORDER BY p.book_code), '[]')
          FROM exchange_rule_pools p WHERE p.rule_id = r.id) AS pools
  FROM exchange_rules r LEFT JOIN exchange_rule_retirements t ON t.rule_id = r.id
"""


def rule_view(row: Row[Any], now: datetime) -> schemas.RuleRead:
    """A rule as the API shows it."""
    retired = row.retired_at is not None
    in_force = (
        not retired and row.valid_from <= now and (row.valid_until is None or now < row.valid_until)
    )
    return schemas.RuleRead(
        id=row.id,
        code=row.code,
        version=row.version,
        status="retired" if retired else "published",
        in_force=in_force,
        rule=json.loads(row.document),
        rule_hash=row.rule_hash,
        published_at=row.published_at,
        retired_at=row.retired_at,
        retired_reason=row.retired_reason,
    )


async def rule_row(session: AsyncSession, rule_id: uuid.UUID) -> Row[Any]:
    """A rule's stored row, with its pools and retirement; 404 if unknown."""
    row = (
        await session.execute(text(f"{RULE_COLUMNS} WHERE r.id = :id"), {"id": rule_id})
    ).one_or_none()
    if row is None:
        raise errors.RuleNotFound(f"exchange rule {rule_id} does not exist")
    return row


def rule_books(row: Row[Any]) -> list[str]:
    """The books a rule applies in."""
    return [pool["book"] for pool in row.pools]


def sees_rule(caller: Caller, row: Row[Any]) -> bool:
    """A rule is visible to anyone who reaches one of its books."""
    return any(reaches_book(caller, book) for book in rule_books(row))


async def get_rule(
    session: AsyncSession, caller: Caller, rule_id: uuid.UUID, now: datetime
) -> schemas.RuleRead:
    """A rule within the caller's reach."""
    row = await rule_row(session, rule_id)
    if not sees_rule(caller, row):
        raise errors.RuleNotFound(f"exchange rule {rule_id} does not exist")
    return rule_view(row, now)


async def list_rules(
    session: AsyncSession, caller: Caller, now: datetime, code: str | None, in_force: bool | None
) -> list[schemas.RuleRead]:
    """Rules within the caller's reach, by code then version (newest first)."""
    # Reach is filtered before the limit, so a book's own rules are never crowded out.
    rows = await session.execute(
        text(
            f"{RULE_COLUMNS} WHERE (CAST(:code AS text) IS NULL OR r.code = :code) "
            "AND (CAST(:book AS text) IS NULL OR EXISTS (SELECT 1 FROM exchange_rule_pools q "
            "WHERE q.rule_id = r.id AND q.book_code = :book)) "
            "ORDER BY r.code, r.version DESC LIMIT 1000"
        ),
        {"code": code, "book": caller.book},
    )
    views = [rule_view(row, now) for row in rows if sees_rule(caller, row)]
    if in_force is not None:
        views = [v for v in views if v.in_force == in_force]
    return views


async def _check_terms(session: AsyncSession, data: schemas.RuleCreate, now: datetime) -> None:
    problems: list[dict[str, str]] = []
    if data.valid_from is None and data.valid_until is not None and data.valid_until <= now:
        problems.append(
            {
                "field": "body/valid_until",
                "message": "valid_until must be after valid_from (now)",
                "code": "window",
            }
        )
    for field in ("from_asset", "to_asset"):
        code = getattr(data, field)
        if await session.scalar(text("SELECT 1 FROM assets WHERE code = :c"), {"c": code}) is None:
            problems.append(
                {
                    "field": f"body/{field}",
                    "message": f"unknown asset {code}",
                    "code": "unknown_asset",
                }
            )
    for index, pool in enumerate(data.pools):
        book = await session.scalar(
            text("SELECT book_code FROM organisations WHERE id = :id"),
            {"id": pool.organisation_id},
        )
        if book != pool.book:
            problems.append(
                {
                    "field": f"body/pools/{index}/organisation_id",
                    "message": f"not an organisation of book {pool.book}",
                    "code": "unknown_organisation",
                }
            )
            continue
        for asset in (data.from_asset, data.to_asset):
            if await find_pool(session, pool.organisation_id, asset) is None:
                problems.append(
                    {
                        "field": f"body/pools/{index}/organisation_id",
                        "message": f"the organisation has no {asset} pool",
                        "code": "no_pool",
                    }
                )
    books = [pool.book for pool in data.pools]
    for index, organisation_id in enumerate(data.organisations or []):
        book = await session.scalar(
            text("SELECT book_code FROM organisations WHERE id = :id"), {"id": organisation_id}
        )
        if book not in books:
            problems.append(
                {
                    "field": f"body/organisations/{index}",
                    "message": "not an organisation of the rule's books",
                    "code": "unknown_organisation",
                }
            )
    if problems:
        raise errors.InvalidRule(
            "the rule names what does not exist: " + "; ".join(p["message"] for p in problems),
            errors=problems,
        )


def _document(
    rule_id: uuid.UUID,
    version: int,
    data: schemas.RuleCreate,
    valid_from: datetime,
    zone: str,
    replaces: str | None,
) -> JsonObject:
    return {
        "id": str(rule_id),
        "code": data.code,
        "version": version,
        "from_asset": data.from_asset,
        "to_asset": data.to_asset,
        "ratio": {"num": data.ratio.num, "den": data.ratio.den},
        "min_amount": data.min_amount,
        "max_amount": data.max_amount,
        "caps": data.caps.model_dump(),
        "valid_from": rfc3339_micro(valid_from),
        "valid_until": None if data.valid_until is None else rfc3339_micro(data.valid_until),
        "pools": sorted(
            ({"book": p.book, "organisation_id": str(p.organisation_id)} for p in data.pools),
            key=lambda p: p["book"],
        ),
        "organisations": None
        if data.organisations is None
        else sorted(str(o) for o in data.organisations),
        "conditions": data.conditions.model_dump(),
        "time_zone": zone,
        "replaces": replaces,
    }


async def publish_rule(
    session: AsyncSession,
    caller: Caller,
    data: schemas.RuleCreate,
    now: datetime,
    zone: str,
) -> tuple[schemas.RuleRead, list[Notice]]:
    """Publish a rule (a new version when the code exists, retiring the one in force); returns
    it and the notices to append."""
    for pool in data.pools:
        require_book(caller, pool.book, f"book {pool.book!r}")
    await _check_terms(session, data, now)
    # One publisher of a code at a time: versions are gapless and only one is in force.
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('exchange_rule:' || :code))"),
        {"code": data.code},
    )
    previous = (
        await session.execute(
            text(f"{RULE_COLUMNS} WHERE r.code = :code ORDER BY r.version DESC LIMIT 1"),
            {"code": data.code},
        )
    ).one_or_none()
    if previous is not None:
        require_books(
            caller,
            rule_books(previous),
            "the rule's previous version applies in books beyond the caller's reach",
        )
    version = 1 if previous is None else previous.version + 1
    rule_id = uuid.uuid4()
    replaces = None if previous is None else str(previous.id)
    valid_from = data.valid_from or now
    document = _document(rule_id, version, data, valid_from, zone, replaces)
    body = canonical_bytes(document)
    rule_hash = hashlib.sha256(body).hexdigest()
    caps, conditions = data.caps, data.conditions
    await session.execute(
        text(
            "INSERT INTO exchange_rules (id, code, version, from_asset, to_asset, ratio_num, "
            "ratio_den, min_amount, max_amount, cap_day, cap_month, cap_year, valid_from, "
            "valid_until, organisations, min_age, min_age_hardship, min_certified_minutes, step, "
            "document, rule_hash, published_by) VALUES (:id, :code, :version, :from_asset, "
            ":to_asset, :num, :den, :min_amount, :max_amount, :cap_day, :cap_month, :cap_year, "
            ":valid_from, :valid_until, CAST(:organisations AS uuid[]), :min_age, :min_age_h, "
            ":min_minutes, :step, :document, :hash, CAST(:by AS uuid))"
        ),
        {
            "id": rule_id,
            "code": data.code,
            "version": version,
            "from_asset": data.from_asset,
            "to_asset": data.to_asset,
            "num": data.ratio.num,
            "den": data.ratio.den,
            "min_amount": data.min_amount,
            "max_amount": data.max_amount,
            "cap_day": caps.day,
            "cap_month": caps.month,
            "cap_year": caps.year,
            "valid_from": valid_from,
            "valid_until": data.valid_until,
            "organisations": None if data.organisations is None else data.organisations,
            "min_age": conditions.min_age,
            "min_age_h": conditions.min_age_hardship,
            "min_minutes": conditions.min_certified_minutes,
            "step": conditions.step,
            "document": body,
            "hash": rule_hash,
            "by": caller.credential.id,
        },
    )
    for pool in data.pools:
        await session.execute(
            text(
                "INSERT INTO exchange_rule_pools (rule_id, book_code, organisation_id) "
                "VALUES (:rule, :book, :org)"
            ),
            {"rule": rule_id, "book": pool.book, "org": pool.organisation_id},
        )
    actor = caller.actor()
    notices = [
        Notice(pool["book"], "rule_published", {"rule": document, "rule_hash": rule_hash}, actor)
        for pool in document["pools"]
    ]
    if previous is not None and previous.retired_at is None:
        notices += await _retire(session, caller, previous, f"replaced by version {version}")
    return rule_view(await rule_row(session, rule_id), now), notices


async def _retire(
    session: AsyncSession, caller: Caller, row: Row[Any], reason: str
) -> list[Notice]:
    await session.execute(
        text(
            "INSERT INTO exchange_rule_retirements (rule_id, reason, retired_by) "
            "VALUES (:rule, :reason, CAST(:by AS uuid))"
        ),
        {"rule": row.id, "reason": reason, "by": caller.credential.id},
    )
    facts = {
        "rule_id": str(row.id),
        "code": row.code,
        "version": row.version,
        "rule_hash": row.rule_hash,
        "reason": reason,
    }
    return [Notice(book, "rule_retired", facts, caller.actor()) for book in rule_books(row)]


async def retire_rule(
    session: AsyncSession, caller: Caller, rule_id: uuid.UUID, reason: str, now: datetime
) -> tuple[schemas.RuleRead, list[Notice]]:
    """Retire a rule: no quote or exchange uses it afterwards; retiring twice is refused."""
    row = await rule_row(session, rule_id)
    if not sees_rule(caller, row):
        raise errors.RuleNotFound(f"exchange rule {rule_id} does not exist")
    require_books(caller, rule_books(row), "the rule applies in books beyond the caller's reach")
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('exchange_rule:' || :code))"),
        {"code": row.code},
    )
    row = await rule_row(session, rule_id)
    if row.retired_at is not None:
        raise errors.RuleRetired(f"exchange rule {rule_id} is already retired")
    notices = await _retire(session, caller, row, reason)
    return rule_view(await rule_row(session, rule_id), now), notices
