"""Mutual recognition between books (通存通兑): agreements, transfers and their reconciliation.

An agreement says that `to_book` accepts `from_asset` of `from_book` as `to_asset` at
num/den; it is directional (the reverse direction is another agreement) and published as a
`notice.recognition_agreed` entry in both books.

A transfer moves a member's units out of `from_book` into `to_book` as two linked entries,
each naming the other in `meta.counterpart`, appended inside the request's own database
transaction (`ledger.InTransaction.submit_linked`) together with the transfer's row: both
entries and the row commit together or nothing does:

- `recognition.out` in from_book: the member's account → from_book's clearing account for
  to_book (`amount`, from_asset);
- `recognition.in` in to_book: to_book's clearing account for from_book → the member's account
  there (`floor(amount × num / den)`, to_asset; what a storage cap turns away goes to to_book's
  public time pool as a third leg).

So each book's clearing account for the other mirrors what crossed: with a 1:1 ratio and one
asset, A's clearing for B plus B's clearing for A is always zero. `reconcile` checks that from
the journal itself.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.exchange import recognition_errors as errors
from app.exchange import recognition_schemas as schemas
from app.exchange.accounts import (
    CLEARING_PREFIX,
    book_account,
    clearing_purpose,
    credit_limits,
    find_member_account,
    member_account,
)
from app.exchange.errors import AssetNotFound, MemberNotEligible
from app.http.actions import Notice
from app.http.caller import SYSTEM_CREDENTIAL, Caller
from app.identity import members
from app.identity.access import acting_member
from app.identity.authorization import reaches_book, require_book, sees_member
from app.identity.errors import MemberNotFound
from app.kit.faults import fault_point
from app.kit.problems import (
    PROBLEM_BASE,
    Forbidden,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    ServiceUnavailable,
    TimebankError,
)
from app.ledger import errors as ledger_errors
from app.ledger.outcomes import IdempotencyRef
from app.ledger.posting import Draft
from app.ledger.sequencer import Sequencer
from app.ledger.service import InTransaction

KIND_OUT = "recognition.out"
KIND_IN = "recognition.in"
NOTICE_AGREED = "recognition_agreed"
NOTICE_ENDED = "recognition_ended"


def convert(amount: int, num: int, den: int) -> int:
    """What `amount` is worth at num/den, rounded down: rounding never creates value."""
    return amount * num // den


# --- agreements ---------------------------------------------------------------------------


def agreement_view(row: Any) -> dict[str, Any]:
    """An agreement as the API shows it."""
    return {
        "id": row.id,
        "from_book": row.from_book,
        "from_asset": row.from_asset,
        "to_book": row.to_book,
        "to_asset": row.to_asset,
        "ratio": {"num": row.ratio_num, "den": row.ratio_den},
        "status": row.status,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "ended_at": row.ended_at,
    }


def sees_agreement(caller: Caller, row: Any) -> bool:
    """An agreement is visible to whoever reaches either of its books."""
    return reaches_book(caller, row.from_book) or reaches_book(caller, row.to_book)


async def agreement_row(
    session: AsyncSession, agreement_id: uuid.UUID, lock: str = ""
) -> Any | None:
    """An agreement's row (optionally locked `FOR SHARE` / `FOR UPDATE`), None if unknown."""
    return (
        await session.execute(
            text(f"SELECT * FROM recognition_agreements WHERE id = :id {lock}"),
            {"id": agreement_id},
        )
    ).one_or_none()


async def visible_agreement(
    session: AsyncSession, caller: Caller, agreement_id: uuid.UUID, lock: str = ""
) -> Any:
    """An agreement within the caller's reach; 404 (as if unknown) otherwise."""
    row = await agreement_row(session, agreement_id, lock)
    if row is None or not sees_agreement(caller, row):
        raise errors.AgreementNotFound(f"recognition agreement {agreement_id} does not exist")
    return row


def _notices(row: Any, what: str, facts: dict[str, Any], caller: Caller) -> list[Notice]:
    return [Notice(book, what, facts, caller.actor()) for book in (row.from_book, row.to_book)]


async def create_agreement(
    session: AsyncSession, caller: Caller, data: schemas.AgreementCreate
) -> tuple[dict[str, Any], list[Notice]]:
    """Record an agreement (an admin reaching both books); returns it and its two notices."""
    for book in (data.from_book, data.to_book):
        require_book(caller, book, f"book {book!r}")
    books = set(
        (
            await session.execute(
                text("SELECT code FROM books WHERE code IN (:a, :b)"),
                {"a": data.from_book, "b": data.to_book},
            )
        ).scalars()
    )
    for book in (data.from_book, data.to_book):
        if book not in books:
            raise ledger_errors.BookNotFound(f"book {book!r} does not exist")
    assets = set(
        (
            await session.execute(
                text("SELECT code FROM assets WHERE code IN (:a, :b)"),
                {"a": data.from_asset, "b": data.to_asset},
            )
        ).scalars()
    )
    for asset in (data.from_asset, data.to_asset):
        if asset not in assets:
            raise AssetNotFound(f"asset {asset!r} does not exist", asset=asset)
    agreement_id = uuid.uuid4()
    try:
        async with session.begin_nested():
            await session.execute(
                text(
                    "INSERT INTO recognition_agreements (id, from_book, from_asset, to_book, "
                    "to_asset, ratio_num, ratio_den, created_by) VALUES (:id, :fb, :fa, :tb, "
                    ":ta, :num, :den, CAST(:by AS uuid))"
                ),
                {
                    "id": agreement_id,
                    "fb": data.from_book,
                    "fa": data.from_asset,
                    "tb": data.to_book,
                    "ta": data.to_asset,
                    "num": data.ratio_num,
                    "den": data.ratio_den,
                    "by": caller.credential.id,
                },
            )
    except IntegrityError:
        # The partial unique index: another active agreement (perhaps committed concurrently).
        raise errors.AgreementExists(
            f"book {data.to_book!r} already accepts {data.from_asset} of book "
            f"{data.from_book!r} as {data.to_asset} under an active agreement"
        ) from None
    row = await agreement_row(session, agreement_id)
    facts = {
        "agreement_id": str(agreement_id),
        "from_book": data.from_book,
        "from_asset": data.from_asset,
        "to_book": data.to_book,
        "to_asset": data.to_asset,
        "ratio": {"num": data.ratio_num, "den": data.ratio_den},
    }
    return agreement_view(row), _notices(row, NOTICE_AGREED, facts, caller)


async def end_agreement(
    session: AsyncSession, caller: Caller, agreement_id: uuid.UUID
) -> tuple[dict[str, Any], list[Notice]]:
    """End an active agreement (an admin reaching either book). The row lock waits for the
    transfers under way, so no transfer is recorded under an agreement after it ended."""
    row = await visible_agreement(session, caller, agreement_id, "FOR UPDATE")
    if row.status != "active":
        raise errors.AgreementEnded(f"recognition agreement {agreement_id} has already ended")
    await session.execute(
        text("UPDATE recognition_agreements SET status = 'ended', ended_at = now() WHERE id = :id"),
        {"id": agreement_id},
    )
    row = await agreement_row(session, agreement_id)
    facts = {"agreement_id": str(agreement_id)}
    return agreement_view(row), _notices(row, NOTICE_ENDED, facts, caller)


async def list_agreements(
    session: AsyncSession,
    caller: Caller,
    book: str | None,
    status: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Agreements touching a book the caller reaches (or `book`), oldest first."""
    if book is not None:
        require_book(caller, book, f"book {book!r}")
    scope = book or caller.book
    rows = await session.execute(
        text(
            "SELECT * FROM recognition_agreements a "
            "WHERE (CAST(:book AS text) IS NULL OR :book IN (a.from_book, a.to_book)) "
            "AND (CAST(:status AS text) IS NULL OR a.status = :status) "
            "AND (CAST(:after AS uuid) IS NULL OR (a.created_at, a.id) > "
            "(SELECT created_at, id FROM recognition_agreements WHERE id = CAST(:after AS uuid))) "
            "ORDER BY a.created_at, a.id LIMIT :limit"
        ),
        {"book": scope, "status": status, "after": after, "limit": limit + 1},
    )
    return [agreement_view(row) for row in rows]


# --- transfers ----------------------------------------------------------------------------

TRANSFER_SQL = """
SELECT t.*, a.from_book, a.from_asset, a.to_book, a.to_asset, a.ratio_num, a.ratio_den,
       f.seq AS from_seq, f.entry_hash AS from_hash, i.seq AS to_seq, i.entry_hash AS to_hash,
       convert_from(i.body, 'UTF8')::jsonb -> 'meta' -> 'overflow' AS overflow
  FROM recognition_transfers t
  JOIN recognition_agreements a ON a.id = t.agreement_id
  JOIN journal_entries f ON f.tx_id = t.from_tx
  JOIN journal_entries i ON i.tx_id = t.to_tx
"""


def transfer_view(row: Any) -> dict[str, Any]:
    """A transfer as the API shows it, with where its two entries sit in their chains."""
    overflow = row.overflow
    if isinstance(overflow, str):
        overflow = json.loads(overflow)
    diverted = sum(int(item["amount"]) for item in overflow or [])
    return {
        "id": row.id,
        "agreement_id": row.agreement_id,
        "member_id": row.member_id,
        "from_book": row.from_book,
        "from_asset": row.from_asset,
        "from_amount": row.from_amount,
        "to_book": row.to_book,
        "to_asset": row.to_asset,
        "to_amount": row.to_amount,
        "ratio": {"num": row.ratio_num, "den": row.ratio_den},
        "credited": row.to_amount - diverted,
        "overflow": diverted,
        "from_entry": {
            "book": row.from_book,
            "seq": row.from_seq,
            "tx_id": row.from_tx,
            "entry_hash": row.from_hash,
        },
        "to_entry": {
            "book": row.to_book,
            "seq": row.to_seq,
            "tx_id": row.to_tx,
            "entry_hash": row.to_hash,
        },
        "created_by": row.created_by,
        "created_at": row.created_at,
    }


async def transfer_row(session: AsyncSession, transfer_id: uuid.UUID) -> Any | None:
    return (
        await session.execute(text(f"{TRANSFER_SQL} WHERE t.id = :id"), {"id": transfer_id})
    ).one_or_none()


async def sees_transfer(session: AsyncSession, caller: Caller, row: Any) -> bool:
    """Admins and auditors reaching either book; a mini-program acting for the member (and
    reaching either book); an organisation that has the member, in the member's book."""
    if caller.role in ("admin", "auditor"):
        return reaches_book(caller, row.from_book) or reaches_book(caller, row.to_book)
    if caller.role == "miniprogram":
        return str(row.member_id) == caller.member_id and (
            reaches_book(caller, row.from_book) or reaches_book(caller, row.to_book)
        )
    if caller.role == "org":
        return await sees_member(
            session, caller, await members.get_member_row(session, row.member_id)
        )
    return False


async def get_transfer(
    session: AsyncSession, caller: Caller, transfer_id: uuid.UUID
) -> dict[str, Any]:
    """A transfer within the caller's reach; 404 otherwise."""
    row = await transfer_row(session, transfer_id)
    if row is None or not await sees_transfer(session, caller, row):
        raise errors.TransferNotFound(f"recognition transfer {transfer_id} does not exist")
    return transfer_view(row)


async def member_transfers(
    session: AsyncSession, member_id: uuid.UUID, after: uuid.UUID | None, limit: int
) -> list[dict[str, Any]]:
    """A member's transfers, oldest first (keyset on created_at, id)."""
    rows = await session.execute(
        text(
            f"{TRANSFER_SQL} WHERE t.member_id = :member "
            "AND (CAST(:after AS uuid) IS NULL OR (t.created_at, t.id) > "
            "(SELECT created_at, id FROM recognition_transfers WHERE id = CAST(:after AS uuid))) "
            "ORDER BY t.created_at, t.id LIMIT :limit"
        ),
        {"member": member_id, "after": after, "limit": limit + 1},
    )
    return [transfer_view(row) for row in rows]


@dataclass(slots=True)
class PreparedTransfer:
    """What a transfer needs that is read or opened before its transaction: the accounts are
    opened in committed transactions of their own, so the transfer's transaction, which holds
    both books' heads once it appends, needs no second connection."""

    agreement_id: uuid.UUID
    member_id: uuid.UUID
    amount: int
    to_amount: int
    from_book: str
    to_book: str
    active: bool
    from_account: str = ""
    to_account: str = ""
    out_clearing: str = ""
    in_clearing: str = ""
    storage_caps: dict[str, int] = field(default_factory=dict)
    overflow_to: str | None = None


async def prepare_transfer(
    sessions: async_sessionmaker[AsyncSession], caller: Caller, data: schemas.TransferCreate
) -> PreparedTransfer:
    """Check reach and the request, and open the accounts the transfer will use."""
    async with sessions() as session:
        row = await visible_agreement(session, caller, data.agreement_id)
        if caller.role == "admin" and not reaches_book(caller, row.from_book):
            raise Forbidden(
                f"only an admin reaching book {row.from_book!r} may move hours out of it"
            )
        member_id = acting_member(caller, data.member_id)
        member = await members.get_member_row(session, member_id)
        from_account = await find_member_account(session, row.from_book, member_id, row.from_asset)
        # An admin reaches the members whose hours are in its book (or who registered there).
        if caller.role == "admin" and from_account is None and member["book"] != row.from_book:
            raise MemberNotFound(f"member {member_id} does not exist")
    if from_account is None:
        raise errors.NoAccountInBook(
            f"member {member_id} has no {row.from_asset} account in book {row.from_book!r}"
        )
    to_amount = convert(data.amount, row.ratio_num, row.ratio_den)
    if to_amount < 1:
        raise errors.AmountTooSmall(
            f"{data.amount} {row.from_asset} at {row.ratio_num}/{row.ratio_den} is less than one "
            f"{row.to_asset}",
            minimum=-(-row.ratio_den // row.ratio_num),
        )
    prepared = PreparedTransfer(
        row.id,
        member_id,
        data.amount,
        to_amount,
        row.from_book,
        row.to_book,
        # Nothing to open for a transfer that will be refused (or answered from a replay).
        row.status == "active" and member["status"] == "active",
        from_account,
    )
    if prepared.active:
        prepared.to_account = await member_account(sessions, row.to_book, member_id, row.to_asset)
        prepared.out_clearing = await book_account(
            sessions, row.from_book, clearing_purpose(row.to_book), row.from_asset
        )
        prepared.in_clearing = await book_account(
            sessions, row.to_book, clearing_purpose(row.from_book), row.to_asset
        )
        limits = await credit_limits(sessions, row.to_book, row.to_asset, [prepared.to_account])
        prepared.storage_caps, prepared.overflow_to = limits.storage_caps, limits.overflow_to
    return prepared


# Refusals of the ledger answered with the ledger's own problem type.
_LEDGER_PROBLEMS: dict[str, type[TimebankError]] = {
    cls.slug: cls
    for cls in (
        ledger_errors.InsufficientFunds,
        ledger_errors.AccountNotOpen,
        IdempotencyKeyReused,
        IdempotencyInFlight,
    )
}
_STANDARD = ("type", "title", "status", "detail", "instance")


def ledger_refusal(status_code: int, problem: dict[str, Any]) -> TimebankError:
    """The error that answers a refused linked posting (nothing was written in either book)."""
    slug = str(problem.get("type", "")).removeprefix(PROBLEM_BASE)
    detail = str(problem.get("detail") or problem.get("title") or "refused")
    extra = {k: v for k, v in problem.items() if k not in _STANDARD}
    known = _LEDGER_PROBLEMS.get(slug)
    if known is not None:
        return known(detail, **extra)
    if status_code >= 500:
        return ServiceUnavailable(
            f"the transfer could not be stored ({detail}); retry with the same Idempotency-Key"
        )
    return errors.TransferRefused(
        f"the ledger refused the transfer: {detail}", ledger_problem=problem
    )


def transfer_ref(transfer_id: uuid.UUID, request_hash: str) -> IdempotencyRef:
    """The idempotency key of a transfer's one linked posting."""
    return IdempotencyRef(SYSTEM_CREDENTIAL, f"recognition_transfer:{transfer_id}", request_hash)


async def execute_transfer(
    session: AsyncSession,
    sequencer: Sequencer,
    caller: Caller,
    prepared: PreparedTransfer,
    transfer_id: uuid.UUID,
    request_hash: str,
) -> dict[str, Any]:
    """Post the transfer's two linked entries once (idempotent on `transfer_id`) and record it,
    all in `session`'s transaction.

    The agreement and the member stay locked (shared) until this transaction ends: ending the
    agreement or erasing the member waits for the transfers under way.
    """
    done = await transfer_row(session, transfer_id)
    if done is not None:  # recorded by an earlier attempt with the same key
        return transfer_view(done)
    row = await agreement_row(session, prepared.agreement_id, "FOR SHARE")
    if row is None or row.status != "active":
        raise errors.AgreementEnded(f"recognition agreement {prepared.agreement_id} has ended")
    status = await session.scalar(
        text("SELECT status FROM members WHERE id = :id FOR SHARE"), {"id": prepared.member_id}
    )
    if status != "active":
        raise MemberNotEligible(f"member {prepared.member_id} is {status}")
    if not prepared.active:  # the agreement or the member changed since: retry afresh
        raise ServiceUnavailable("the transfer's accounts are not open; retry")
    meta = {"agreement": str(prepared.agreement_id), "transfer": str(transfer_id)}
    out = Draft(
        prepared.from_book,
        "post",
        KIND_OUT,
        [(prepared.from_account, -prepared.amount), (prepared.out_clearing, prepared.amount)],
        "",
        dict(meta),
        actor=caller.actor(),
    )
    into = Draft(
        prepared.to_book,
        "post",
        KIND_IN,
        [(prepared.in_clearing, -prepared.to_amount), (prepared.to_account, prepared.to_amount)],
        "",
        dict(meta),
        actor=caller.actor(),
        storage_caps=prepared.storage_caps,
        overflow_to=prepared.overflow_to,
    )
    # In this transaction (agreement and member locked above): both entries and the transfer's
    # row commit together or not at all.
    outcomes = await InTransaction(session, sequencer).submit_linked(
        [out, into], transfer_ref(transfer_id, request_hash)
    )
    for outcome in outcomes:
        if outcome.status_code >= 400:
            raise ledger_refusal(outcome.status_code, outcome.body)
    fault_point("recognition.transfer.posted")
    await session.execute(
        text(
            "INSERT INTO recognition_transfers (id, agreement_id, member_id, from_amount, "
            "to_amount, from_tx, to_tx, created_by) VALUES (:id, :agreement, :member, :amount, "
            ":to_amount, CAST(:from_tx AS uuid), CAST(:to_tx AS uuid), CAST(:by AS uuid))"
        ),
        {
            "id": transfer_id,
            "agreement": prepared.agreement_id,
            "member": prepared.member_id,
            "amount": prepared.amount,
            "to_amount": prepared.to_amount,
            "from_tx": outcomes[0].body["id"],
            "to_tx": outcomes[1].body["id"],
            "by": caller.credential.id,
        },
    )
    recorded = await transfer_row(session, transfer_id)
    return transfer_view(recorded)


# --- reconciliation -----------------------------------------------------------------------

ENTRIES_SQL = f"""
SELECT e.book_code AS book, e.seq, e.tx_id::text AS tx_id, e.kind,
       (convert_from(e.body, 'UTF8')::jsonb -> 'meta')::text AS meta,
       (SELECT coalesce(json_agg(json_build_object(
                   'account', l.account_id::text, 'asset', l.asset, 'amount', l.amount,
                   'other', substr(a.meta ->> 'purpose', {len(CLEARING_PREFIX) + 1}))
                   ORDER BY l.leg_index), '[]')::text
          FROM journal_legs l JOIN accounts a ON a.id = l.account_id
         WHERE l.book_code = e.book_code AND l.seq = e.seq
           AND a.owner = 'book:' || e.book_code
           AND a.meta ->> 'purpose' LIKE '{CLEARING_PREFIX}%') AS clearing
  FROM journal_entries e
 WHERE e.kind IN ('{KIND_OUT}', '{KIND_IN}')
   AND (CAST(:books AS text[]) IS NULL OR e.book_code = ANY(CAST(:books AS text[])))
"""

CLEARING_SQL = f"""
SELECT id::text AS id, book_code AS book, asset, posted,
       substr(meta ->> 'purpose', {len(CLEARING_PREFIX) + 1}) AS other
  FROM accounts
 WHERE owner LIKE 'book:%' AND owner = 'book:' || book_code
   AND meta ->> 'purpose' LIKE '{CLEARING_PREFIX}%'
"""

RECORDED_SQL = """
SELECT agreement_id::text AS agreement, count(*) AS transfers,
       coalesce(sum(from_amount), 0) AS from_amount, coalesce(sum(to_amount), 0) AS to_amount
  FROM recognition_transfers GROUP BY agreement_id
"""


@dataclass(slots=True)
class _Entry:
    book: str
    seq: int
    tx_id: str
    kind: str
    meta: dict[str, Any]
    clearing: list[dict[str, Any]]
    other: str | None = None  # the other book, when it can be told
    problems: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Totals:
    transfers: int = 0
    from_amount: int = 0
    to_amount: int = 0

    def add(self, other: _Totals) -> None:
        self.transfers += other.transfers
        self.from_amount += other.from_amount
        self.to_amount += other.to_amount

    def json(self) -> dict[str, int]:
        return {
            "transfers": self.transfers,
            "from_amount": self.from_amount,
            "to_amount": self.to_amount,
        }


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def _check_entry(
    entry: _Entry, entries: dict[tuple[str, int], _Entry], agreements: dict[str, Any]
) -> None:
    """Record in `entry.problems` why it is not one half of a well-formed linked pair."""
    agreement = agreements.get(str(entry.meta.get("agreement")))
    counterpart = entry.meta.get("counterpart")
    outgoing = entry.kind == KIND_OUT
    if agreement is None:
        entry.problems.append("names no recognition agreement")
        if isinstance(counterpart, dict) and isinstance(counterpart.get("book"), str):
            entry.other = counterpart["book"]
        elif entry.clearing:
            entry.other = entry.clearing[0]["other"]
        return
    own, entry.other, asset = (
        (agreement.from_book, agreement.to_book, agreement.from_asset)
        if outgoing
        else (agreement.to_book, agreement.from_book, agreement.to_asset)
    )
    if entry.book != own:
        entry.problems.append(f"its agreement does not post {entry.kind} in this book")
        entry.other = None
        return
    legs = [leg for leg in entry.clearing if leg["other"] == entry.other]
    if (
        len(entry.clearing) != 1
        or len(legs) != 1
        or legs[0]["asset"] != asset
        or (legs[0]["amount"] > 0) != outgoing
    ):
        entry.problems.append("its clearing leg is missing, doubled, of another asset or reversed")
    if not isinstance(counterpart, dict):
        entry.problems.append("names no counterpart")
        return
    seq = counterpart.get("seq")
    target = entries.get((str(counterpart.get("book")), seq)) if isinstance(seq, int) else None
    if (
        target is None
        or target.tx_id != counterpart.get("tx_id")
        or target.book != entry.other
        or target.kind != (KIND_IN if outgoing else KIND_OUT)
    ):
        entry.problems.append("its counterpart is not a recognition entry of the other book")
        return
    back = target.meta.get("counterpart")
    if back != {"book": entry.book, "seq": entry.seq, "tx_id": entry.tx_id}:
        entry.problems.append("its counterpart does not name it back")
    if target.meta.get("agreement") != entry.meta.get("agreement") or target.meta.get(
        "transfer"
    ) != entry.meta.get("transfer"):
        entry.problems.append("its counterpart names another agreement or transfer")
    if outgoing and len(entry.clearing) == 1 and len(target.clearing) == 1:
        sent, received = entry.clearing[0]["amount"], -target.clearing[0]["amount"]
        if received != convert(sent, agreement.ratio_num, agreement.ratio_den):
            entry.problems.append("its counterpart's amount is not the agreement's ratio of it")


def _clearing_json(account: dict[str, Any] | None, book: str, asset: str | None) -> dict[str, Any]:
    if account is None:
        return {"book": book, "asset": asset, "account_id": None, "posted": 0, "implied": 0}
    return {
        "book": book,
        "asset": asset,
        "account_id": account["id"],
        "posted": account["posted"],
        "implied": account["implied"],
    }


async def _snapshot(session: AsyncSession) -> None:
    """Read everything in one snapshot, when this is the transaction's first statement."""
    if not session.in_transaction():
        await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))


async def reconcile(
    session: AsyncSession, caller: Caller, book: str | None = None
) -> dict[str, Any]:
    """Per pair of books (one of which the caller reaches, or `book`) and asset pair: both
    clearing balances, the transfers each way (journal and table), and whether they mirror."""
    if book is not None:
        require_book(caller, book, f"book {book!r}")
    scope = book or caller.book

    def in_scope(pair: Iterable[str]) -> bool:
        return scope is None or scope in pair

    await _snapshot(session)
    agreements = {
        str(row.id): row
        for row in await session.execute(text("SELECT * FROM recognition_agreements"))
    }
    accounts = {
        (row.book, row.other, row.asset): {**row._asdict(), "implied": 0}
        for row in await session.execute(text(CLEARING_SQL))
    }
    pairs: set[tuple[str, str]] = {_pair(a.from_book, a.to_book) for a in agreements.values()}
    pairs |= {_pair(b, other) for b, other, _ in accounts if b != other}
    pairs = {p for p in pairs if in_scope(p)}
    books = sorted({b for p in pairs for b in p} | ({scope} if scope else set()))
    rows = await session.execute(text(ENTRIES_SQL), {"books": None if scope is None else books})
    entries = {
        (r.book, r.seq): _Entry(
            r.book, r.seq, r.tx_id, r.kind, json.loads(r.meta) or {}, json.loads(r.clearing)
        )
        for r in rows
    }
    journal: dict[str, dict[str, _Totals]] = defaultdict(lambda: defaultdict(_Totals))
    unplaced: list[dict[str, Any]] = []
    unmatched: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for entry in entries.values():
        _check_entry(entry, entries, agreements)
        for leg in entry.clearing:
            account = accounts.get((entry.book, leg["other"], leg["asset"]))
            if account is not None:
                account["implied"] += leg["amount"]
        agreement = str(entry.meta.get("agreement"))
        if agreement in agreements and entry.other is not None:
            amount = sum(leg["amount"] for leg in entry.clearing if leg["other"] == entry.other)
            totals = journal[agreement]["out" if entry.kind == KIND_OUT else "in"]
            totals.transfers += 1
            if entry.kind == KIND_OUT:
                totals.from_amount += amount
            else:
                totals.to_amount -= amount
        for problem in entry.problems:
            item = {
                "book": entry.book,
                "seq": entry.seq,
                "tx_id": entry.tx_id,
                "kind": entry.kind,
                "reason": problem,
            }
            if entry.other is None or entry.other == entry.book:
                unplaced.append(item)
            else:
                pair = _pair(entry.book, entry.other)
                if in_scope(pair):
                    pairs.add(pair)
                unmatched[pair].append(item)
    recorded = {
        row.agreement: _Totals(row.transfers, row.from_amount, row.to_amount)
        for row in await session.execute(text(RECORDED_SQL))
    }
    heads = {
        row.book_code: {"seq": row.seq, "entry_hash": row.entry_hash}
        for row in await session.execute(
            text(
                "SELECT book_code, seq, entry_hash FROM book_heads "
                "WHERE book_code = ANY(CAST(:books AS text[])) ORDER BY book_code"
            ),
            {"books": sorted({b for p in pairs for b in p} | set(books))},
        )
    }
    report_pairs = [
        _pair_report(a, b, agreements, accounts, journal, recorded, unmatched[(a, b)])
        for a, b in sorted(pairs)
    ]
    return {
        "heads": heads,
        "pairs": report_pairs,
        "unplaced": unplaced,
        "mirrored": not unplaced and all(p["mirrored"] for p in report_pairs),
        "recorded_matches": all(p["recorded_matches"] for p in report_pairs),
    }


def _pair_report(
    a: str,
    b: str,
    agreements: dict[str, Any],
    accounts: dict[tuple[str, str, str], dict[str, Any]],
    journal: dict[str, dict[str, _Totals]],
    recorded: dict[str, _Totals],
    unmatched: list[dict[str, Any]],
) -> dict[str, Any]:
    """One pair of books, A < B: a row per asset pair (A's asset, B's asset)."""
    # Which asset pairs: every agreement between A and B, and every clearing account of one
    # for the other that no agreement explains.
    asset_pairs: set[tuple[str | None, str | None]] = set()
    for ag in agreements.values():
        if (ag.from_book, ag.to_book) == (a, b):
            asset_pairs.add((ag.from_asset, ag.to_asset))
        elif (ag.from_book, ag.to_book) == (b, a):
            asset_pairs.add((ag.to_asset, ag.from_asset))
    a_assets = {x for x, _ in asset_pairs}
    b_assets = {y for _, y in asset_pairs}
    for book, other, asset in accounts:
        if (book, other) == (a, b) and asset not in a_assets:
            asset_pairs.add((asset, None))
        elif (book, other) == (b, a) and asset not in b_assets:
            asset_pairs.add((None, asset))
    # How many rows each clearing account appears in: the journal formula below is exact only
    # for an account that serves one asset pair.
    uses: dict[tuple[str, str | None], int] = defaultdict(int)
    for x, y in asset_pairs:
        uses[(a, x)] += 1
        uses[(b, y)] += 1

    rows = []
    for x, y in sorted(asset_pairs, key=lambda p: (p[0] or "", p[1] or "")):
        ab = _flow(a, x, b, y, agreements, journal, recorded)
        ba = _flow(b, y, a, x, agreements, journal, recorded)
        a_clearing = _clearing_json(accounts.get((a, b, x)) if x else None, a, x)
        b_clearing = _clearing_json(accounts.get((b, a, y)) if y else None, b, y)
        # Each clearing balance is what the recognition entries put in it (nothing else
        # touched it), every out entry has its in entry, and, for an account that serves this
        # asset pair alone: A's clearing for B = sent A→B − received B→A (in A's units), B's
        # clearing for A = −received A→B + sent B→A (in B's units).
        mirrored = (
            all(c["posted"] == c["implied"] for c in (a_clearing, b_clearing))
            and ab.sent.transfers == ab.received_entries
            and ba.sent.transfers == ba.received_entries
            and (
                uses[(a, x)] > 1 or a_clearing["posted"] == ab.sent.from_amount - ba.sent.to_amount
            )
            and (
                uses[(b, y)] > 1 or b_clearing["posted"] == ba.sent.from_amount - ab.sent.to_amount
            )
        )
        rows.append(
            {
                "a_asset": x,
                "b_asset": y,
                "a_clearing": a_clearing,
                "b_clearing": b_clearing,
                "a_to_b": ab.json(),
                "b_to_a": ba.json(),
                "mirrored": mirrored,
                "recorded_matches": ab.sent == ab.recorded and ba.sent == ba.recorded,
            }
        )
    return {
        "books": [a, b],
        "assets": rows,
        "unmatched": unmatched,
        "mirrored": not unmatched and all(r["mirrored"] for r in rows),
        "recorded_matches": all(r["recorded_matches"] for r in rows),
    }


@dataclass(slots=True)
class _Flow:
    """Transfers one way for one asset pair: from the journal and from the table."""

    from_book: str
    from_asset: str | None
    to_book: str
    to_asset: str | None
    sent: _Totals  # out entries: count, amounts of their clearing legs; to_amount from ins
    received_entries: int  # how many in entries
    recorded: _Totals

    def json(self) -> dict[str, Any]:
        return {
            "from_book": self.from_book,
            "from_asset": self.from_asset,
            "to_book": self.to_book,
            "to_asset": self.to_asset,
            "journal": self.sent.json(),
            "recorded": self.recorded.json(),
        }


def _flow(
    src: str,
    src_asset: str | None,
    dst: str,
    dst_asset: str | None,
    agreements: dict[str, Any],
    journal: dict[str, dict[str, _Totals]],
    recorded: dict[str, _Totals],
) -> _Flow:
    flow = _Flow(src, src_asset, dst, dst_asset, _Totals(), 0, _Totals())
    for key, ag in agreements.items():
        if (ag.from_book, ag.from_asset, ag.to_book, ag.to_asset) != (
            src,
            src_asset,
            dst,
            dst_asset,
        ):
            continue
        out, into = journal[key]["out"], journal[key]["in"]
        flow.sent.add(_Totals(out.transfers, out.from_amount, into.to_amount))
        flow.received_entries += into.transfers
        flow.recorded.add(recorded.get(key, _Totals()))
    return flow
