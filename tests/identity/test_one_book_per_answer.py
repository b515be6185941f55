"""Routes that answer for one book (`one_listed_book`): a platform credential that names no book
gets a 422 naming the books it may choose, or, when only one book exists, that book."""

from __future__ import annotations

from typing import Any

from app.identity.authorization import LISTED_BOOKS
from tests.conftest import Api

ONE_BOOK_ROUTES = ("/v1/stats/service", "/v1/stats/exchange", "/v1/members")


def refused(r: Any) -> dict[str, Any]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["type"] == "urn:timebank:problem:validation"
    assert [(e["field"], e["code"]) for e in body["errors"]] == [("query/book", "missing")]
    return body


async def test_no_book_yet_is_said_so(api: Api) -> None:
    for route in ONE_BOOK_ROUTES:
        body = refused(await api.client.get(route))
        assert body["books"] == [] and "there is no book yet" in body["errors"][0]["message"]


async def test_the_only_book_is_the_one(api: Api) -> None:
    book = await api.book("solo")
    service = await api.client.get("/v1/stats/service")
    assert service.status_code == 200, service.text
    assert service.json()["book"] == book
    named = await api.client.get(f"/v1/stats/service?book={book}")
    assert service.json() == named.json()
    for route in ("/v1/stats/exchange", "/v1/members"):
        r = await api.client.get(route)
        assert r.status_code == 200, (route, r.text)
        assert r.json() == (await api.client.get(f"{route}?book={book}")).json()


async def test_a_platform_credential_is_told_which_books_it_may_name(api: Api) -> None:
    books = sorted([await api.book(), await api.book()])
    for route in ONE_BOOK_ROUTES:
        body = refused(await api.client.get(route))
        assert body["books"] == books
        assert body["detail"] == (
            "book is required: a credential bound to no book spans every book: "
            f"name one with ?book=: {books[0]}, {books[1]}"
        )
        assert body["errors"][0]["message"] == body["detail"].removeprefix("book is required: ")
    # Past LISTED_BOOKS, the first ones (by code) and "…".
    books = sorted(books + [await api.book() for _ in range(LISTED_BOOKS - 1)])
    body = refused(await api.client.get("/v1/stats/service"))
    assert body["books"] == books[:LISTED_BOOKS]
    assert body["detail"].endswith(f"{books[LISTED_BOOKS - 1]}, …")
    assert books[LISTED_BOOKS] not in body["detail"]
