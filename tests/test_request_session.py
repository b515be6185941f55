"""A request's session commits before its answer is sent (app/http/context.py): a client never
sees a success for what is not committed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import app.http.context
from tests.conftest import Api


async def test_a_failed_commit_is_answered_as_a_failure(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
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
