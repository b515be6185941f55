"""Applying a batch in order: each request's entry chained on the last, and the rows to write.

`remembered_state` decides when what the sequencer wrote last of a book can stand in for reading
it again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from app.kit.clock import rfc3339_micro
from app.kit.problems import TimebankError
from app.ledger import errors, store
from app.ledger.answers import balance_json, posting_payload
from app.ledger.journal import entry_bytes, entry_object, hash_bytes
from app.ledger.outcomes import IdempotencyRef, Outcome, problem_outcome, replay
from app.ledger.posting import AccountState, Applied, Draft, apply_draft


@dataclass(slots=True)
class Pending:
    """A posting waiting in a book's queue, and the future its answer is set on."""

    draft: Draft
    idem: IdempotencyRef | None
    success_status: int
    future: asyncio.Future[Outcome]
    tx_id: str = ""


@dataclass(frozen=True, slots=True)
class Remembered:
    """A book's head and accounts, as this sequencer's last batch of it left them."""

    head: store.ChainHead
    accounts: dict[str, AccountState]


class Appender:
    """Applies a batch's requests in order, chaining entries and gathering the rows to write."""

    def __init__(self, book: str, seq: int, head_hash: str, rows: store.BatchRows) -> None:
        self.book, self.seq, self.hash, self.rows = book, seq, head_hash, rows
        self.posted_at = rfc3339_micro(rows.posted_at)
        self.changed: dict[str, AccountState] = {}

    def apply(self, item: Pending, state: store.BatchState) -> Outcome:
        if item.idem is not None:
            found = state.stored.get((item.idem.credential_id, item.idem.key))
            if found is not None:  # answered before, or earlier in this batch
                return replay(found, item.idem)
        outcome = self._post(item, state)
        if item.idem is not None and outcome.status_code < 500:
            idem = item.idem
            state.stored[(idem.credential_id, idem.key)] = (
                idem.request_hash,
                outcome.status_code,
                outcome.payload,
            )
            success = outcome.status_code < 400
            self.rows.answers.append(
                (
                    idem.credential_id,
                    idem.key,
                    idem.request_hash,
                    outcome.status_code,
                    None if success else outcome.payload.decode(),
                    item.tx_id if success else None,
                )
            )
        return outcome

    def _post(self, item: Pending, state: store.BatchState) -> Outcome:
        draft = item.draft
        try:
            if draft.reverses is not None and draft.reverses in state.reversed_ids:
                raise errors.AlreadyReversed(f"transaction {draft.reverses} is already reversed")
            applied = apply_draft(draft, state.accounts, state.holds, self.rows.posted_at)
        except TimebankError as refusal:
            return problem_outcome(refusal)
        if draft.reverses is not None:
            state.reversed_ids.add(draft.reverses)
        state.accounts.update(applied.touched)
        self.changed.update(applied.touched)
        if applied.new_hold is not None:
            applied.new_hold.id = item.tx_id
            state.holds[item.tx_id] = applied.new_hold
        if applied.resolved_hold is not None:
            state.holds[applied.resolved_hold[0]].status = applied.resolved_hold[1]
        return Outcome(item.success_status, self._entry(item, applied))

    def _entry(self, item: Pending, applied: Applied) -> bytes:
        seq = self.seq + 1
        entry = entry_object(
            book=self.book,
            seq=seq,
            tx_id=item.tx_id,
            kind=applied.kind,
            posted_at=self.posted_at,
            legs=applied.legs,
            memo=item.draft.memo,
            meta=applied.meta,
            prev_hash=self.hash,
        )
        body = entry_bytes(entry)
        entry_hash = hash_bytes(body)
        resolves = applied.resolved_hold[0] if applied.resolved_hold else None
        reverses = item.draft.reverses
        self.rows.entries.append(
            (seq, item.tx_id, applied.kind, self.hash, entry_hash, body, reverses, resolves)
        )
        self.rows.legs.extend(
            [
                (seq, index, leg.account_id, leg.asset, leg.amount, *after.as_tuple())
                for index, (leg, after) in enumerate(
                    zip(applied.legs, applied.leg_balances, strict=True)
                )
            ]
        )
        balances = []
        for account_id, account in applied.touched.items():
            account.last_seq = seq
            balances.append(balance_json(account_id, account.asset, account.balance))
        if applied.new_hold is not None:
            hold = applied.new_hold
            self.rows.new_holds[item.tx_id] = [
                item.tx_id,
                seq,
                hold.from_account_id,
                hold.to_account_id,
                hold.asset,
                hold.amount,
                hold.expires_at,
                "pending",
                None,
                None,
            ]
        if applied.resolved_hold is not None:
            hold_id, status, posted = applied.resolved_hold
            self.rows.resolve_hold(hold_id, status, item.tx_id, posted)
        self.seq, self.hash = seq, entry_hash
        return posting_payload(entry, body, entry_hash, balances)


def remembered_state(memory: Remembered, items: list[Pending]) -> store.BatchState | None:
    """The state a batch would read, from what the sequencer's last batch of the book wrote,
    when it covers the batch.

    Sound because the write is guarded: it commits only if the book's head is still the
    remembered one (every change to a balance or a hold is an entry that moves it) and each
    account it changes has the remembered status and limit (changed without an entry). What
    memory cannot hold, it leaves to the database: a batch that resolves a hold or reverses an
    entry is read; an Idempotency-Key used before fails the write on its unique index, and the
    batch is then read, as after a moved head. Refusals are not written, so not guarded: a
    batch that refuses a posting is read and applied again.
    """
    accounts = memory.accounts
    for item in items:
        d = item.draft
        if d.hold_id is not None or d.reverses is not None:
            return None
        for account_id, _ in d.legs:
            if account_id not in accounts:
                return None
        if (d.overflow_to is not None and d.overflow_to not in accounts) or any(
            account_id not in accounts for account_id in d.unmoved_since
        ):
            return None
    # The accounts are replaced as postings apply, never changed in place (apply_draft).
    return store.BatchState(memory.head, dict(accounts), {}, {}, set())
