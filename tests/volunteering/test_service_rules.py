"""Each rule of service records, and the refusals that name it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from app.volunteering import checkin_codes
from tests.conftest import Api, gather_limited
from tests.volunteering.district import MORNING, District, build_district

PROBLEM = "urn:timebank:problem:"


@pytest.fixture
async def district(api: Api) -> District:
    return await build_district(api)


def problem_type(response: Any) -> str:
    assert response.headers["content-type"] == "application/problem+json", response.text
    return str(response.json()["type"]).removeprefix(PROBLEM)


async def test_fifty_concurrent_signups_for_ten_places_take_exactly_ten(
    district: District,
) -> None:
    d = district
    project = await d.project(capacity=10)
    members = await gather_limited([d.member() for _ in range(50)], limit=8)
    answers = await asyncio.gather(
        *(
            d.call("POST", f"/v1/projects/{project['id']}/signups", "mini", member=m["id"])
            for m in members
        )
    )
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [201] * 10 + [409] * 40
    assert {problem_type(r) for r in answers if r.status_code == 409} == {"project-full"}
    assert (await d.ok("GET", f"/v1/projects/{project['id']}"))["signed_up"] == 10
    signups = await d.ok("GET", f"/v1/projects/{project['id']}/signups", "team")
    assert len(signups["items"]) == 10
    # A place given back can be taken again, once.
    first = next(r.json()["member_id"] for r in answers if r.status_code == 201)
    await d.ok("DELETE", f"/v1/projects/{project['id']}/signups/{first}", "mini", member=first)
    late = [m["id"] for m, r in zip(members, answers, strict=True) if r.status_code == 409][:2]
    retried = [
        await d.call("POST", f"/v1/projects/{project['id']}/signups", "mini", member=m)
        for m in late
    ]
    assert [r.status_code for r in retried] == [201, 409]


async def test_the_same_member_signing_up_concurrently_takes_one_place(district: District) -> None:
    d = district
    project = await d.project(capacity=3)
    member = await d.member()
    answers = await asyncio.gather(
        *(
            d.call("POST", f"/v1/projects/{project['id']}/signups", "mini", member=member["id"])
            for _ in range(6)
        )
    )
    assert sorted(r.status_code for r in answers) == [200] * 5 + [201]
    assert (await d.ok("GET", f"/v1/projects/{project['id']}"))["signed_up"] == 1


async def test_overlapping_time_across_two_projects_is_refused(district: District) -> None:
    d = district
    first = await d.project()
    second = await d.project(title="社区环境清洁", category="environment")
    member = await d.member()
    ok = await d.manual(first["id"], member["id"], MORNING, 120)
    assert ok.status_code == 201, ok.text
    clash = await d.manual(second["id"], member["id"], MORNING + timedelta(hours=1), 60)
    assert clash.status_code == 422 and problem_type(clash) == "overlapping-service"
    assert clash.json()["record_id"] == ok.json()["id"]
    # Right after the first record ends is fine; a rejected record frees its time.
    after = await d.manual(second["id"], member["id"], MORNING + timedelta(hours=2), 60)
    assert after.status_code == 201, after.text
    await d.ok(
        "POST", f"/v1/service-records/{ok.json()['id']}/reject", "team", body={"reason": "未到场"}
    )
    retry = await d.manual(second["id"], member["id"], MORNING + timedelta(minutes=30), 60)
    assert retry.status_code == 201, retry.text


async def test_concurrent_overlapping_entries_for_one_member_credit_once(
    district: District,
) -> None:
    d = district
    projects = [await d.project(title=f"项目{i}") for i in range(6)]
    member = await d.member()
    answers = await asyncio.gather(
        *(d.manual(p["id"], member["id"], MORNING, 90) for p in projects)
    )
    assert sorted(r.status_code for r in answers) == [201] + [422] * 5
    assert {problem_type(r) for r in answers if r.status_code == 422} == {"overlapping-service"}


async def test_the_daily_cap_counts_every_project_of_the_day(district: District) -> None:
    d = district
    long_day = await d.project(ends_at=(MORNING + timedelta(hours=14)).isoformat())
    other = await d.project(
        starts_at=(MORNING - timedelta(hours=8)).isoformat(), ends_at=MORNING.isoformat()
    )
    member = await d.member()
    assert (await d.manual(long_day["id"], member["id"], MORNING, 8 * 60)).status_code == 201
    refused = await d.manual(other["id"], member["id"], MORNING - timedelta(hours=5), 5 * 60)
    assert refused.status_code == 422 and problem_type(refused) == "daily-cap-exceeded"
    body = refused.json()
    assert body["rule"] == "daily_cap" and body["cap_minutes"] == 720
    assert body["credited_minutes"] == 480
    assert (
        await d.manual(other["id"], member["id"], MORNING - timedelta(hours=4), 4 * 60)
    ).status_code == 201


async def test_a_projects_own_cap_per_person_per_day(district: District) -> None:
    d = district
    project = await d.project(cap_minutes_per_day=120)
    member = await d.member()
    assert (await d.manual(project["id"], member["id"], MORNING, 90)).status_code == 201
    refused = await d.manual(project["id"], member["id"], MORNING + timedelta(hours=2), 60)
    assert refused.status_code == 422 and problem_type(refused) == "project-daily-cap-exceeded"


async def test_only_time_inside_the_window_is_credited(district: District) -> None:
    d = district
    project = await d.project()  # 09:00-12:00
    fixed = await d.project(credit_policy="fixed", fixed_minutes=240, title="应急值守")
    member = await d.member()
    early = await d.manual(project["id"], member["id"], MORNING - timedelta(hours=1), 120)
    assert early.status_code == 201 and early.json()["credited_minutes"] == 60
    assert early.json()["started_at"].startswith("2026-11-20T01:00:00")  # 09:00 in UTC+8
    outside = await d.manual(project["id"], member["id"], MORNING + timedelta(hours=4), 60)
    assert outside.status_code == 422 and problem_type(outside) == "outside-window"
    # Inside the window but shorter than a minute: said so, not "outside the window".
    brief = await d.call(
        "POST",
        "/v1/service-records",
        "team",
        body={
            "project_id": project["id"],
            "member_id": member["id"],
            "started_at": (MORNING + timedelta(hours=2)).isoformat(),
            "ended_at": (MORNING + timedelta(hours=2, seconds=40)).isoformat(),
            "attested_by": "陈站长",
        },
    )
    assert brief.status_code == 422 and problem_type(brief) == "service-too-short"
    assert brief.json()["seconds"] == 40 and "lasted 40 s" in brief.json()["detail"]
    other = await d.member()
    flat = await d.manual(fixed["id"], other["id"], MORNING, 30)
    assert flat.status_code == 201 and flat.json()["credited_minutes"] == 240


async def test_checkin_codes_that_expired_or_belong_elsewhere_are_refused(
    district: District, api: Api
) -> None:
    d = district
    project = await d.project()
    elsewhere = await d.project(title="另一个项目")
    member = await d.member()
    mine = {"member": member["id"]}
    await d.ok("POST", f"/v1/projects/{project['id']}/signups", "mini", **mine)
    d.at(MORNING)
    code = await d.code(project["id"])
    other_code = await d.code(elsewhere["id"])
    path = f"/v1/projects/{project['id']}/checkin"

    d.at(MORNING + timedelta(seconds=api.app.state.settings.checkin_code_ttl_s))
    expired = await d.call("POST", path, "mini", body={"code": code}, **mine)
    assert expired.status_code == 422 and problem_type(expired) == "checkin-code-expired"
    d.at(MORNING + timedelta(seconds=5))
    wrong = await d.call("POST", path, "mini", body={"code": other_code}, **mine)
    assert wrong.status_code == 422 and problem_type(wrong) == "checkin-code-other-project"
    forged = code[:-4] + ("AAAA" if not code.endswith("AAAA") else "BBBB")
    bad = await d.call("POST", path, "mini", body={"code": forged}, **mine)
    assert bad.status_code == 422 and problem_type(bad) == "invalid-checkin-code"
    junk = await d.call("POST", path, "mini", body={"code": "hello"}, **mine)
    assert junk.status_code == 422 and problem_type(junk) == "invalid-checkin-code"
    ok = await d.call("POST", path, "mini", body={"code": code}, **mine)
    assert ok.status_code == 201, ok.text

    # Checked in here, a member cannot check in elsewhere until checked out.
    await d.ok("POST", f"/v1/projects/{elsewhere['id']}/signups", "mini", **mine)
    busy = await d.call(
        "POST",
        f"/v1/projects/{elsewhere['id']}/checkin",
        "mini",
        body={"code": await d.code(elsewhere["id"])},
        **mine,
    )
    assert busy.status_code == 409 and problem_type(busy) == "already-checked-in"


async def test_checkin_needs_a_signup(district: District) -> None:
    d = district
    project = await d.project()
    member = await d.member()
    d.at(MORNING)
    refused = await d.call(
        "POST",
        f"/v1/projects/{project['id']}/checkin",
        "mini",
        body={"code": await d.code(project["id"])},
        member=member["id"],
    )
    assert refused.status_code == 422 and problem_type(refused) == "not-signed-up"


def test_a_code_is_bound_to_its_project_key_and_lifetime() -> None:
    import uuid

    project, key = uuid.uuid4(), b"k" * 32
    code, expires = checkin_codes.make_code(project, key, MORNING, 60)
    checkin_codes.check_code(code, project, key, MORNING + timedelta(seconds=59), 60)
    with pytest.raises(checkin_codes.errors.CheckinCodeExpired):
        checkin_codes.check_code(code, project, key, MORNING + timedelta(seconds=60), 60)
    with pytest.raises(checkin_codes.errors.InvalidCheckinCode):
        checkin_codes.check_code(code, project, b"x" * 32, MORNING, 60)
    with pytest.raises(checkin_codes.errors.CheckinCodeOtherProject):
        checkin_codes.check_code(code, uuid.uuid4(), key, MORNING, 60)
    far, _ = checkin_codes.make_code(project, key, MORNING + timedelta(hours=1), 60)
    with pytest.raises(checkin_codes.errors.InvalidCheckinCode):
        checkin_codes.check_code(far, project, key, MORNING, 60)
    assert expires == MORNING + timedelta(seconds=60)


async def test_concurrent_approvals_post_once(district: District) -> None:
    d = district
    project = await d.project()
    member = await d.member()
    record = (await d.manual(project["id"], member["id"], MORNING, 60)).json()
    answers = await asyncio.gather(
        *(
            d.call("POST", f"/v1/service-records/{record['id']}/approve", "team_checker")
            for _ in range(8)
        )
    )
    assert {r.status_code for r in answers} == {200}
    assert len({r.json()["tx_id"] for r in answers}) == 1
    assert await d.balance(member["hours"]) == 60
    entries = await d.ok("GET", f"/v1/accounts/{member['hours']}/entries")
    assert len(entries["items"]) == 1


async def test_approval_by_another_organisation_or_a_reader_is_refused(
    district: District,
) -> None:
    d = district
    project = await d.project()
    member = await d.member()
    record = (await d.manual(project["id"], member["id"], MORNING, 60)).json()
    path = f"/v1/service-records/{record['id']}/approve"
    other = await d.call("POST", path, "other_team")
    assert other.status_code == 404 and problem_type(other) == "service-record-not-found"
    for reader in ("auditor", "mini", "kiosk"):
        assert (await d.call("POST", path, reader, member=member["id"])).status_code == 403
    # Another organisation cannot record service in a project it did not organise.
    foreign = await d.manual(
        project["id"], member["id"], MORNING + timedelta(hours=2), 30, who="other_team"
    )
    assert foreign.status_code == 403
    assert await d.balance(member["hours"]) == 0


async def test_maker_checker_requires_a_second_credential_for_manual_records(
    district: District,
) -> None:
    d = district
    await d.ok("PATCH", f"/v1/organisations/{d.team}", body={"maker_checker": True})
    project = await d.project()
    member = await d.member()
    record = (await d.manual(project["id"], member["id"], MORNING, 60)).json()
    path = f"/v1/service-records/{record['id']}/approve"
    same = await d.call("POST", path, "team")
    assert same.status_code == 403 and problem_type(same) == "maker-checker"
    checked = await d.ok("POST", path, "team_checker")
    assert checked["approved_by"] == d.credentials["team_checker"]


async def test_a_rejected_record_is_never_credited(district: District) -> None:
    d = district
    project = await d.project()
    member = await d.member()
    record = (await d.manual(project["id"], member["id"], MORNING, 60)).json()
    rejected = await d.ok(
        "POST", f"/v1/service-records/{record['id']}/reject", "team", body={"reason": "无人证明"}
    )
    assert rejected["status"] == "rejected" and rejected["reject_reason"] == "无人证明"
    late = await d.call("POST", f"/v1/service-records/{record['id']}/approve", "team")
    assert late.status_code == 409 and problem_type(late) == "record-not-pending"
    assert await d.balance(member["hours"]) == 0


async def test_bulk_approval_answers_each_record(district: District) -> None:
    d = district
    project = await d.project()
    members = [await d.member() for _ in range(3)]
    ids = [
        (await d.manual(project["id"], m["id"], MORNING, 30 + i)).json()["id"]
        for i, m in enumerate(members)
    ]
    foreign_project = await d.project(who="other_team")
    stranger = await d.member(team="other_team")
    foreign = (
        await d.manual(foreign_project["id"], stranger["id"], MORNING, 30, who="other_team")
    ).json()["id"]
    out = await d.ok(
        "POST", "/v1/service-records/approve", "team", body={"record_ids": [*ids, foreign, ids[0]]}
    )
    assert out["approved"] == 3 and out["refused"] == 1
    assert [r["status"] for r in out["results"]] == [200, 200, 200, 404]
    assert [await d.balance(m["hours"]) for m in members] == [30, 31, 32]


async def test_service_credit_is_posted_only_by_approving_a_record(district: District) -> None:
    d = district
    member = await d.member()
    legs = [
        {"account_id": d.team_issuance, "amount": -60},
        {"account_id": member["hours"], "amount": 60},
    ]
    r = await d.call(
        "POST",
        f"/v1/books/{d.book}/transactions",
        "admin",
        body={"kind": "service_credit", "legs": legs},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "kind"


async def test_a_need_with_personal_data_is_refused(district: District) -> None:
    d = district
    r = await d.call(
        "POST",
        "/v1/needs",
        "station",
        body={
            "book": d.book,
            "category": "elder_care",
            "target_group": "disabled",
            "description": "王大爷 电话13812345678 需要送餐",
        },
    )
    assert r.status_code == 422 and problem_type(r) == "personal-data-in-text"
    team = await d.call(
        "POST",
        "/v1/needs",
        "team",
        body={
            "book": d.book,
            "category": "elder_care",
            "target_group": "disabled",
            "description": "送餐",
        },
    )
    assert team.status_code == 403  # a volunteer team does not register needs


async def test_an_open_checkin_can_be_rejected_or_withdrawn(district: District) -> None:
    d = district
    project = await d.project()
    member = await d.member()
    mine = {"member": member["id"]}
    await d.ok("POST", f"/v1/projects/{project['id']}/signups", "mini", **mine)
    d.at(MORNING)
    path = f"/v1/projects/{project['id']}/checkin"
    first = await d.ok("POST", path, "mini", body={"code": await d.code(project["id"])}, **mine)
    rejected = await d.ok(
        "POST", f"/v1/service-records/{first['id']}/reject", "team", body={"reason": "未到岗"}
    )
    assert rejected["status"] == "rejected" and rejected["ended_at"] is None
    second = await d.ok("POST", path, "mini", body={"code": await d.code(project["id"])}, **mine)
    assert second["id"] != first["id"]
    withdrawn = await d.ok("POST", f"/v1/service-records/{second['id']}/cancel", "mini", **mine)
    assert withdrawn["status"] == "rejected"
    code = await d.code(project["id"])
    late = await d.call(
        "POST", f"/v1/service-records/{second['id']}/checkout", "mini", body={"code": code}, **mine
    )
    assert late.status_code == 409 and problem_type(late) == "record-not-pending"


def test_an_unknown_service_time_zone_is_refused_at_start() -> None:
    from pydantic import ValidationError

    from app.config import Settings

    with pytest.raises(ValidationError, match="unknown time zone"):
        Settings(service_timezone="Mars/Olympus_Mons")
    assert Settings(service_timezone="Asia/Urumqi").service_timezone == "Asia/Urumqi"
