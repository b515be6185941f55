"""What every statistics route reads from its query, one way: the book (which a platform
credential must name), the organisation an `org` caller is held to, and a period of service
days that does not end before it starts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated

from fastapi import Depends, Query

from app.http.caller import CallerDep
from app.http.context import SessionDep
from app.identity.authorization import one_listed_book, own_organisation_scope
from app.kit.schemas import Day
from app.ledger.schemas import BookCode
from app.volunteering.figures import check_period


@dataclass(frozen=True, slots=True)
class StatsQuery:
    """A statistics request's scope: its book, the caller's own organisation (None for a whole
    book) and its service days (each bound optional, inclusive)."""

    book: str
    organisation_id: str | None
    day_from: date | None
    day_to: date | None


async def stats_query(
    caller: CallerDep,
    session: SessionDep,
    book: Annotated[
        BookCode | None,
        Query(description="the book (a platform credential names one unless only one exists)"),
    ] = None,
    period_from: Annotated[
        Day | None, Query(alias="from", description="first service day (inclusive)")
    ] = None,
    period_to: Annotated[
        Day | None, Query(alias="to", description="last service day (inclusive)")
    ] = None,
) -> StatsQuery:
    """The scope of a statistics request (422 for a reversed period)."""
    began = session.in_transaction()
    scope_book = await one_listed_book(session, caller, book)
    if not began and session.in_transaction():
        # Looking up the only book read in the request's session: end that read, so that the
        # statistics begin their one repeatable-read snapshot (ledger.begin_book_aggregate).
        await session.rollback()
    check_period(period_from, period_to)
    return StatsQuery(scope_book, own_organisation_scope(caller), period_from, period_to)


StatsQueryDep = Annotated[StatsQuery, Depends(stats_query)]
