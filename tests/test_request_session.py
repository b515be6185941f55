"""A request's session commits before its answer is sent (app/http/context.py): a client never
sees a success for what is not committed."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import app.http.context
from tests.conftest import Api


async def test_a_failed_commit_is_answered_as_a_failure(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    @contextlib.asynccontextmanager
    async def failing_scope(
        sessions: async_sessionmaker[AsyncSession],
    ) -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session
            await session.rollback()
            raise RuntimeError("the commit failed")

    code = f"c{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(app.http.context, "session_scope", failing_scope)
    # As a real server answers: the error handler's 500, the exception not re-raised to us.
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url=str(api.client.base_url), headers=api.client.headers
    ) as client:
        r = await client.post("/v1/books", json={"code": code, "name": "新区"})
    assert r.status_code == 500, r.text
    assert r.headers["content-type"] == "application/problem+json"
    monkeypatch.undo()
    assert (await api.client.get(f"/v1/books/{code}")).status_code == 404
    r = await api.client.post("/v1/books", json={"code": code, "name": "新区"})
    assert r.status_code == 201, r.text


async def test_a_failed_request_gives_its_connection_back_at_once(api: Api) -> None:
    """The handler's error thrown into the session dependency (as FastAPI does) rolls back and
    gives the connection back before the answer, not when the event loop finalises a
    generator left suspended."""
    request = SimpleNamespace(app=api.app)
    dependency = app.http.context.get_session(request)  # type: ignore[arg-type]
    session = await anext(dependency)
    await session.execute(text("SELECT 1"))
    engine = api.app.state.engine
    assert engine.pool.checkedout() == 1
    with pytest.raises(LookupError):
        await dependency.athrow(LookupError("the handler failed"))
    assert engine.pool.checkedout() == 0
