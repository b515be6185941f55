"""Bulk import of historical records: a dry run reports every row; the real run is idempotent
on the external id."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api
from tests.volunteering.district import District, build_district


@pytest.fixture
async def district(api: Api) -> District:
    return await build_district(api)


HEADER = "external_id,volunteer_number,project_id,started_at,ended_at,attested_by\n"


async def send(d: District, csv_text: str, dry_run: bool, who: str = "team") -> Any:
    return await d.api.client.post(
        f"/v1/service-records/import?dry_run={'true' if dry_run else 'false'}",
        content=csv_text.encode(),
        headers={"Authorization": f"Bearer {d.tokens[who]}", "Content-Type": "text/csv"},
    )


async def test_dry_run_reports_every_row_and_records_nothing(district: District) -> None:
    d = district
    project = await d.project()
    member = await d.member()
    number, pid = member["volunteer_number"], project["id"]
    rows = [
        f"h-1,{number},{pid},2026-11-20T09:00:00+08:00,2026-11-20T10:00:00+08:00,陈站长",
        # Overlaps the row above: the rules see the rows of the file in order.
        f"h-2,{number},{pid},2026-11-20 09:30,2026-11-20 10:30,陈站长",
        f"h-3,NOSUCH,{pid},2026-11-20T11:00:00+08:00,2026-11-20T11:30:00+08:00,陈站长",
        f"h-4,{number},not-a-uuid,yesterday,2026-11-20T11:30:00+08:00,陈站长",
        f"h-5,{number},{pid},2026-11-20T11:00:00+08:00,2026-11-20T11:30:00+08:00,",
        f"h-1,{number},{pid},2026-11-20T11:00:00+08:00,2026-11-20T11:30:00+08:00,陈站长",
        f"h-6,{number},{pid},2026-11-20T11:00:00+08:00,2026-11-20T11:45:00+08:00,陈站长",
    ]
    r = await send(d, HEADER + "\n".join(rows) + "\n", dry_run=True)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["dry_run"] is True and report["rows"] == 7
    assert report["accepted"] == 2 and report["refused"] == 5
    by_row = {p["row"]: p["problems"] for p in report["problems"]}
    assert sorted(by_row) == [2, 3, 4, 5, 6]
    assert by_row[2][0]["code"] == "urn:timebank:problem:overlapping-service"
    assert by_row[3][0]["field"] == "volunteer_number"
    assert {p["field"] for p in by_row[4]} == {"project_id", "started_at"}
    assert by_row[5][0]["field"] == "attested_by"
    assert by_row[6][0]["code"] == "duplicate"
    listed = await d.ok("GET", "/v1/service-records", "team")
    assert listed["items"] == []


async def test_the_real_run_is_idempotent_on_the_external_id(district: District) -> None:
    d = district
    project = await d.project()
    members = [await d.member() for _ in range(3)]
    rows = [
        f"old-{i},{m['volunteer_number']},{project['id']},"
        f"2026-11-20T09:00:00+08:00,2026-11-20T10:{i}0:00+08:00,王老师"
        for i, m in enumerate(members, start=1)
    ]
    body = HEADER + "\n".join(rows) + "\n"
    first = (await send(d, body, dry_run=False)).json()
    assert first["accepted"] == 3 and first["refused"] == 0
    again = (await send(d, body, dry_run=False)).json()
    assert again["accepted"] == 0 and again["already_imported"] == 3
    assert again["record_ids"] == first["record_ids"]
    listed = await d.ok("GET", "/v1/service-records?status=pending", "team")
    assert len(listed["items"]) == 3
    assert {r["source"] for r in listed["items"]} == {"import"}
    assert sorted(r["credited_minutes"] for r in listed["items"]) == [70, 80, 90]


async def test_import_is_refused_for_other_organisations_and_bad_files(district: District) -> None:
    d = district
    project = await d.project()
    member = await d.member()
    row = (
        f"x-1,{member['volunteer_number']},{project['id']},"
        "2026-11-20T09:00:00+08:00,2026-11-20T10:00:00+08:00,王老师\n"
    )
    foreign = (await send(d, HEADER + row, dry_run=False, who="other_team")).json()
    assert foreign["refused"] == 1
    assert foreign["problems"][0]["problems"][0]["code"] == "urn:timebank:problem:forbidden"
    headless = await send(d, "a,b\n1,2\n", dry_run=True)
    assert headless.status_code == 422
    assert headless.headers["content-type"] == "application/problem+json"
    binary = await send(d, "\xff\xfe".encode("latin-1").decode("latin-1") + "x", dry_run=True)
    assert binary.status_code == 422
    reader = await send(d, HEADER + row, dry_run=True, who="auditor")
    assert reader.status_code == 403


async def test_a_volunteer_number_out_of_reach_reads_as_unknown(district: District) -> None:
    """Another team's import finds nothing of a member it does not reach, not even their id."""
    d = district
    project = await d.project(who="other_team")
    member = await d.member()
    rows = [
        f"x-1,{member['volunteer_number']},{project['id']},2026-11-20 09:00,2026-11-20 10:00,王",
        f"x-2,NOSUCH,{project['id']},2026-11-20 11:00,2026-11-20 12:00,王",
    ]
    r = await send(d, HEADER + "\n".join(rows) + "\n", dry_run=True, who="other_team")
    assert r.status_code == 200, r.text
    problems = [p["problems"] for p in r.json()["problems"]]
    assert len(problems) == 2 and problems[0] == problems[1]
    assert problems[0][0]["field"] == "volunteer_number"
    assert member["id"] not in r.text
