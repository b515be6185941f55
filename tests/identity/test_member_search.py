"""Finding members (GET /v1/members): by volunteer number, phone and part of a name, masked
per role, within reach, in pages that neither skip nor repeat, and the name scan's bound."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from app.identity import member_search
from tests.conftest import Api
from tests.identity.world import World, build_world

FIND = "/v1/members"


@pytest.fixture
async def world(api: Api) -> World:
    """The world on the test's own database, for a test that writes."""
    return await build_world(api)


@pytest.fixture(scope="module")
async def shared(module_api: Api) -> World:
    """The world built once, with a few more members, for the tests that only read it."""
    w = await build_world(module_api)
    await w.register(w.home, w.org_a, display_name="Alice Wang", phone="13700001234")
    await w.register(w.home, w.org_b, display_name="张小明", phone="13600005678")
    await w.register(w.away, display_name="王小明", phone="13500009999")
    return w


async def find(w: World, who: str = "admin", **params: Any) -> httpx.Response:
    query = {"book": w.home} | {k: v for k, v in params.items() if v is not None}
    headers = {"Authorization": f"Bearer {w.tokens[who]}"}
    return await w.api.client.get(FIND, params=query, headers=headers)


async def found(w: World, who: str = "admin", **params: Any) -> dict[str, Any]:
    r = await find(w, who, **params)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def names(page: dict[str, Any]) -> list[str]:
    return [item["display_name"] for item in page["items"]]


async def test_without_q_the_members_in_reach_newest_first(shared: World) -> None:
    admin = await found(shared)
    # Home's four members, newest first; the away book's member is not listed.
    assert names(admin) == ["张小明", "Alice Wang", "王小明", "王小明"]
    assert [item["id"] for item in admin["items"]][2:] == [shared.member_other, shared.member]
    assert admin["matched_by"] is None and admin["next_after"] is None
    assert admin["scanned"] == 0 and admin["scan_truncated"] is False
    # An organisation lists the members enrolled in it, masked; so does the auditor, book-wide.
    org = await found(shared, "org")
    assert names(org) == ["A*********", "王**"]
    assert all(item["masked"] and item["birth_date"] is None for item in org["items"])
    assert {item["book"] for item in org["items"]} == {shared.home}
    assert names(await found(shared, "auditor")) == ["张**", "A*********", "王**", "王**"]
    # The platform names the book; an admin narrows the list to one organisation.
    assert names(await found(shared, "platform")) == names(admin)
    by_org = await found(shared, organisation_id=shared.org_b)
    assert [item["id"] for item in by_org["items"]][1:] == [shared.member_other]


async def test_each_item_is_the_member_as_its_own_route_shows_it(shared: World) -> None:
    for who in ("admin", "auditor", "org"):
        page = await found(shared, who, q=shared.member_number)
        one = await shared.api.client.get(
            f"{FIND}/{shared.member}", headers={"Authorization": f"Bearer {shared.tokens[who]}"}
        )
        assert page["items"] == [one.json()], who


async def test_by_volunteer_number_in_any_case(shared: World) -> None:
    for who in ("admin", "auditor", "org", "platform"):
        page = await found(shared, who, q=f"  {shared.member_number.lower()} ")
        assert [item["id"] for item in page["items"]] == [shared.member], who
        assert page["matched_by"] == "volunteer_number"
    # Organisation A does not reach B's member: not found, as if there were none.
    assert (await found(shared, "org", q=shared.member_other_number))["items"] == []
    assert (await found(shared, "org_other", q=shared.member_number))["items"] == []
    # Nor does a volunteer number of the book find a member of another book.
    away = (await found(shared, "platform", book=shared.away))["items"][0]
    assert (await found(shared, q=away["volunteer_number"]))["items"] == []


async def test_by_phone_exactly_through_its_keyed_hash(shared: World) -> None:
    for q in ("13700001234", "+86 137-0000-1234", "8613700001234"):
        page = await found(shared, q=q)
        assert names(page) == ["Alice Wang"] and page["matched_by"] == "phone", q
        assert page["items"][0]["phone"] == "13700001234"
    assert (await found(shared, q="1370000123"))["matched_by"] == "display_name"
    # Eleven digits that are no mobile number are still a phone number: nobody has it.
    nobody = await found(shared, q="12345678901")
    assert nobody["items"] == [] and nobody["matched_by"] == "phone"
    # Another book's member is not found from this one.
    assert (await found(shared, q="13500009999"))["items"] == []


async def test_by_part_of_a_name_in_any_case(shared: World) -> None:
    assert names(await found(shared, q="alice")) == ["Alice Wang"]
    assert names(await found(shared, q="ＷＡＮＧ")) == ["Alice Wang"]  # full-width, NFKC
    assert names(await found(shared, q="小明")) == ["张小明", "王小明", "王小明"]
    page = await found(shared, q="王小", organisation_id=shared.org_a)
    assert [item["id"] for item in page["items"]] == [shared.member]
    assert page["matched_by"] == "display_name" and page["scanned"] == 2
    assert (await found(shared, q="nobody"))["items"] == []
    # Spaces alone are no query: the whole list.
    assert len((await found(shared, q="   "))["items"]) == 4


@pytest.mark.parametrize("who", ["org", "auditor"])
@pytest.mark.parametrize("q", ["13812345678", "王小明", "wang"])
async def test_callers_that_see_data_masked_search_by_volunteer_number_only(
    shared: World, who: str, q: str
) -> None:
    r = await find(shared, who, q=q)
    assert r.status_code == 403, r.text
    problem = r.json()
    assert problem["type"] == "urn:timebank:problem:member-search-not-allowed"
    assert q not in problem["detail"]


async def test_an_erased_member_is_listed_but_has_no_name_to_find(world: World) -> None:
    gone = await world.register(world.home, display_name="赵六", phone="13311112222")
    r = await world.api.client.post(f"{FIND}/{gone['id']}/erase")
    assert r.status_code == 200, r.text
    listed = (await found(world))["items"][0]
    assert listed["id"] == gone["id"] and listed["status"] == "erased"
    assert (await found(world, q="赵"))["items"] == []
    assert (await found(world, q="13311112222"))["items"] == []
    assert names(await found(world, q=gone["volunteer_number"])) == [None]


async def _pages(w: World, limit: int, **params: Any) -> list[dict[str, Any]]:
    pages, after = [], None
    while True:
        page = await found(w, limit=limit, after=after, **params)
        pages.append(page)
        after = page["next_after"]
        if after is None:
            return pages


async def test_pages_neither_skip_nor_repeat(world: World) -> None:
    for i in range(7):
        await world.register(world.home, world.org_a, display_name=f"Member {i}")
    whole = [item["id"] for item in (await found(world, limit=200))["items"]]
    assert len(whole) == 9
    for limit in (1, 2, 4, 9, 10):
        pages = await _pages(world, limit)
        ids = [item["id"] for page in pages for item in page["items"]]
        assert ids == whole, limit
        assert all(len(page["items"]) == limit for page in pages[:-1])
    by_org = await _pages(world, 3, organisation_id=world.org_a)
    assert len([item for page in by_org for item in page["items"]]) == 8
    named = await _pages(world, 2, q="member ")
    assert [i["display_name"] for p in named for i in p["items"]] == [
        f"Member {i}" for i in range(6, -1, -1)
    ]


async def test_the_name_scan_stops_at_its_bound_and_goes_on_from_there(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(10):
        name = f"Needle {i}" if i % 3 == 0 else f"Hay {i}"
        await world.register(world.home, display_name=name)
    monkeypatch.setattr(member_search, "NAME_SCAN_BOUND", 4)
    monkeypatch.setattr(member_search, "SCAN_CHUNK", 3)
    pages = await _pages(world, 2, q="needle")
    # Twelve members, newest first: Needle 9 and 6 in the first four scanned, 3 in the next
    # four, 0 in the last four (with the world's two).
    assert [[i["display_name"] for i in p["items"]] for p in pages] == [
        ["Needle 9", "Needle 6"],
        ["Needle 3"],
        ["Needle 0"],
    ]
    assert [(p["scanned"], p["scan_truncated"]) for p in pages] == [
        (4, True),
        (4, True),
        (4, False),
    ]
    # A page filled before the bound is not truncated: its cursor is its last item.
    first = await found(world, limit=1, q="needle")
    assert names(first) == ["Needle 9"] and first["scan_truncated"] is False
    assert first["next_after"] == first["items"][0]["id"]


async def test_hostile_queries_are_problems(shared: World) -> None:
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("admin", {"limit": 0}, 422, "validation"),
        ("admin", {"limit": 201}, 422, "validation"),
        ("admin", {"limit": 10**30}, 422, "validation"),
        ("admin", {"after": "not-a-uuid"}, 422, "validation"),
        ("admin", {"after": str(uuid.uuid4())}, 422, "validation"),
        ("admin", {"q": "王\x00"}, 422, "validation"),
        ("admin", {"q": "x" * 10_000}, 422, "validation"),
        ("admin", {"book": "NOT A BOOK"}, 422, "validation"),
        ("admin", {"organisation_id": str(uuid.uuid4())}, 404, "organisation-not-found"),
        ("admin", {"book": shared.away}, 404, "not-found"),
        ("admin_away", {}, 404, "not-found"),
        ("auditor_away", {}, 404, "not-found"),
        ("platform", {"book": "nosuchbook"}, 404, "not-found"),
        ("org", {"organisation_id": shared.org_b}, 403, "forbidden"),
        ("mini", {}, 403, "forbidden"),
        ("kiosk", {}, 403, "forbidden"),
    ]
    for who, params, status, kind in cases:
        r = await find(shared, who, **params)
        assert (r.status_code, r.json()["type"]) == (
            status,
            f"urn:timebank:problem:{kind}",
        ), (who, params, r.text[:200])
        assert r.headers["content-type"] == "application/problem+json"
    # A cursor of another book's member is no cursor of this list; nor, for organisation A,
    # one of B's members (it would tell A that such a member exists).
    away = (await found(shared, "platform", book=shared.away))["items"][0]["id"]
    for who, after in (("admin", away), ("org", shared.member_other)):
        r = await find(shared, who, after=after)
        assert r.status_code == 422 and r.json()["errors"][0]["code"] == "unknown_cursor"
    r = await find(shared, after=shared.member_other, organisation_id=shared.org_a)
    assert r.status_code == 422
    assert (await found(shared, "org", after=shared.member))["items"] == []
    # A platform credential must name the book.
    r = await shared.api.client.get(FIND)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query/book"
