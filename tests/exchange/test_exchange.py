"""Exchange rules, quotes and exchanges through the API (docs/exchange.md)."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from app.exchange.exchanges.service import caps_refusal
from app.exchange.ratios import convert
from app.kit.canonical_json import canonical_bytes
from tests.conftest import Api
from tests.exchange.market import build_market


def problem(r: Any) -> str:
    assert r.headers["content-type"] == "application/problem+json", r.text
    return str(r.json()["type"]).removeprefix("urn:timebank:problem:")


async def test_an_exchange_moves_hours_to_the_pool_and_points_to_the_member(api: Api) -> None:
    m = await build_market(api)
    member = await m.member()
    await m.earn(member, 600)
    rule = await m.rule(caps={"day": 240})
    assert rule["version"] == 1 and rule["status"] == "published" and rule["in_force"]
    assert rule["rule_hash"] == hashlib.sha256(canonical_bytes(rule["rule"])).hexdigest()

    r = await m.quote(member, 125)
    assert r.status_code == 201, r.text
    quote = r.json()
    assert quote["give"] == {"asset": "HOUR", "amount": 125}
    assert quote["receive"] == {"asset": "POINT", "amount": 20}  # floor(125 / 6)
    assert quote["rule"]["hash"] == rule["rule_hash"] and quote["status"] == "open"

    r = await m.exchange(quote["id"])
    assert r.status_code == 201, r.text
    done = r.json()
    entry = done["entry"]["entry"]
    assert entry["kind"] == "exchange"
    assert entry["meta"]["rule_hash"] == rule["rule_hash"]
    assert entry["meta"]["quote"] == quote["id"]
    assert done["quote"]["status"] == "executed"
    assert await m.balance(member["hours"]) == 600 - 125
    assert await m.points(member) == 20
    pools = {
        p["asset"]: p["posted"] for p in await m.ok("GET", f"/v1/organisations/{m.charity}/pools")
    }
    assert pools == {"HOUR": 125, "POINT": 10_000 - 20}
    # Each asset balances on its own within the one entry.
    sums: dict[str, int] = {}
    for leg in entry["legs"]:
        sums[leg["asset"]] = sums.get(leg["asset"], 0) + leg["amount"]
    assert sums == {"HOUR": 0, "POINT": 0} and len(entry["legs"]) == 4

    # The chain proves which rule was in force: its notice carries the document and its hash.
    notices = [e for e in await m.entries() if e["kind"] == "notice.rule_published"]
    assert [n["meta"]["rule_hash"] for n in notices] == [rule["rule_hash"]]
    assert notices[0]["meta"]["rule"] == rule["rule"]

    # Executing the same quote again: the same key replays, another key is refused.
    again = await m.exchange(quote["id"])
    assert problem(again) == "quote-used"
    assert await m.points(member) == 20


async def test_the_same_idempotency_key_replays_the_exchange(api: Api) -> None:
    m = await build_market(api)
    member = await m.member()
    await m.earn(member, 300)
    await m.rule()
    quote = (await m.quote(member, 60)).json()
    first = await m.exchange(quote["id"], key="once")
    second = await m.exchange(quote["id"], key="once")
    assert first.status_code == second.status_code == 201
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert second.json()["entry"]["id"] == first.json()["entry"]["id"]
    assert await m.points(member) == 10


async def test_an_expired_quote_and_a_retired_rule_are_refused(api: Api) -> None:
    m = await build_market(api)
    member = await m.member()
    await m.earn(member, 600)
    rule = await m.rule()
    quote = (await m.quote(member, 60)).json()
    m.at_offset = None
    now = api.app.state.clock()
    api.app.state.clock = lambda: now + timedelta(seconds=61)
    assert problem(await m.exchange(quote["id"])) == "quote-expired"

    fresh = (await m.quote(member, 60)).json()
    retired = await m.ok(
        "POST", f"/v1/exchange-rules/{rule['id']}/retire", body={"reason": "budget spent"}
    )
    assert retired["status"] == "retired" and not retired["in_force"]
    assert problem(await m.exchange(fresh["id"])) == "exchange-rule-retired"
    assert problem(await m.quote(member, 60, rule_id=rule["id"])) == "exchange-rule-retired"
    assert problem(await m.quote(member, 60)) == "exchange-rule-not-found"
    assert await m.points(member) == 0
    kinds = [e["kind"] for e in await m.entries()]
    assert kinds.count("notice.rule_retired") == 1


async def test_a_new_version_replaces_the_rule_in_force(api: Api) -> None:
    m = await build_market(api)
    member = await m.member()
    await m.earn(member, 600)
    v1 = await m.rule()
    old_quote = (await m.quote(member, 60)).json()
    v2 = await m.rule(ratio={"num": 1, "den": 5})
    assert v2["version"] == 2 and v2["rule"]["replaces"] == v1["id"]
    assert (await m.ok("GET", f"/v1/exchange-rules/{v1['id']}"))["status"] == "retired"
    # A quote under v1 is refused; a new quote is priced by v2.
    assert problem(await m.exchange(old_quote["id"])) == "exchange-rule-retired"
    quote = (await m.quote(member, 60)).json()
    assert quote["rule"]["version"] == 2 and quote["receive"]["amount"] == 12
    assert (await m.exchange(quote["id"])).status_code == 201
    listed = await m.ok("GET", "/v1/exchange-rules", params=None) if False else None
    versions = await m.ok("GET", "/v1/exchange-rules?code=hour-point")
    assert [(r["version"], r["status"]) for r in versions] == [(2, "published"), (1, "retired")]
    del listed


async def test_parallel_exchanges_never_pass_the_daily_cap(api: Api) -> None:
    m = await build_market(api)
    member = await m.member()
    await m.earn(member, 2_000)
    await m.rule(caps={"day": 300})
    quotes = [(await m.quote(member, 60)).json() for _ in range(5)]
    # Quotes are priced against the cap as it stands; the cap binds when they execute.
    quotes += [(await m.quote(member, 60)).json() for _ in range(15)]
    results = await asyncio.gather(*(m.exchange(q["id"]) for q in quotes))
    done = [r for r in results if r.status_code == 201]
    refused = [r for r in results if r.status_code != 201]
    assert len(done) == 5 and len(refused) == 15
    assert {problem(r) for r in refused} == {"exchange-cap-exceeded"}
    assert refused[0].json()["cap"] == 300 and refused[0].json()["period"] == "day"
    assert await m.balance(member["hours"]) == 2_000 - 300
    assert await m.points(member) == 5 * 10
    # The next day the cap starts again (the journal's times are real ones).
    api.app.state.clock = lambda: datetime.now(UTC) + timedelta(days=1)
    tomorrow = (await m.quote(member, 60)).json()
    assert (await m.exchange(tomorrow["id"])).status_code == 201


async def test_the_pool_pays_only_what_was_donated(api: Api) -> None:
    m = await build_market(api, donated=15)
    member = await m.member()
    await m.earn(member, 600)
    await m.rule()
    first = (await m.quote(member, 60)).json()
    assert (await m.exchange(first["id"])).status_code == 201
    second = (await m.quote(member, 60)).json()
    r = await m.exchange(second["id"])
    assert problem(r) == "pool-empty"
    assert await m.points(member) == 10 and await m.balance(member["hours"]) == 540
    # The ledger's refusal wrote nothing, not even under the quote's key: once the pool is
    # funded, the same quote executes.
    await m.ok(
        "POST",
        f"/v1/organisations/{m.charity}/donations",
        body={"asset": "POINT", "amount": 100, "donor": {"name": "王善人"}},
    )
    assert (await m.exchange(second["id"])).status_code == 201
    assert await m.points(member) == 20 and await m.balance(member["hours"]) == 480


async def test_amounts_outside_the_rule_are_refused(api: Api) -> None:
    m = await build_market(api)
    member = await m.member()
    await m.earn(member, 600)
    await m.rule(max_amount=240, conditions={"step": 30})
    assert problem(await m.quote(member, 20)) == "exchange-amount-invalid"
    assert problem(await m.quote(member, 270)) == "exchange-amount-invalid"
    r = await m.quote(member, 45)
    assert problem(r) == "exchange-amount-invalid" and r.json()["step"] == 30
    quote = (await m.quote(member, 90)).json()
    assert {"condition": "step", "step": 30} in quote["conditions"]


async def test_age_conditions_with_hardship_attested_by_an_organisation(api: Api) -> None:
    m = await build_market(api)
    await m.rule(conditions={"min_age": 65, "min_age_hardship": 60})
    young = await m.member()  # born 1985
    await m.earn(young, 600)
    r = await m.quote(young, 60)
    assert problem(r) == "exchange-condition-not-met" and r.json()["condition"] == "min_age"

    async def elder(born: str) -> dict[str, Any]:
        body = {
            "book": m.book,
            "display_name": "张阿姨",
            "birth_date": born,
            "phone": "137" + born.replace("-", ""),
            "identity": {"provider": "wechat", "subject": f"o_{born}"},
        }
        member: dict[str, Any] = await m.ok("POST", "/v1/members", "team", body=body)
        member["hours"] = next(a["account_id"] for a in member["accounts"] if a["asset"] == "HOUR")
        await m.earn(member, 600)
        return member

    senior = await elder("1958-01-01")
    quote = (await m.quote(senior, 60)).json()
    assert quote["conditions"] == [{"condition": "min_age", "min_age": 65}]

    sixty_two = await elder("1964-05-05")
    assert problem(await m.quote(sixty_two, 60)) == "exchange-condition-not-met"
    # A mini-program cannot attest hardship; the member's organisation can.
    r = await m.call(
        "POST",
        "/v1/exchange/quotes",
        "mini",
        member=sixty_two["id"],
        body={"amount": 60, "from_asset": "HOUR", "to_asset": "POINT", "hardship": True},
    )
    assert problem(r) == "exchange-condition-not-met"
    r = await m.call(
        "POST",
        "/v1/exchange/quotes",
        "team",
        body={
            "member_id": sixty_two["id"],
            "amount": 60,
            "from_asset": "HOUR",
            "to_asset": "POINT",
            "hardship": True,
        },
    )
    assert r.status_code == 201, r.text
    passed = r.json()["conditions"][0]
    assert passed["condition"] == "min_age_hardship" and passed["min_age"] == 60
    done = await m.exchange(r.json()["id"], who="team")
    assert done.status_code == 201, done.text
    meta = done.json()["entry"]["entry"]["meta"]
    assert meta["conditions"] == r.json()["conditions"]
    assert "1964" not in str(meta)  # the condition, never the birth date


async def test_a_first_exchange_needs_certified_hours(api: Api) -> None:
    m = await build_market(api)
    member = await m.member()
    await m.earn(member, 600)  # credited, but not certified service
    await m.rule(conditions={"min_certified_minutes": 300})
    r = await m.quote(member, 60)
    assert problem(r) == "exchange-condition-not-met"
    assert r.json()["certified_minutes"] == 0


async def test_a_mini_program_exchanges_only_for_its_member(api: Api) -> None:
    m = await build_market(api)
    member, other = await m.member(), await m.member()
    await m.earn(member, 600)
    await m.rule()
    r = await m.call(
        "POST",
        "/v1/exchange/quotes",
        "mini",
        member=member["id"],
        body={"amount": 60, "from_asset": "HOUR", "to_asset": "POINT"},
    )
    assert r.status_code == 201, r.text
    stranger = await m.exchange(r.json()["id"], who="mini", member=other["id"])
    assert problem(stranger) == "quote-not-found"
    assert (await m.exchange(r.json()["id"], who="mini", member=member["id"])).status_code == 201
    kiosk = await m.call(
        "POST",
        "/v1/exchange/quotes",
        "kiosk",
        body={"member_id": member["id"], "amount": 60, "from_asset": "HOUR", "to_asset": "POINT"},
    )
    assert kiosk.status_code == 403


async def test_a_donation_names_its_record_not_its_donor(api: Api) -> None:
    m = await build_market(api, donated=0)
    r = await m.call(
        "POST",
        f"/v1/organisations/{m.charity}/donations",
        "admin",
        body={
            "asset": "POINT",
            "amount": 500,
            "donor": {"kind": "organisation", "name": "爱心基金会", "contact": "13912345678"},
        },
    )
    assert r.status_code == 201, r.text
    donation = r.json()
    assert donation["donor"]["name"] == "爱心基金会"
    entry = next(e for e in await m.entries() if e["kind"] == "donation")
    assert entry["meta"] == {"donation": donation["id"], "actor": entry["meta"]["actor"]}
    assert "爱心基金会" not in str(entry) and "13912345678" not in str(entry)
    seen = await m.ok("GET", f"/v1/donations/{donation['id']}", "auditor")
    assert seen["donor"] is None and seen["amount"] == 500
    pools = await m.ok("GET", f"/v1/organisations/{m.charity}/pools")
    assert {p["asset"]: p["posted"] for p in pools}["POINT"] == 500


async def test_a_rule_must_name_pools_that_exist(api: Api) -> None:
    m = await build_market(api)
    r = await m.call(
        "POST",
        "/v1/exchange-rules",
        "admin",
        body={
            "code": "bad",
            "from_asset": "HOUR",
            "to_asset": "POINT",
            "ratio": {"num": 1, "den": 6},
            "pools": [{"book": m.book, "organisation_id": m.team}],
        },
    )
    assert problem(r) == "invalid-exchange-rule"
    assert r.json()["errors"][0]["code"] == "no_pool"
    r = await m.call(
        "POST",
        "/v1/exchange-rules",
        "team",
        body={
            "code": "bad",
            "from_asset": "HOUR",
            "to_asset": "POINT",
            "ratio": {"num": 1, "den": 6},
            "pools": [{"book": m.book, "organisation_id": m.charity}],
        },
    )
    assert r.status_code == 403
    # A window that has already closed (valid_from left out: now).
    r = await m.call(
        "POST",
        "/v1/exchange-rules",
        "admin",
        body={
            "code": "closed",
            "from_asset": "HOUR",
            "to_asset": "POINT",
            "ratio": {"num": 1, "den": 6},
            "pools": [{"book": m.book, "organisation_id": m.charity}],
            "valid_until": "2020-01-01T00:00:00+08:00",
        },
    )
    assert problem(r) == "invalid-exchange-rule", r.text
    assert r.json()["errors"][0]["field"] == "body/valid_until"


async def test_an_erased_member_cannot_execute_an_earlier_quote(api: Api) -> None:
    m = await build_market(api)
    member = await m.member()
    await m.earn(member, 600)
    await m.rule()
    quote = (await m.quote(member, 60)).json()
    erased = await m.call("POST", f"/v1/members/{member['id']}/erase")
    assert erased.status_code == 200, erased.text
    assert problem(await m.exchange(quote["id"])) == "member-not-eligible"
    assert await m.points(member) == 0 and await m.balance(member["hours"]) == 600


@given(
    st.integers(1, 1000),
    st.integers(1, 1000),
    st.lists(st.integers(1, 10**6), min_size=1, max_size=30),
)
def test_rounding_never_creates_value(num: int, den: int, amounts: list[int]) -> None:
    received = [convert(a, num, den) for a in amounts]
    for amount, got in zip(amounts, received, strict=True):
        assert got * den <= amount * num < (got + 1) * den
    # A sequence of exchanges never yields more than the exact ratio of their total.
    assert sum(received) * den <= sum(amounts) * num
    assert sum(received) <= convert(sum(amounts), num, den)


@given(
    st.integers(1, 500),
    st.one_of(st.none(), st.integers(1, 2000)),
    st.lists(st.integers(1, 200), max_size=40),
)
def test_caps_admit_exactly_what_fits(day: int, year: int | None, amounts: list[int]) -> None:
    caps: dict[Any, int | None] = {"day": day, "month": None, "year": year}
    used: dict[Any, int] = {"day": 0, "month": 0, "year": 0}
    for amount in amounts:
        refusal = caps_refusal(caps, used, amount)
        fits = used["day"] + amount <= day and (year is None or used["year"] + amount <= year)
        assert (refusal is None) == fits
        if refusal is None:
            for period in used:
                used[period] += amount
        else:
            period, cap, before = refusal
            assert before + amount > cap
    assert used["day"] <= day and (year is None or used["year"] <= year)
