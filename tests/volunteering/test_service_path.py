"""From a resident's need to credited hours, through the API as the station, the organisation
and the mini-program call it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import Api
from tests.volunteering.district import MORNING, District, build_district


@pytest.fixture
async def district(api: Api) -> District:
    return await build_district(api)


async def test_need_to_project_to_checkin_to_approved_hours(district: District) -> None:
    d = district
    need = await d.ok(
        "POST",
        "/v1/needs",
        "station",
        body={
            "book": d.book,
            "community_id": d.community,
            "category": "elder_care",
            "target_group": "empty_nest_elderly",
            "description": "独居老人每周需要陪伴聊天和代购",
            "urgency": "urgent",
        },
    )
    assert need["status"] == "open" and need["organisation_id"] == d.station
    unmet = await d.ok("GET", f"/v1/needs?unmet=true&book={d.book}", "team")
    assert [n["id"] for n in unmet["items"]] == [need["id"]]

    project = await d.project(need_ids=[need["id"]])
    assert project["organisation_id"] == d.team and project["need_ids"] == [need["id"]]
    assert (await d.ok("GET", f"/v1/needs/{need['id']}", "mini"))["status"] == "matched"
    assert (await d.ok("GET", f"/v1/needs?unmet=true&book={d.book}", "team"))["items"] == []

    member = await d.member()
    mine = {"member": member["id"]}
    signup = await d.call("POST", f"/v1/projects/{project['id']}/signups", "mini", **mine)
    assert signup.status_code == 201, signup.text
    again = await d.call("POST", f"/v1/projects/{project['id']}/signups", "mini", **mine)
    assert again.status_code == 200
    assert (await d.ok("GET", f"/v1/projects/{project['id']}", "mini"))["signed_up"] == 1

    # Ten minutes before the start: checked in, but the time before 09:00 is not credited.
    d.at(MORNING - timedelta(minutes=10))
    code = await d.code(project["id"])
    checkin = await d.call(
        "POST", f"/v1/projects/{project['id']}/checkin", "mini", body={"code": code}, **mine
    )
    assert checkin.status_code == 201, checkin.text
    record = checkin.json()
    assert record["status"] == "open" and record["evidence"] == "checkin"
    repeat = await d.call(
        "POST", f"/v1/projects/{project['id']}/checkin", "mini", body={"code": code}, **mine
    )
    assert repeat.status_code == 200 and repeat.json()["id"] == record["id"]

    d.at(MORNING + timedelta(hours=2, minutes=10))
    code = await d.code(project["id"])
    out = await d.ok(
        "POST", f"/v1/service-records/{record['id']}/checkout", "mini", body={"code": code}, **mine
    )
    assert out["status"] == "pending" and out["credited_minutes"] == 130
    assert out["service_day"] == "2026-11-20"
    assert await d.balance(member["hours"]) == 0  # nothing is credited before approval

    approved = await d.ok("POST", f"/v1/service-records/{record['id']}/approve", "team")
    assert approved["status"] == "approved" and approved["approved_by"] == d.credentials["team"]
    assert await d.balance(member["hours"]) == 130
    assert await d.balance(d.team_issuance) == -130
    tx = await d.ok("GET", f"/v1/transactions/{approved['tx_id']}")
    assert tx["kind"] == "service_credit"
    assert tx["entry"]["meta"] == {
        "record": record["id"],
        "project": project["id"],
        "evidence": "checkin",
        "service_day": "2026-11-20",
        "actor": {"credential": d.credentials["team"]},
    }
    # Approving again answers the same record and posts nothing.
    twice = await d.ok("POST", f"/v1/service-records/{record['id']}/approve", "team")
    assert twice["tx_id"] == approved["tx_id"]
    assert await d.balance(member["hours"]) == 130

    detail = await d.ok("GET", f"/v1/service-records/{record['id']}", "auditor")
    assert [e["event"] for e in detail["events"]] == ["checked_in", "checked_out", "approved"]
    assert detail["events"][2]["actor"] == {"credential": d.credentials["team"]}
    history = await d.ok("GET", "/v1/service-records", "mini", **mine)
    assert [r["id"] for r in history["items"]] == [record["id"]]

    # The next project in the category finds this member as an experienced volunteer.
    d.at(MORNING + timedelta(days=1))
    later = await d.project(
        starts_at=(MORNING + timedelta(days=7)).isoformat(),
        ends_at=(MORNING + timedelta(days=7, hours=2)).isoformat(),
    )
    candidates = await d.ok("GET", f"/v1/projects/{later['id']}/candidates", "team")
    assert [c["member_id"] for c in candidates] == [member["id"]]
    assert candidates[0]["minutes"] == 130

    met = await d.ok("PATCH", f"/v1/needs/{need['id']}", "station", body={"status": "met"})
    assert met["status"] == "met"


async def test_a_disputed_record_is_answered_reversed_and_replaced(district: District) -> None:
    d = district
    project = await d.project()
    member = await d.member()
    mine = {"member": member["id"]}
    entered = await d.manual(project["id"], member["id"], MORNING, 60)
    assert entered.status_code == 201, entered.text
    record = entered.json()
    assert record["evidence"] == "manual" and record["attested_by"] == "陈站长"
    await d.ok("POST", f"/v1/service-records/{record['id']}/approve", "team")

    dispute = await d.ok(
        "POST",
        f"/v1/service-records/{record['id']}/disputes",
        "mini",
        body={"reason": "我服务了两个小时，不是一个小时"},
        **mine,
    )
    assert dispute["status"] == "open"
    open_for_team = await d.ok("GET", "/v1/service-disputes?status=open", "team")
    assert [x["id"] for x in open_for_team["items"]] == [dispute["id"]]

    # The approved record cannot be edited or rejected: it is reversed and replaced.
    refused = await d.call(
        "POST", f"/v1/service-records/{record['id']}/reject", "team", body={"reason": "错"}
    )
    assert refused.status_code == 409
    assert refused.json()["type"] == "urn:timebank:problem:record-not-pending"
    reversed_ = await d.ok(
        "POST", f"/v1/service-records/{record['id']}/reverse", "team", body={"reason": "时长录错"}
    )
    assert reversed_["status"] == "reversed" and reversed_["reversal_tx_id"]
    assert await d.balance(member["hours"]) == 0
    fixed = await d.manual(
        project["id"], member["id"], MORNING, 120, corrects_record_id=record["id"]
    )
    assert fixed.status_code == 201, fixed.text
    await d.ok("POST", f"/v1/service-records/{fixed.json()['id']}/approve", "team_checker")
    assert await d.balance(member["hours"]) == 120

    answered = await d.ok(
        "POST",
        f"/v1/service-disputes/{dispute['id']}/answer",
        "team",
        body={
            "outcome": "upheld",
            "answer": "已核实并更正",
            "corrected_record_id": fixed.json()["id"],
        },
    )
    assert answered["status"] == "upheld" and answered["answered_by"] == d.credentials["team"]
    detail = await d.ok("GET", f"/v1/service-records/{record['id']}", "auditor")
    assert [e["event"] for e in detail["events"]] == [
        "entered",
        "approved",
        "disputed",
        "reversed",
        "dispute_answered",
    ]
    assert detail["disputes"][0]["answer"] == "已核实并更正"
    again = await d.call(
        "POST",
        f"/v1/service-disputes/{dispute['id']}/answer",
        "team",
        body={"outcome": "dismissed", "answer": "改主意"},
    )
    assert again.status_code == 409


async def test_the_organisation_records_service_of_whoever_signed_up_for_its_project(
    district: District,
) -> None:
    d = district
    project = await d.project()
    # Registered by the platform, enrolled in no organisation: the team cannot see them.
    body = {
        "book": d.book,
        "display_name": "王新人",
        "phone": "13912340001",
        "birth_date": "1990-01-01",
        "identity": {"provider": "wechat", "subject": "o_newcomer"},
    }
    newcomer = await d.ok("POST", "/v1/members", "admin", body=body)
    stranger = await d.ok(
        "POST",
        "/v1/members",
        "admin",
        body=body
        | {"phone": "13912340002", "identity": {"provider": "wechat", "subject": "o_stranger"}},
    )
    assert (await d.call("GET", f"/v1/members/{newcomer['id']}", "team")).status_code == 404
    signup = await d.call(
        "POST", f"/v1/projects/{project['id']}/signups", "mini", member=newcomer["id"]
    )
    assert signup.status_code == 201, signup.text
    # Signing up is their consent to be recorded in this project.
    recorded = await d.manual(project["id"], newcomer["id"], MORNING, 60)
    assert recorded.status_code == 201, recorded.text
    # Anyone else is refused with what is likely wrong, whether or not they exist.
    refused = await d.manual(project["id"], stranger["id"], MORNING, 60)
    assert refused.status_code == 404 and "not enrolled" in refused.json()["detail"]
    assert refused.json()["type"] == "urn:timebank:problem:member-not-found"
