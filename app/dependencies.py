"""Shared FastAPI dependencies: the request's database session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import session_scope


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, committed once when the handler succeeds."""
    async for session in session_scope(request.app.state.sessions):
        yield session


# "function": the session commits before the answer is sent, so a client never sees a 201 for
# what is not committed yet (or never will be). FastAPI's default ends it after the response.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
