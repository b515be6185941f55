"""Exactly-once administrative actions, and the journal notices that record them.

An action (creating an organisation or a credential, revoking, rotating) writes its rows, its
`notice.*` entries (appended inside the same transaction, `ledger.InTransaction`) and its
answer under the caller's Idempotency-Key in one database transaction: all of it commits or
none does, whatever fails or is killed in between (docs/consistency.md). A replay finds the
answer; for an answer stored before notices were appended in the action's transaction, it also
makes sure the notices are in the chain (idempotent on the same key).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import Response

from app.http.caller import SYSTEM_CREDENTIAL
from app.http.context import PostingContext
from app.http.responses import replayable_response
from app.kit.faults import fault_point
from app.kit.problems import IdempotencyKeyReused, ServiceUnavailable
from app.ledger.outcomes import IdempotencyRef, refusal
from app.ledger.sequencer import Sequencer
from app.ledger.service import InTransaction, post_notice


@dataclass(slots=True)
class Notice:
    """A `notice.<what>` entry the action appends to a book inside its own transaction."""

    book: str
    what: str
    facts: dict[str, Any]
    actor: dict[str, str]


@dataclass(slots=True)
class ActionResult:
    """An action's answer, and the notice that records it (if any)."""

    status_code: int
    body: dict[str, Any]
    notice: Notice | None = None
    # Never stored: shown once to the caller (a new token).
    secret_fields: dict[str, Any] = field(default_factory=dict)
    # Further notices, for an action that concerns several books (each gets its own entry).
    more_notices: list[Notice] = field(default_factory=list)


@dataclass(slots=True)
class ActionAnswer:
    status_code: int
    body: dict[str, Any]
    replayed: bool


Action = Callable[[AsyncSession], Awaitable[ActionResult]]


# Ids derived from an Idempotency-Key (uuid5 in this namespace): see `action_id`.
_ACTION_IDS = uuid.UUID("8a0b6a52-3d0e-4b7e-9a43-2f6b1c0d9e71")


def action_id(idem: IdempotencyRef, what: str) -> uuid.UUID:
    """The id of the thing an action creates and posts for, derived from its Idempotency-Key.

    The action posts inside its own transaction under a ledger key made from this id, so a
    retry of the same request posts under the same key: for data written before actions posted
    in their own transaction (docs/consistency.md §4), the ledger then replays instead of
    posting twice.
    """
    return uuid.uuid5(_ACTION_IDS, f"{what}:{idem.credential_id}:{idem.key}")


async def _claim(session: AsyncSession, idem: IdempotencyRef) -> dict[str, Any] | None:
    """Claim the key in this transaction; None when new, else the stored row.

    A concurrent request with the same key waits on the first one's row lock and then sees
    its committed answer (or claims the key if the first rolled back).
    """
    claimed = await session.execute(
        text(
            "INSERT INTO action_outcomes (credential_id, key, request_hash, status_code, response)"
            " VALUES (CAST(:c AS uuid), :k, :h, 0, '{}') ON CONFLICT DO NOTHING RETURNING 1"
        ),
        {"c": idem.credential_id, "k": idem.key, "h": idem.request_hash},
    )
    if claimed.first() is not None:
        return None
    row = (
        await session.execute(
            text(
                "SELECT request_hash, status_code, response::text AS response "
                "FROM action_outcomes WHERE credential_id = CAST(:c AS uuid) AND key = :k"
            ),
            {"c": idem.credential_id, "k": idem.key},
        )
    ).one()
    if row.request_hash != idem.request_hash:
        raise IdempotencyKeyReused("this Idempotency-Key was used for another request")
    stored: dict[str, Any] = json.loads(row.response)
    return {"status_code": row.status_code, **stored}


def _notice_json(notice: Notice | None) -> dict[str, Any] | None:
    if notice is None:
        return None
    return {
        "book": notice.book,
        "what": notice.what,
        "facts": notice.facts,
        "actor": notice.actor,
    }


async def run_action(
    sessions: async_sessionmaker[AsyncSession],
    sequencer: Sequencer,
    idem: IdempotencyRef,
    action: Action,
) -> ActionAnswer:
    """Run `action` once per Idempotency-Key, with its notices, in one transaction."""
    async with sessions() as session, session.begin():
        stored = await _claim(session, idem)
        if stored is None:
            result = await action(session)
            await _append_notices(session, sequencer, idem, result)
            fault_point("action.notices.posted")
            document: dict[str, Any] = {
                "body": result.body,
                "notice": _notice_json(result.notice),
                "more_notices": [_notice_json(n) for n in result.more_notices],
            }
            await session.execute(
                text(
                    "UPDATE action_outcomes SET status_code = :s, response = CAST(:r AS jsonb) "
                    "WHERE credential_id = CAST(:c AS uuid) AND key = :k"
                ),
                {
                    "s": result.status_code,
                    "r": json.dumps(document, default=str),
                    "c": idem.credential_id,
                    "k": idem.key,
                },
            )
    if stored is None:
        answer = ActionAnswer(result.status_code, {**result.body, **result.secret_fields}, False)
        stored = document
    else:
        answer = ActionAnswer(stored["status_code"], stored["body"], True)
    if not answer.replayed:
        return answer
    # Answers stored before the notices joined the action's transaction may lack them.
    if stored["notice"] is not None:
        await _append_notice(sequencer, idem, stored["notice"])
    for index, notice in enumerate(stored.get("more_notices", []), start=1):
        await _append_notice(sequencer, idem, notice, f"#{index}")
    return answer


async def _append_notices(
    session: AsyncSession, sequencer: Sequencer, idem: IdempotencyRef, result: ActionResult
) -> None:
    """Append the action's notices inside its transaction, heads in book order (two actions
    on the same books cannot deadlock)."""
    notices = [(result.notice, "")] if result.notice is not None else []
    notices += [(n, f"#{index}") for index, n in enumerate(result.more_notices, start=1)]
    in_transaction = InTransaction(session, sequencer)
    for notice, suffix in sorted(notices, key=lambda pair: pair[0].book):
        ref = _notice_ref(idem, suffix)
        outcome = await post_notice(
            in_transaction, notice.book, notice.what, notice.facts, ref, notice.actor
        )
        if outcome.status_code >= 400:
            raise refusal(outcome)


def _notice_ref(idem: IdempotencyRef, suffix: str) -> IdempotencyRef:
    return IdempotencyRef(SYSTEM_CREDENTIAL, f"notice:{idem.credential_id}:{idem.key}{suffix}", "")


async def _append_notice(
    sequencer: Sequencer, idem: IdempotencyRef, notice: dict[str, Any], suffix: str = ""
) -> None:
    ref = _notice_ref(idem, suffix)
    outcome = await post_notice(
        sequencer, notice["book"], notice["what"], notice["facts"], ref, notice["actor"]
    )
    if outcome.status_code >= 400:
        # The action stands; a retry with the same key appends the notice.
        raise ServiceUnavailable(
            "the action was recorded but its journal notice was not; retry with the same "
            "Idempotency-Key"
        )


async def purge_action_outcomes(session: AsyncSession, retention_s: int) -> int:
    """Forget the answers of actions older than the idempotency retention; returns how many."""
    result = await session.execute(
        text("DELETE FROM action_outcomes WHERE created_at < now() - make_interval(secs => :s)"),
        {"s": retention_s},
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def answer_action(ctx: PostingContext, action: Action) -> Response:
    """Run `action` for the caller's key (or replay its answer) and shape the response."""
    answer = await run_action(ctx.sessions, ctx.sequencer, ctx.idem, action)
    return replayable_response(answer.status_code, answer.body, answer.replayed)
