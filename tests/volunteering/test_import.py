"""Bulk import of historical records: a dry run reports every row; the real run is idempotent
on the external id."""

from __future__ import annotations

import re
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
    # Rows are named by their lines: the header is line 1, h-1 line 2.
    by_row = {p["row"]: p["problems"] for p in report["problems"]}
    assert sorted(by_row) == [3, 4, 5, 6, 7]
    assert by_row[3][0]["code"] == "urn:timebank:problem:overlapping-service"
    assert by_row[4][0]["field"] == "volunteer_number"
    assert {p["field"] for p in by_row[5]} == {"project_id", "started_at"}
    assert by_row[6][0]["field"] == "attested_by"
    assert by_row[7][0]["code"] == "duplicate"
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


UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


async def test_a_dry_run_names_no_record_it_did_not_keep(district: District) -> None:
    d = district
    project = await d.project()
    member = await d.member()
    number, pid = member["volunteer_number"], project["id"]
    kept = f"k-1,{number},{pid},2026-11-20 09:00,2026-11-20 09:30,王老师\n"
    first = (await send(d, HEADER + kept, dry_run=False)).json()
    [kept_id] = first["record_ids"]
    rows = [
        kept.strip(),
        f"k-2,{number},{pid},2026-11-20 10:00,2026-11-20 11:00,王老师",
        # Overlaps k-2, which the dry run made and then dropped: named by its line.
        f"k-3,{number},{pid},2026-11-20 10:30,2026-11-20 11:30,王老师",
    ]
    r = await send(d, HEADER + "\n".join(rows) + "\n", dry_run=True)
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["accepted"], report["already_imported"], report["refused"]) == (1, 1, 1)
    assert report["record_ids"] == [kept_id]
    assert report["recorded"] == [
        {"row": 2, "external_id": "k-1", "status": "already_imported", "record_id": kept_id},
        {"row": 3, "external_id": "k-2", "status": "accepted", "record_id": None},
    ]
    [refused] = report["problems"]
    assert refused["row"] == 4
    [problem] = refused["problems"]
    assert problem["code"] == "urn:timebank:problem:overlapping-service"
    assert "line 3 of this file (external_id k-2)" in problem["message"]
    # The only ids in the answer are of things that exist.
    assert set(UUID_RE.findall(r.text)) == {kept_id}
    listed = await d.ok("GET", "/v1/service-records", "team")
    assert [item["id"] for item in listed["items"]] == [kept_id]
    # The real run records what the dry run said, under ids of its own.
    real = (await send(d, HEADER + "\n".join(rows) + "\n", dry_run=False)).json()
    assert [(x["row"], x["status"]) for x in real["recorded"]] == [
        (2, "already_imported"),
        (3, "accepted"),
    ]
    assert real["recorded"][1]["record_id"] == real["record_ids"][1] != kept_id


async def test_rows_are_named_by_the_lines_a_spreadsheet_shows(district: District) -> None:
    d = district
    project = await d.project()
    number, pid = (await d.member())["volunteer_number"], project["id"]
    body = (
        HEADER
        + f"l-1,{number},{pid},2026-11-20 09:00,2026-11-20 09:30,王老师\n"  # line 2
        + f'l-2,{number},not-a-uuid,2026-11-20 10:00,2026-11-20 10:30,"王\n老师"\n'  # 3 and 4
        + "\n"  # line 5: empty, not a row
        + ",,,,,\n"  # line 6: a row of empty cells a spreadsheet left behind
        + f"l-3,{number},{pid},2026-11-20 11:00,2026-11-20 10:30,王老师\r\n"  # line 7
    )
    report = (await send(d, body, dry_run=True)).json()
    assert report["rows"] == 3 and report["accepted"] == 1
    assert report["recorded"][0]["row"] == 2
    assert [(p["row"], p["external_id"]) for p in report["problems"]] == [(3, "l-2"), (7, "l-3")]


async def test_a_short_row_is_reported_as_short(district: District) -> None:
    d = district
    project = await d.project()
    number, pid = (await d.member())["volunteer_number"], project["id"]
    rows = [
        f"s-1,{number},{pid},2026-11-20 09:00",
        f"s-2,{number},{pid},2026-11-20 10:00,2026-11-20 10:30,王,老师",
        f"s-3,{number},{pid},2026-11-20 11:00,2026-11-20 11:30,王老师,,",  # empty extra cells
    ]
    report = (await send(d, HEADER + "\n".join(rows) + "\n", dry_run=True)).json()
    assert report["accepted"] == 1
    short, wide = (p["problems"] for p in report["problems"])
    assert short == [
        {
            "field": "row",
            "message": "the row has 4 columns, the header 6: ended_at, attested_by missing "
            "(a value with a comma needs double quotes)",
            "code": "missing_columns",
        }
    ]
    assert wide[0]["field"] == "row" and wide[0]["code"] == "extra_columns"
    assert "the row has 7 columns, the header 6" in wide[0]["message"]


async def test_messages_name_the_columns_as_the_header_does(district: District) -> None:
    d = district
    project = await d.project()
    number, pid = (await d.member())["volunteer_number"], project["id"]
    header = "External_ID, Volunteer_Number,Project_ID,Started_At,Ended_At,Attested_By,备注\n"
    rows = [
        f"m-1,{number},{pid},3100-11-20 09:00,3100-11-20 10:00,王老师,",
        f"m-2,{number},{pid},2026-11-20 09:00,2026-11-20 10:00,{'王' * 101},",
        f"m-3,{number},{pid},yesterday,2026-11-20 10:00,王老师,",
        f",{number},{pid},2026-11-20 11:00,2026-11-20 11:30,王老师,",
    ]
    r = await send(d, header + "\n".join(rows) + "\n", dry_run=True)
    assert r.status_code == 200, r.text
    assert "Value error" not in r.text and "Assertion failed" not in r.text
    problems = {p["external_id"]: p["problems"] for p in r.json()["problems"]}
    assert {p["field"] for p in problems["m-1"]} == {"Started_At", "Ended_At"}
    assert all(p["message"].startswith("the instant must be between") for p in problems["m-1"])
    assert [(p["field"], p["code"]) for p in problems["m-2"]] == [
        ("Attested_By", "string_too_long")
    ]
    assert [p["field"] for p in problems["m-3"]] == ["Started_At"]
    assert problems["m-3"][0]["message"].startswith("'yesterday' is not a date and time")
    assert [(p["field"], p["code"]) for p in problems[None]] == [("External_ID", "missing")]


async def test_times_in_messages_are_in_the_service_time_zone(district: District) -> None:
    """The project runs 09:00 to 12:00 in Shanghai (01:00 to 04:00 UTC)."""
    d = district
    project = await d.project()
    number, pid = (await d.member())["volunteer_number"], project["id"]
    rows = [
        f"t-1,{number},{pid},2026-11-20 13:00,2026-11-20 14:00,王老师",
        f"t-2,{number},{pid},2026-11-20T03:00:00Z,2026-11-20T02:00:00Z,王老师",
    ]
    report = (await send(d, HEADER + "\n".join(rows) + "\n", dry_run=True)).json()
    window, order = (p["problems"][0] for p in report["problems"])
    assert window["code"] == "urn:timebank:problem:outside-window"
    assert window["message"] == (
        "the service lies outside the activity's window "
        "(2026-11-20 09:00 to 2026-11-20 12:00, Asia/Shanghai)"
    )
    assert order == {
        "field": "ended_at",
        "message": "ended_at (2026-11-20 10:00) is not after started_at (2026-11-20 11:00), "
        "Asia/Shanghai",
        "code": "order",
    }


async def test_far_dates_are_problems_of_their_column_not_errors(district: District) -> None:
    """Near year 1 or 9999 a time cannot even be shown in local time: 1900-2999 only."""
    d = district
    project = await d.project()
    number, pid = (await d.member())["volunteer_number"], project["id"]
    rows = [
        f"f-1,{number},{pid},2026-11-20 09:00,0001-01-01T00:00+14:00,王老师",
        f"f-2,{number},{pid},9999-12-31T23:59-12:00,2026-11-20 10:00,王老师",
        f"f-3,{number},{pid},1899-12-31 23:00,2026-11-20 10:00,王老师",
    ]
    answer = await send(d, HEADER + "\n".join(rows) + "\n", dry_run=True)
    assert answer.status_code == 200, answer.text
    found = [
        (p["problems"][0]["field"], p["problems"][0]["code"]) for p in answer.json()["problems"]
    ]
    assert found == [
        ("ended_at", "datetime_out_of_range"),
        ("started_at", "datetime_out_of_range"),
        ("started_at", "datetime_out_of_range"),
    ]


async def test_a_gbk_file_is_read_with_a_warning(district: District) -> None:
    d = district
    project = await d.project()
    number, pid = (await d.member())["volunteer_number"], project["id"]
    text = HEADER + f"g-1,{number},{pid},2026/11/20 9:00,2026/11/20 10:00,陈站长\n"
    body = text.encode("gbk")
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")

    async def post(payload: bytes, dry_run: bool) -> Any:
        return await d.api.client.post(
            f"/v1/service-records/import?dry_run={str(dry_run).lower()}",
            content=payload,
            headers={"Authorization": f"Bearer {d.tokens['team']}", "Content-Type": "text/csv"},
        )

    report = (await post(body, dry_run=False)).json()
    assert report["accepted"] == 1, report
    [warning] = report["warnings"]
    assert warning["code"] == "encoding_gb18030"
    assert "GB18030" in warning["message"] and '"CSV UTF-8 (逗号分隔)"' in warning["message"]
    record = await d.ok("GET", f"/v1/service-records/{report['record_ids'][0]}", "team")
    assert record["attested_by"] == "陈站长"
    assert record["started_at"].startswith("2026-11-20T01:00:00")
    assert (await send(d, text, dry_run=True)).json()["warnings"] == []

    neither = await post(HEADER.encode() + b"\xff\xfebroken\n", dry_run=True)
    assert neither.status_code == 422
    assert neither.headers["content-type"] == "application/problem+json"
    assert 'save it as "CSV UTF-8 (逗号分隔)"' in neither.json()["detail"]


async def test_volunteer_numbers_match_without_case_or_spaces(district: District) -> None:
    d = district
    project = await d.project()
    number, pid = (await d.member())["volunteer_number"], project["id"]
    wide = "".join(chr(ord(c) + 0xFEE0) for c in number)  # typed with a Chinese input method
    rows = [
        f"v-1,  {number.lower()} ,{pid},2026-11-20 09:00,2026-11-20 09:30,王老师",
        f"v-2,{wide},{pid},2026-11-20 10:00,2026-11-20 10:30,王老师",
    ]
    report = (await send(d, HEADER + "\n".join(rows) + "\n", dry_run=True)).json()
    assert report["accepted"] == 2 and report["problems"] == []
