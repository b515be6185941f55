"""Console sessions: a token typed once becomes an HttpOnly cookie; the cookie reads, but only
writes that repeat the session's CSRF token; sign-out, expiry, revocation and rotation each end
the session at once."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import Api

PROBLEM = "urn:timebank:problem:"


async def credential(api: Api, role: str, book: str, **fields: Any) -> dict[str, Any]:
    r = await api.client.post(
        "/v1/credentials",
        json={"role": role, "book": book, **fields},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


def browser(api: Api) -> httpx.AsyncClient:
    """A client like a browser: no Authorization header, cookies kept."""
    return httpx.AsyncClient(transport=api.client._transport, base_url="http://testserver")


async def sign_in(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/v1/console/sessions", json={"token": token})


async def test_a_token_becomes_a_cookie_that_reads_and_writes_only_with_its_csrf(
    api: Api,
) -> None:
    book = await api.book()
    admin = await credential(api, "admin", book, name="街道管理员")
    async with browser(api) as page:
        r = await sign_in(page, admin["token"])
        assert r.status_code == 201, r.text
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("tb_console=tbs_")
        for attribute in ("HttpOnly", "SameSite=strict", "Path=/", "Max-Age=28800"):
            assert attribute.lower() in cookie.lower(), cookie
        assert admin["token"] not in cookie and admin["token"] not in r.text
        session = r.json()
        assert session["credential"]["id"] == admin["id"]
        assert (session["credential"]["role"], session["credential"]["book"]) == ("admin", book)
        assert session["credential"]["name"] == "街道管理员"
        csrf = session["csrf_token"]

        again = (await page.get("/v1/console/session")).json()
        assert (again["csrf_token"], again["credential"]["id"]) == (csrf, admin["id"])
        assert (await page.get(f"/v1/books/{book}")).status_code == 200

        body = {"book": book, "kind": "community", "name": "幸福里社区"}
        key = {"Idempotency-Key": uuid.uuid4().hex}
        refused = await page.post("/v1/organisations", json=body, headers=key)
        assert refused.status_code == 403
        assert refused.json()["type"] == PROBLEM + "csrf-token-invalid"
        wrong = await page.post(
            "/v1/organisations", json=body, headers={**key, "X-CSRF-Token": csrf[:-1] + "x"}
        )
        assert wrong.status_code == 403
        made = await page.post(
            "/v1/organisations", json=body, headers={**key, "X-CSRF-Token": csrf}
        )
        assert made.status_code == 201, made.text
        # Another session of the same credential has its own CSRF token.
        async with browser(api) as other:
            theirs = (await sign_in(other, admin["token"])).json()["csrf_token"]
            assert theirs != csrf
            crossed = await other.post(
                "/v1/organisations",
                json=body | {"name": "另一社区"},
                headers={"Idempotency-Key": uuid.uuid4().hex, "X-CSRF-Token": csrf},
            )
            assert crossed.status_code == 403


async def test_sign_out_ends_the_session_and_the_old_cookie_with_it(api: Api) -> None:
    book = await api.book()
    auditor = await credential(api, "auditor", book)
    async with browser(api) as page:
        csrf = (await sign_in(page, auditor["token"])).json()["csrf_token"]
        secret = page.cookies["tb_console"]
        # An auditor may sign out (a write of its own session) with the CSRF token.
        assert (await page.delete("/v1/console/session")).status_code == 403
        out = await page.delete("/v1/console/session", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 204
        assert (
            'tb_console=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
        )
        assert (await page.get("/v1/console/session")).status_code == 401
    async with browser(api) as replay:
        replay.cookies.set("tb_console", secret)
        r = await replay.get(f"/v1/books/{book}")
        assert r.status_code == 401 and "sign in again" in r.json()["detail"]


@pytest.mark.parametrize("how", ["revoke", "rotate", "expire"])
async def test_revocation_rotation_and_expiry_each_end_the_session_at_once(
    api: Api, how: str
) -> None:
    book = await api.book()
    org = await api.client.post(
        "/v1/organisations",
        json={"book": book, "kind": "social_work_station", "name": "阳光社工站"},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    staff = await credential(api, "org", book, organisation_id=org.json()["id"])
    async with browser(api) as page:
        session = (await sign_in(page, staff["token"])).json()
        assert session["credential"]["organisation_name"] == "阳光社工站"
        assert (await page.get("/v1/console/session")).status_code == 200
        if how == "expire":
            async with api.app.state.sessions() as db, db.begin():
                await db.execute(
                    text(
                        "UPDATE console_sessions SET expires_at = now() - interval '1 second', "
                        "created_at = now() - interval '1 hour' WHERE credential_id = :c"
                    ),
                    {"c": staff["id"]},
                )
        else:
            r = await api.client.post(
                f"/v1/credentials/{staff['id']}/{how}",
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            assert r.status_code == 200, r.text
        ended = await page.get("/v1/console/session")
        assert ended.status_code == 401
        assert ended.json()["type"] == PROBLEM + "unauthorized"


async def test_only_a_valid_token_of_a_console_role_signs_in(api: Api) -> None:
    book = await api.book()
    mini = await credential(api, "miniprogram", book)
    async with browser(api) as page:
        assert (await sign_in(page, "tbk_not-a-token")).status_code == 401
        refused = await sign_in(page, mini["token"])
        assert refused.status_code == 403 and "no console" in refused.json()["detail"]
        assert "set-cookie" not in refused.headers
        for body in ({}, {"token": ""}, {"token": "x" * 201}, {"token": "t", "extra": 1}):
            r = await page.post("/v1/console/sessions", json=body)
            assert r.status_code == 422, body
        assert (await page.get("/v1/console/session")).status_code == 401


async def test_a_bearer_token_wins_over_a_cookie_and_needs_no_csrf(api: Api) -> None:
    book = await api.book()
    auditor = await credential(api, "auditor", book)
    async with browser(api) as page:
        await sign_in(page, auditor["token"])
        # The platform's bearer token with an auditor's cookie: the request is the platform's.
        r = await page.post(
            "/v1/books",
            json={"code": f"b{uuid.uuid4().hex[:8]}", "name": "另一本"},
            headers={"Authorization": f"Bearer {api.token}"},
        )
        assert r.status_code == 201, r.text
        mine = (
            await page.get("/v1/console/session", headers={"Authorization": f"Bearer {api.token}"})
        ).json()
        assert mine["csrf_token"] is None and mine["credential"]["role"] == "admin"
