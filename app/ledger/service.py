"""The ledger's operations: books, accounts, postings, holds and reversals (no HTTP)."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.problems import NotFound
from app.ledger import errors, schemas, store
from app.ledger.answers import StoredPosting, balance_json, posting_from_row
from app.ledger.journal import (
    KIND_HOLD,
    KIND_HOLD_VOID,
    KIND_REVERSAL,
    LINKED_KINDS,
    NOTICE_PREFIX,
    RECORD_BOUND_KINDS,
    BalanceState,
)
from app.ledger.outcomes import IdempotencyRef, Outcome
from app.ledger.posting import Action, Draft
from app.ledger.sequencer import Sequencer

NOT_REVERSIBLE = (KIND_HOLD, KIND_HOLD_VOID, KIND_REVERSAL, *LINKED_KINDS)


class Poster(Protocol):
    """What appends a draft: the sequencer's group commit (`Sequencer.submit`), or
    `InTransaction` inside a feature's own transaction."""

    async def submit(
        self, draft: Draft, idem: IdempotencyRef | None = None, success_status: int = 201
    ) -> Outcome: ...


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under a session, inside the session's open transaction."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    if not driver.is_in_transaction():  # SQLAlchemy's driver adapter begins lazily
        await session.execute(text("SELECT 1"))
    return driver


@dataclass(frozen=True, slots=True)
class OnConnection:
    """Appends inside the open transaction of an asyncpg connection (`Sequencer.append_within`),
    for commands that work on a connection rather than a session."""

    conn: asyncpg.Connection
    sequencer: Sequencer

    async def submit(
        self, draft: Draft, idem: IdempotencyRef | None = None, success_status: int = 201
    ) -> Outcome:
        """Append `draft`; a refusal writes nothing and leaves the transaction usable."""
        return await self.sequencer.append_within(self.conn, draft, idem, success_status)


@dataclass(frozen=True, slots=True)
class InTransaction:
    """Appends inside `session`'s transaction (`Sequencer.append_within`): a feature's rows and
    its entries commit together or not at all. Lock the feature's rows before appending; the
    book's head stays locked until the session commits, so commit soon after."""

    session: AsyncSession
    sequencer: Sequencer

    async def submit(
        self, draft: Draft, idem: IdempotencyRef | None = None, success_status: int = 201
    ) -> Outcome:
        """Append `draft`; a refusal writes nothing and leaves the transaction usable."""
        conn = await driver_connection(self.session)
        return await self.sequencer.append_within(conn, draft, idem, success_status)

    async def submit_linked(self, drafts: list[Draft], idem: IdempotencyRef) -> list[Outcome]:
        """One entry in each of two books, with the session's rows: all or nothing."""
        conn = await driver_connection(self.session)
        return await self.sequencer.append_linked_within(conn, drafts, idem)


async def create_book(session: AsyncSession, data: schemas.BookCreate) -> schemas.BookRead:
    """Open a new book with an empty chain."""
    try:
        async with session.begin_nested():
            await session.execute(
                text("INSERT INTO books (code, name) VALUES (:code, :name)"),
                {"code": data.code, "name": data.name},
            )
            await session.execute(
                text("INSERT INTO book_heads (book_code) VALUES (:code)"), {"code": data.code}
            )
    except IntegrityError:
        raise errors.BookExists(f"book {data.code!r} exists", code=data.code) from None
    return await get_book(session, data.code)


async def get_book(session: AsyncSession, code: str) -> schemas.BookRead:
    """A book and its chain head."""
    row = (
        await session.execute(
            text(
                "SELECT b.code, b.name, b.created_at, h.seq, h.entry_hash FROM books b "
                "JOIN book_heads h ON h.book_code = b.code WHERE b.code = :code"
            ),
            {"code": code},
        )
    ).one_or_none()
    if row is None:
        raise errors.BookNotFound(f"book {code!r} does not exist")
    return schemas.BookRead(
        code=row.code,
        name=row.name,
        created_at=row.created_at,
        head=schemas.BookHead(seq=row.seq, entry_hash=row.entry_hash),
    )


async def open_account(
    session: AsyncSession, book: str, data: schemas.AccountCreate
) -> schemas.AccountRead:
    """Open an account for one asset in a book."""
    await get_book(session, book)
    asset = (
        await session.execute(text("SELECT 1 FROM assets WHERE code = :c"), {"c": data.asset})
    ).scalar()
    if asset is None:
        raise errors.ValidationFailed(
            f"unknown asset {data.asset!r}",
            errors=[{"field": "asset", "message": "unknown asset", "code": "unknown_asset"}],
        )
    account_id = uuid.uuid4()
    await session.execute(
        text(
            "INSERT INTO accounts (id, book_code, asset, owner, overdraft_limit, meta) "
            "VALUES (:id, :book, :asset, :owner, :limit, CAST(:meta AS jsonb))"
        ),
        {
            "id": account_id,
            "book": book,
            "asset": data.asset,
            "owner": data.owner,
            "limit": data.overdraft_limit,
            "meta": json.dumps(data.meta),
        },
    )
    return await get_account(session, account_id)


def _account_read(row: Any, balance: BalanceState, as_of: int | None) -> schemas.AccountRead:
    return schemas.AccountRead.model_validate(
        {
            "id": row.id,
            "book": row.book_code,
            "asset": row.asset,
            "owner": row.owner,
            "status": row.status,
            "policy": "overdraft_limit" if row.overdraft_limit else "no_overdraft",
            "overdraft_limit": row.overdraft_limit,
            **{
                k: v
                for k, v in balance_json("", row.asset, balance).items()
                if k not in ("account_id", "asset")
            },
            "last_seq": row.last_seq,
            "as_of_seq": as_of,
            "meta": row.meta,
            "created_at": row.created_at,
        }
    )


async def get_account(
    session: AsyncSession, account_id: uuid.UUID, as_of_seq: int | None = None
) -> schemas.AccountRead:
    """An account with its balances now, or as of a past entry of its book."""
    row = (
        await session.execute(text("SELECT * FROM accounts WHERE id = :id"), {"id": account_id})
    ).one_or_none()
    if row is None:
        raise errors.AccountNotFound(f"account {account_id} does not exist")
    balance = BalanceState(row.posted, row.pending_debits, row.pending_credits)
    if as_of_seq is not None:
        leg = (
            await session.execute(
                text(
                    "SELECT posted_after, pending_debits_after, pending_credits_after "
                    "FROM journal_legs WHERE account_id = :id AND seq <= :seq "
                    "ORDER BY seq DESC, leg_index DESC LIMIT 1"
                ),
                {"id": account_id, "seq": as_of_seq},
            )
        ).one_or_none()
        balance = BalanceState() if leg is None else BalanceState(*leg)
    return _account_read(row, balance, as_of_seq)


async def set_account_status(
    session: AsyncSession, account_id: uuid.UUID, status: str
) -> schemas.AccountRead:
    """Freeze, unfreeze or close an account (closing needs zero balances)."""
    account = await get_account(session, account_id)
    if status == "closed" and (account.posted or account.pending_debits or account.pending_credits):
        raise errors.Conflict("only an account with zero balances can be closed")
    if account.status == "closed" and status != "closed":
        raise errors.Conflict("a closed account stays closed")
    await session.execute(
        text("UPDATE accounts SET status = :s WHERE id = :id"), {"s": status, "id": account_id}
    )
    return await get_account(session, account_id)


# A page of legs of some accounts, newest first. Each account's legs are read from its own
# index range (`journal_legs_account`: account, seq desc, leg desc), at most a page of them,
# and the few pages merged: the cost follows the page, not the accounts' whole history, where
# `account_id = ANY(...)` read and sorted every leg of every account (issue 23: 75 ms against
# 0.1 ms on a 31,000-leg account).
# More legs than any entry has (64 of a caller's, and those a storage cap appends).
ENTRY_LEGS_MAX = 1024
ENTRIES_OF_ACCOUNTS = """
SELECT l.seq, l.leg_index, e.tx_id, e.kind, e.posted_at, l.account_id, l.asset, l.amount,
       l.posted_after, l.pending_debits_after, l.pending_credits_after
  FROM unnest(CAST(:ids AS uuid[])) AS a(id)
 CROSS JOIN LATERAL (
       SELECT * FROM journal_legs j
        WHERE j.account_id = a.id AND j.seq < :before
        ORDER BY j.seq DESC, j.leg_index DESC
        LIMIT :limit) l
  JOIN journal_entries e ON e.book_code = l.book_code AND e.seq = l.seq
 ORDER BY l.seq DESC, l.leg_index DESC
 LIMIT :limit
"""


async def list_account_entries(
    session: AsyncSession, account_id: uuid.UUID, before_seq: int | None, limit: int
) -> schemas.AccountEntriesPage:
    """The account's legs, newest first, with running balances (keyset pagination on seq)."""
    await get_account(session, account_id)
    return await list_entries_of_accounts(session, [account_id], before_seq, limit)


async def list_entries_of_accounts(
    session: AsyncSession, account_ids: list[uuid.UUID], before_seq: int | None, limit: int
) -> schemas.AccountEntriesPage:
    """Legs of accounts of one book, newest first, with running balances (keyset on seq)."""
    ids = list(dict.fromkeys(account_ids))  # each account once: a repeat reads its legs twice

    async def read(before: int, most: int) -> list[Any]:
        params = {"ids": ids, "before": before, "limit": most}
        return list((await session.execute(text(ENTRIES_OF_ACCOUNTS), params)).all())

    rows = await read(before_seq or 2**62, limit + 1)
    # A page never splits one entry's legs, so before_seq is a safe cursor.
    page = rows[:limit]
    more = len(rows) > limit
    if more and page and rows[limit].seq == page[-1].seq:
        whole = [r for r in page if r.seq != page[-1].seq]
        if whole:
            page = whole
        else:
            # One entry holds more of these accounts' legs than a page: the page is all of it.
            last = page[-1].seq
            page = [r for r in await read(last + 1, ENTRY_LEGS_MAX) if r.seq == last]
            more = bool(await read(last, 1))
    items = [
        schemas.AccountEntryRead(
            **r._asdict(), available_after=r.posted_after - r.pending_debits_after
        )
        for r in page
    ]
    return schemas.AccountEntriesPage(
        items=items, next_before_seq=page[-1].seq if more and page else None
    )


async def begin_book_aggregate(session: AsyncSession, book: str) -> None:
    """Start a read-only transaction for whole-book aggregates over the journal: one snapshot
    for every figure, hash joins only, and 404 (`not-found`) for an unknown book.

    Hash joins are linear whatever the planner believes; before PostgreSQL has analysed a
    burst of postings it otherwise picks nested loops over sequential scans, quadratic in the
    size of the journal (README, Where the time goes). For this transaction only.
    """
    if not session.in_transaction():
        await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
    else:
        # A caller that began the transaction (a standby's snapshot) began it repeatable read;
        # one that read something first in READ COMMITTED would get figures of two moments.
        level = await session.scalar(text("SHOW transaction_isolation"))
        if level != "repeatable read":
            raise RuntimeError(f"an aggregate needs its own snapshot, not a {level} transaction")
    await session.execute(text("SET LOCAL enable_nestloop = off"))
    await session.execute(text("SET LOCAL enable_mergejoin = off"))
    found = await session.execute(text("SELECT 1 FROM books WHERE code = :b"), {"b": book})
    if found.first() is None:
        raise NotFound(f"book {book!r} does not exist")


def legs_with_accounts(seq: str) -> str:
    """SQL that joins each row of an aggregate to its entry's legs (`l`) and their accounts
    (`a`), looked up by primary key. Under `begin_book_aggregate` a plain join would be a hash
    join reading every leg of the book and every account; a fenced LATERAL (OFFSET 0 keeps the
    planner from turning it back into a join) costs what the rows found cost. `seq` is the
    query's own expression for the entry's seq (never input); `:book` names the book."""
    return (
        " CROSS JOIN LATERAL (SELECT l.account_id, l.asset, l.amount FROM journal_legs l"
        f" WHERE l.book_code = :book AND l.seq = {seq} OFFSET 0) l"
        " CROSS JOIN LATERAL (SELECT a.asset, a.owner, a.meta FROM accounts a"
        " WHERE a.id = l.account_id OFFSET 0) a"
    )


@dataclass(frozen=True)
class EntryFacts:
    """What an entry says beyond its legs: its kind, memo and `meta` (docs/ledger-format.md §6)."""

    kind: str
    memo: str
    meta: dict[str, Any]


async def entry_facts(
    session: AsyncSession, tx_ids: list[uuid.UUID]
) -> dict[uuid.UUID, EntryFacts]:
    """The kind, memo and meta of each of these entries, read from their hashed bytes."""
    if not tx_ids:
        return {}
    rows = await session.execute(
        text(
            "SELECT tx_id, convert_from(body, 'UTF8') AS body FROM journal_entries "
            "WHERE tx_id = ANY(CAST(:ids AS uuid[]))"
        ),
        {"ids": tx_ids},
    )
    facts: dict[uuid.UUID, EntryFacts] = {}
    for row in rows:
        body = json.loads(row.body)
        facts[row.tx_id] = EntryFacts(body["kind"], body.get("memo", ""), body.get("meta", {}))
    return facts


async def get_transaction(session: AsyncSession, tx_id: uuid.UUID) -> StoredPosting:
    """A posted entry as the posting answered it, balances as they were right after it."""
    row = (
        await session.execute(
            text(store.POSTINGS.replace("$1::uuid[]", "CAST(:ids AS uuid[])")), {"ids": [tx_id]}
        )
    ).one_or_none()
    if row is None:
        raise errors.TransactionNotFound(f"transaction {tx_id} does not exist")
    return StoredPosting(posting_from_row(row.body, row.entry_hash, row.balances))


async def post_transaction(
    sequencer: Poster,
    book: str,
    data: schemas.TransactionCreate,
    idem: IdempotencyRef,
    actor: dict[str, str] | None = None,
) -> Outcome:
    """Append a balanced transaction to a book; `actor` names who asked."""
    legs = [(str(leg.account_id), leg.amount) for leg in data.legs]
    draft = Draft(book, "post", data.kind, legs, data.memo, data.meta, actor=actor)
    return await sequencer.submit(draft, idem)


async def post_notice(
    sequencer: Poster,
    book: str,
    what: str,
    facts: dict[str, Any],
    idem: IdempotencyRef | None = None,
    actor: dict[str, str] | None = None,
) -> Outcome:
    """Append an administrative fact (`notice.<what>`, no legs) so the chain proves it."""
    draft = Draft(book, "post", f"{NOTICE_PREFIX}{what}", [], "", facts, actor=actor)
    return await sequencer.submit(draft, idem)


def check_reversible_by_client(original: StoredPosting) -> None:
    """Refuse (422 `not-reversible`) a client's reversal of an entry a feature's rows depend
    on, naming the way it is corrected instead (RECORD_BOUND_KINDS)."""
    way = RECORD_BOUND_KINDS.get(original.kind)
    if way is not None:
        raise errors.NotReversible(
            f"a {original.kind!r} entry is not reversed by itself: {way}", kind=original.kind
        )


async def reverse_transaction(
    sequencer: Poster,
    original: StoredPosting,
    idem: IdempotencyRef,
    actor: dict[str, str] | None = None,
) -> Outcome:
    """Append the negation of a posted transaction, as `get_transaction` read it (at most
    once per transaction)."""
    kind = original.kind
    if kind in NOT_REVERSIBLE or kind.startswith(NOTICE_PREFIX):
        raise errors.NotReversible(f"a {kind!r} entry cannot be reversed")
    legs = [(account_id, -amount) for account_id, amount in original.legs]
    draft = Draft(
        original.book, "reversal", KIND_REVERSAL, legs, reverses=original.tx_id, actor=actor
    )
    return await sequencer.submit(draft, idem)


async def place_hold(
    sequencer: Poster,
    book: str,
    data: schemas.HoldCreate,
    idem: IdempotencyRef,
    actor: dict[str, str] | None = None,
) -> Outcome:
    """Reserve an amount from one account for another until it is posted, voided or expires."""
    legs = [(str(data.from_account_id), -data.amount), (str(data.to_account_id), data.amount)]
    draft = Draft(
        book,
        "hold",
        KIND_HOLD,
        legs,
        data.memo,
        data.meta,
        expires_in_s=data.expires_in,
        actor=actor,
    )
    return await sequencer.submit(draft, idem)


async def get_hold(session: AsyncSession, hold_id: uuid.UUID) -> schemas.HoldRead:
    """A hold and how it was resolved."""
    row = (
        await session.execute(text("SELECT * FROM holds WHERE id = :id"), {"id": hold_id})
    ).one_or_none()
    if row is None:
        raise errors.HoldNotFound(f"hold {hold_id} does not exist")
    return schemas.HoldRead.model_validate({**row._asdict(), "book": row.book_code})


async def resolve_hold(
    sequencer: Poster,
    hold: schemas.HoldRead,
    idem: IdempotencyRef | None,
    post_amount: int | None = None,
    void: bool = False,
    actor: dict[str, str] | None = None,
) -> Outcome:
    """Post (all or part of) a pending hold, as `get_hold` read it, or void it."""
    action: Action = "hold_void" if void else "hold_post"
    draft = Draft(
        hold.book,
        action,
        action,
        hold_id=str(hold.id),
        post_amount=post_amount,
        actor=actor,
    )
    return await sequencer.submit(draft, idem, success_status=200)


async def purge_idempotency_keys(session: AsyncSession, retention_s: int) -> int:
    """Forget idempotency keys older than the retention; returns how many."""
    result = await session.execute(
        text("DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => :s)"),
        {"s": retention_s},
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def expire_holds(session: AsyncSession, sequencer: Sequencer, limit: int = 500) -> int:
    """Void pending holds past their expiry; returns how many this call voided."""
    rows = (
        await session.execute(
            text(
                "SELECT id, book_code FROM holds WHERE status = 'pending' AND expires_at <= now()"
                " ORDER BY expires_at LIMIT :limit"
            ),
            {"limit": limit},
        )
    ).all()
    drafts = [
        Draft(row.book_code, "hold_void", "hold_void", hold_id=str(row.id), void_reason="expired")
        for row in rows
    ]
    # Submitted together, so the sequencer voids them in one batch per book.
    outcomes = await asyncio.gather(*(sequencer.submit(draft) for draft in drafts))
    return sum(outcome.status_code < 400 for outcome in outcomes)


async def posted_before(session: AsyncSession, ref: IdempotencyRef) -> bool:
    """Whether the ledger already appended the posting of this key: a domain action retried
    after a crash between its posting and its own commit replays it instead of re-checking."""
    found = await session.execute(
        text(
            "SELECT 1 FROM idempotency_keys WHERE credential_id = CAST(:c AS uuid) "
            "AND key = :k AND tx_id IS NOT NULL"
        ),
        {"c": ref.credential_id, "k": ref.key},
    )
    return found.first() is not None
