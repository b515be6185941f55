"""A member's history page, each line with what it is about (reads only)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.identity import members, organisations
from app.identity.members import MemberRow
from app.kiosk import redemptions
from app.ledger import service as ledger
from app.ledger.service import EntryFacts
from app.statements.describe import References, as_uuid, describe, hold_of
from app.statements.schemas import MemberEntriesPage, MemberEntryRead
from app.volunteering import projects


async def _references(session: AsyncSession, facts: dict[uuid.UUID, EntryFacts]) -> References:
    """Look up, once for the page, everything its entries (and those they reverse) name."""
    reversed_ids = {
        t for f in facts.values() if f.kind == "reversal" and (t := as_uuid(f.meta.get("reverses")))
    }
    undone = await ledger.entry_facts(session, sorted(reversed_ids - facts.keys()))
    every = {**facts, **undone}
    project_ids = {
        p
        for f in every.values()
        if f.kind in ("service_credit", "service_correction")
        and (p := as_uuid(f.meta.get("project")))
    }
    hold_ids = {h for tx_id, f in every.items() if (h := hold_of(tx_id, f))}
    titles = await projects.titles_of(session, project_ids)
    found = await redemptions.of_holds(session, hold_ids)
    org_ids = {t.organisation_id for t in titles.values()} | {r.site_id for r in found.values()}
    return References(
        projects=titles,
        organisations=await organisations.names_of(session, org_ids),
        redemptions=found,
        reversed={t: every[t] for t in reversed_ids if t in every},
    )


async def member_history(
    session: AsyncSession, row: MemberRow, book: str, before_seq: int | None, limit: int
) -> MemberEntriesPage:
    """The member's legs in `book`, newest first, each naming what it came from."""
    page = await members.member_entries(session, row, book, before_seq, limit)
    facts = await ledger.entry_facts(session, sorted({item.tx_id for item in page.items}))
    refs = await _references(session, facts)
    items = [
        MemberEntryRead(
            **item.model_dump(), about=describe(item.tx_id, facts[item.tx_id], item.amount, refs)
        )
        for item in page.items
    ]
    return MemberEntriesPage(items=items, next_before_seq=page.next_before_seq)
