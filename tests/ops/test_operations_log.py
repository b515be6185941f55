"""The operations log as an operator reads it: `timebank serve --workers 2` at the default log
level, its stderr in a file, one `http.request` line per request with the documented fields
and the response's request id, authentication failures, and nothing secret or personal."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from app.http.middleware import request_id
from tests.conftest import Api
from tests.e2e.test_outages import assert_json_lines
from tests.e2e.test_two_servers import TIMEBANK, admin_token, free_port, wait_ready
from tests.identity.world import resident_id
from tests.volunteering.district import MORNING, build_district

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
# docs/operations.md, "The request line": every field of `http.request`.
REQUEST_FIELDS = {
    "event",
    "level",
    "timestamp",
    "method",
    "route",
    "status",
    "duration_ms",
    "credential_id",
    "request_id",
}
NAME = "柳如烟"
PHONE = "13900007777"
RESIDENT_ID = resident_id("11010519491231002")


@dataclass
class Served:
    """A running `timebank serve`, its base URL, its stderr and an admin's token."""

    process: subprocess.Popen[bytes]
    base: str
    log: Path
    token: str

    def stop(self) -> list[dict[str, Any]]:
        """Stop the server and return its stderr's lines (each checked to be JSON)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return assert_json_lines(self.log)


@pytest.fixture
async def served(cli_env: dict[str, str], tmp_path: Path) -> AsyncIterator[Served]:
    env = {**cli_env, "TIMEBANK_DATA_DIR": str(tmp_path / "var")}
    env.pop("TIMEBANK_LOG_LEVEL")  # the default level is the one operators get
    token = await admin_token(env)
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 - Popen starts it and returns
            [TIMEBANK, "serve", "--port", str(port), "--workers", "2"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Served(process, f"http://127.0.0.1:{port}", log, token)
    try:
        await wait_ready(server.base, process)
        yield server
    finally:
        server.stop()


def lines_of(records: list[dict[str, Any]], rid: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("request_id") == rid]


def the_request_line(records: list[dict[str, Any]], rid: str) -> dict[str, Any]:
    found = [r for r in lines_of(records, rid) if r["event"] == "http.request"]
    assert len(found) == 1, found  # one line per request, whichever worker served it
    return found[0]


async def test_a_request_and_its_refusals_are_logged_with_their_id_and_nothing_secret(
    served: Served,
) -> None:
    admin = {"Authorization": f"Bearer {served.token}"}
    wrong_token = "tbk_" + uuid.uuid4().hex + uuid.uuid4().hex[:11]
    async with httpx.AsyncClient(base_url=served.base, headers=admin, timeout=30) as client:
        book = await client.post("/v1/books", json={"code": "ops", "name": "运维"})
        assert book.status_code == 201, book.text
        member_body = {
            "book": "ops",
            "display_name": NAME,
            "phone": PHONE,
            "resident_id": RESIDENT_ID,
            "identity": {"provider": "wechat", "subject": f"o_{uuid.uuid4().hex}"},
        }
        created = await client.post("/v1/members", json=member_body)
        assert created.status_code == 201, created.text
        member_id = created.json()["id"]

        # The request: a search by phone number (the number is in the query string).
        found = await client.get(
            "/v1/members", params={"book": "ops", "q": PHONE}, headers={"X-Request-Id": "op-1"}
        )
        assert found.status_code == 200 and found.json()["items"][0]["id"] == member_id
        assert found.headers["X-Request-Id"] == "op-1"

        # A refusal about the member: a change with an invalid resident id and their name.
        refused = await client.patch(
            f"/v1/members/{member_id}",
            json={"display_name": NAME + "x", "resident_id": "1101051949123100201"},
        )
        assert refused.status_code == 422, refused.text
        refused_id = refused.headers["X-Request-Id"]
        assert re.fullmatch(r"[0-9a-f]{32}", refused_id)  # none sent: one was made

        # Authentication failures: a token of the service's format that is not valid, and
        # none at all (a request id that is not plain is replaced).
        unknown = await client.get(
            "/v1/members",
            params={"book": "ops", "q": NAME},
            headers={"Authorization": f"Bearer {wrong_token}", "X-Request-Id": "op-2"},
        )
        assert unknown.status_code == 401 and unknown.headers["X-Request-Id"] == "op-2"
        anonymous = await client.get(
            f"/v1/members/{member_id}",
            headers={"Authorization": "", "X-Request-Id": "bad id with spaces"},
        )
        assert anonymous.status_code == 401
        anonymous_id = anonymous.headers["X-Request-Id"]
        assert anonymous_id != "bad id with spaces"
        # No route at all: answered and logged too, with the request id.
        missing = await client.get(f"/v1/nothing-here/{PHONE}", headers={"X-Request-Id": "op-3"})
        assert missing.status_code == 404 and missing.headers["X-Request-Id"] == "op-3"
        # The log follower's lag, per book, for the alert docs/operations.md describes.
        exposition = (await client.get("/metrics")).text
        behind = re.search(r'^timebank_log_behind_entries\{book="ops"\} (\S+)$', exposition, re.M)
        assert behind is not None and 0 <= float(behind.group(1)) <= 1, exposition[-2000:]

    records = served.stop()
    text = served.log.read_text()

    line = the_request_line(records, "op-1")
    assert set(line) >= REQUEST_FIELDS, line
    assert line["level"] == "info" and line["method"] == "GET" and line["route"] == "/v1/members"
    assert line["status"] == 200 and isinstance(line["duration_ms"], float | int)
    assert line["credential_id"] is not None and "problem" not in line
    assert uuid.UUID(line["credential_id"])

    line = the_request_line(records, refused_id)
    assert set(line) >= REQUEST_FIELDS, line
    assert (line["route"], line["status"], line["problem"]) == (
        "/v1/members/{member_id}",
        422,
        "validation",
    )
    assert line["credential_id"] == the_request_line(records, "op-1")["credential_id"]

    line = the_request_line(records, "op-2")
    assert (line["status"], line["problem"], line["credential_id"]) == (401, "unauthorized", None)
    [failure] = [r for r in lines_of(records, "op-2") if r["event"] != "http.request"]
    assert failure["event"] == "identity.authentication_failed"
    assert failure["reason"] == "unknown_token" and failure["token_prefix"] == wrong_token[:8]

    line = the_request_line(records, anonymous_id)
    assert (line["status"], line["problem"]) == (401, "unauthorized")
    [failure] = [r for r in lines_of(records, anonymous_id) if r["event"] != "http.request"]
    assert (failure["event"], failure["reason"]) == ("identity.authentication_failed", "missing")

    line = the_request_line(records, "op-3")
    assert (line["route"], line["status"], line["problem"]) == ("unmatched", 404, "not-found")

    # Nothing secret, nothing personal, anywhere in the service's stderr.
    for secret in (served.token, wrong_token, served.token[8:16], wrong_token[8:16]):
        assert secret not in text
    for personal in (NAME, PHONE, RESIDENT_ID, "/v1/members/" + member_id):
        assert personal not in text
        assert json.dumps(personal) not in text


def test_a_callers_request_id_is_kept_only_when_plain() -> None:
    assert request_id({"x-request-id": "a.B_9:-z"}) == "a.B_9:-z"
    assert request_id({"x-request-id": "x" * 64}) == "x" * 64
    for bad in ("", "x" * 65, "a b", "ä", "a/b", "{}"):
        made = request_id({"x-request-id": bad})
        assert re.fullmatch(r"[0-9a-f]{32}", made), bad
    assert request_id({}) != request_id({})


async def test_every_line_the_server_writes_while_starting_and_serving_is_json(
    served: Served,
) -> None:
    async with httpx.AsyncClient(base_url=served.base, timeout=30) as client:
        assert (await client.get("/healthz")).status_code == 200
    records = served.stop()  # every line parsed as one JSON object
    events = [r["event"] for r in records]
    assert "serve.started" in events
    assert any(r["event"] == "http.request" and r["route"] == "/healthz" for r in records)
    # alembic's plugin set-up, once per process, is not an operator's business.
    assert not any(r.get("logger") == "alembic.runtime.plugins" for r in records)


def events_named(records: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [r for r in records if r["event"] == event]


async def test_credential_changes_sign_ins_and_imports_are_notable_events(served: Served) -> None:
    admin = {"Authorization": f"Bearer {served.token}"}
    async with httpx.AsyncClient(base_url=served.base, headers=admin, timeout=30) as client:
        assert (await client.post("/v1/books", json={"code": "ev", "name": "x"})).is_success

        async def act(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
            key = {"Idempotency-Key": str(uuid.uuid4())}
            answer = await client.post(path, json=body or {}, headers=key)
            assert answer.is_success, answer.text
            return dict(answer.json())

        spec = {"role": "auditor", "book": "ev", "name": NAME}
        granted = await act("/v1/credentials", spec)
        rotated = await act(f"/v1/credentials/{granted['id']}/rotate")
        await act(f"/v1/credentials/{granted['id']}/revoke")
        # The revoked credential's token, old or new, signs in to nothing.
        for token in (granted["token"], rotated["token"]):
            refused = await client.post("/v1/console/sessions", json={"token": token})
            assert refused.status_code == 401
        csv = (
            "external_id,volunteer_number,project_id,started_at,ended_at,attested_by\n"
            f"x-1,XH0000000001,{uuid.uuid4()},2025-05-01T09:00:00+08:00,"
            f"2025-05-01T11:00:00+08:00,{NAME}\n"
        )
        imported = await client.post(
            "/v1/service-records/import",
            content=csv.encode(),
            headers={"Content-Type": "text/csv", "X-Request-Id": "import-1"},
        )
        assert imported.status_code == 200 and imported.json()["refused"] == 1, imported.text

    records = served.stop()
    text = served.log.read_text()
    changes = [
        (r["event"], r["subject_id"], r["role"], r["book"])
        for r in records
        if r["event"].startswith("identity.credential_")
    ]
    assert changes == [
        (f"identity.credential_{what}", granted["id"], "auditor", "ev")
        for what in ("granted", "rotated", "revoked")
    ]
    admin_id = the_request_line(records, "import-1")["credential_id"]
    for change in records:
        if change["event"].startswith("identity.credential_"):
            assert change["by"] == change["credential_id"] == admin_id
    failures = events_named(records, "identity.authentication_failed")
    assert [(f["reason"], f["token_prefix"]) for f in failures] == [
        ("console_sign_in", granted["token"][:8]),
        ("console_sign_in", rotated["token"][:8]),
    ]
    [done] = events_named(records, "volunteering.import_done")
    assert (done["rows"], done["accepted"], done["refused"], done["dry_run"]) == (1, 0, 1, True)
    assert (done["request_id"], done["credential_id"]) == ("import-1", admin_id)
    for secret in (granted["token"], rotated["token"], NAME):
        assert secret not in text and json.dumps(secret) not in text


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TIMEBANK, *args], env=env, capture_output=True, text=True, timeout=120, check=True
    )


def test_expiry_runs_and_key_rotations_log_a_line_on_the_commands_stderr(
    cli_env: dict[str, str],
) -> None:
    env = {k: v for k, v in cli_env.items() if k != "TIMEBANK_LOG_LEVEL"}
    expired = run_cli(env, "expire", "--as-of", "2026-01-01", "--yes")
    assert json.loads(expired.stdout)["entries_posted"] == 0  # stdout stays the summary alone
    logged = [json.loads(line) for line in expired.stderr.splitlines() if line.startswith("{")]
    runs = [r for r in logged if r["event"] == "exchange.expiry_run"]
    # Told to post (--yes): one run, no plan computed first.
    assert [(r["as_of"], r["entries"], r["units_by_asset"], r["dry_run"]) for r in runs] == [
        ("2026-01-01", 0, {}, False),
    ]
    assert all("accounts_examined" in r and "accounts_unsettled" in r for r in runs)

    rotated = run_cli(env, "keys", "rotate", "--yes")
    kid = rotated.stdout.strip().splitlines()[-1]
    lines = [json.loads(line) for line in rotated.stderr.splitlines() if line.startswith("{")]
    assert lines
    [line] = [r for r in lines if r["event"] == "audit.key_rotated"]
    assert line["kid"] == kid and "previous_kid" in line and "valid_from" in line


def test_what_nobody_caught_is_logged_as_json_too() -> None:
    script = (
        "import threading\n"
        "from app.logging import configure_logging\n"
        "configure_logging()\n"
        "class Dropped:\n"
        "    def __del__(self): raise ValueError('in __del__')\n"
        "Dropped()\n"
        "thread = threading.Thread(target=lambda: 1 / 0)\n"
        "thread.start(); thread.join()\n"
        "raise RuntimeError('uncaught')\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 1
    lines = [json.loads(line) for line in ran.stderr.splitlines()]  # every line is JSON
    assert [(r["event"], r["level"]) for r in lines] == [
        ("process.unraisable_exception", "warning"),
        ("thread.uncaught_exception", "error"),
        ("process.uncaught_exception", "critical"),
    ]
    assert [r["exception"].splitlines()[-1] for r in lines] == [
        "ValueError: in __del__",
        "ZeroDivisionError: division by zero",
        "RuntimeError: uncaught",
    ]


async def test_approvals_maker_checker_refusals_and_kiosk_pairings_are_logged(
    served: Served,
) -> None:
    admin = {"Authorization": f"Bearer {served.token}"}
    async with httpx.AsyncClient(base_url=served.base, headers=admin, timeout=30) as client:
        # The volunteering tests' district, over HTTP (the server keeps its own clock).
        d = await build_district(
            Api(client, served.token, SimpleNamespace(state=SimpleNamespace()), "")
        )
        await d.ok("PATCH", f"/v1/organisations/{d.team}", body={"maker_checker": True})
        project = await d.project()
        member = await d.member()
        record = (await d.manual(project["id"], member["id"], MORNING, 60)).json()
        path = f"/v1/service-records/{record['id']}/approve"
        same = await d.call("POST", path, "team")
        assert same.status_code == 403
        approved = await d.ok("POST", path, "team_checker")
        # A kiosk paired with its site by a code the admin issued.
        site = (await d.organisation("kiosk_site"))["id"]
        issued = await d.call("POST", f"/v1/kiosk/sites/{site}/pairing-codes")
        assert issued.status_code == 201, issued.text
        code, code_request = issued.json(), issued.headers["X-Request-Id"]
        paired = await client.post("/v1/kiosk/pairings", json={"code": code["code"]})
        assert paired.status_code == 201, paired.text

    records = served.stop()
    [refused] = events_named(records, "volunteering.maker_checker_refused")
    assert (refused["record_id"], refused["organisation_id"], refused["credential_id"]) == (
        record["id"],
        d.team,
        d.credentials["team"],
    )
    assert the_request_line(records, refused["request_id"])["problem"] == "maker-checker"
    [line] = events_named(records, "volunteering.record_approved")
    assert line == line | {
        "record_id": record["id"],
        "tx_id": approved["tx_id"],
        "book": d.book,
        "organisation_id": d.team,
        "minutes": 60,
        "evidence": "manual",
        "entered_by": d.credentials["team"],
        "approved_by": d.credentials["team_checker"],
        "credential_id": d.credentials["team_checker"],
    }
    [pairing] = events_named(records, "kiosk.paired")
    assert pairing == pairing | {
        "kiosk_credential_id": paired.json()["id"],
        "site_id": site,
        "book": d.book,
        "credential_id": None,  # the code is the authority, not a token
    }
    assert pairing["by"] == the_request_line(records, code_request)["credential_id"]
