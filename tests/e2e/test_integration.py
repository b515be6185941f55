"""docs/integration.md, run as written: its TypeScript blocks (compiled by the client's pinned
compiler in strict mode, then run by Node.js) and its Python blocks, each journey a separate
process calling a live service on a real port, as a mini-program backend would. The test
plays the organisation between the steps (the check-in QR code, the approval) and moves the
service's clock, so that a check-out comes two hours after its check-in."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Api
from tests.e2e.serving import serving
from tests.exchange.market import build_market
from tests.node import CLIENT, ROOT, require_node, run_tool
from tests.volunteering.district import MORNING

pytestmark = pytest.mark.slow

GUIDE = ROOT / "docs" / "integration.md"
PROBLEM = "urn:timebank:problem:"
# The journeys' steps, by their TypeScript names (the Python functions are the same in
# snake_case).
STEPS = (
    "register",
    "signUp",
    "checkIn",
    "checkOut",
    "moveHours",
    "balances",
    "history",
    "redeemCode",
    "tryCheckIn",
)
TS_RUNNER = f"""
// Appended by the test: run one step, named on the command line, and print its answer.
const steps = {{ {", ".join(STEPS)} }} as unknown as Record<
  string,
  (...args: unknown[]) => Promise<unknown>
>;
const step = steps[process.argv[2] ?? ""];
if (step === undefined) {{
  throw new Error(`no step ${{process.argv[2]}}`);
}}
const args = JSON.parse(process.argv[3] ?? "[]") as unknown[];
console.log(JSON.stringify(await step(...args)));
"""
PY_RUNNER = """
# Appended by the test: run one step, named on the command line, and print its answer.
if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(globals()[sys.argv[1]](*json.loads(sys.argv[2]))))
"""

Step = Callable[..., Awaitable[Any]]


def blocks(language: str) -> list[str]:
    """The guide's blocks of one language, in order."""
    return re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(), re.S)


def snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def test_the_guide_has_every_journey_in_both_languages() -> None:
    ts, py = "\n".join(blocks("ts")), "\n".join(blocks("python"))
    for name in STEPS:
        assert f"export async function {name}(" in ts, name
        assert f"def {snake(name)}(" in py, name


def build_typescript(work: Path) -> list[str]:
    """The client built as the package `@timebank/client` and the guide's blocks compiled
    against it; the command that runs the compiled journeys."""
    tools = require_node()
    package = work / "node_modules" / "@timebank" / "client"
    run_tool([str(tools / "tsc"), "-p", "tsconfig.json", "--outDir", str(package / "dist")])
    shutil.copy(CLIENT / "package.json", package / "package.json")
    (work / "node_modules" / "openapi-fetch").symlink_to(CLIENT / "node_modules" / "openapi-fetch")
    (work / "package.json").write_text('{"type": "module"}\n')
    config = {
        "compilerOptions": {
            "target": "ES2022",
            "module": "NodeNext",
            "moduleResolution": "NodeNext",
            "strict": True,
            "noUncheckedIndexedAccess": True,
            "types": ["node"],
            "typeRoots": [str(CLIENT / "node_modules" / "@types")],
            "outDir": "out",
        },
        "files": ["journeys.ts"],
    }
    (work / "tsconfig.json").write_text(json.dumps(config))
    (work / "journeys.ts").write_text("\n".join(blocks("ts")) + TS_RUNNER)
    run_tool([str(tools / "tsc"), "-p", "tsconfig.json"], cwd=work)
    return ["node", str(work / "out" / "journeys.js")]


def build_python(work: Path) -> list[str]:
    """The guide's Python blocks as one script; the command that runs it."""
    (work / "journeys.py").write_text("\n".join(blocks("python")) + PY_RUNNER)
    return [sys.executable, str(work / "journeys.py")]


def stepper(command: list[str], language: str, env: dict[str, str]) -> Step:
    """Run one step of the journeys as its own process; its printed answer."""

    async def step(name: str, *args: Any) -> Any:
        program = name if language == "ts" else snake(name)
        process = await asyncio.create_subprocess_exec(
            *command,
            program,
            json.dumps(args),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            out, err = await process.communicate()
        assert process.returncode == 0, f"{name}{args}: {out.decode()}{err.decode()}"
        return json.loads(out)

    return step


@pytest.mark.parametrize("language", ["ts", "python"])
async def test_the_journeys_run_as_written(api: Api, tmp_path: Path, language: str) -> None:
    command = build_typescript(tmp_path) if language == "ts" else build_python(tmp_path)
    m = await build_market(api)
    a = m.book
    project = await m.project(title="社区助老")
    team = (await m.ok("GET", f"/v1/organisations/{m.team}"))["name"]
    b = await api.book()
    agreement = await m.ok(
        "POST",
        "/v1/recognition/agreements",
        "platform",
        body={"from_book": a, "to_book": b, "ratio_num": 9, "ratio_den": 10},
    )
    site = await m.organisation("kiosk_site")
    body = {"role": "kiosk", "book": a, "organisation_id": site["id"]}
    m.tokens["kiosk"] = (await m.ok("POST", "/v1/credentials", body=body))["token"]

    async with serving(api.app) as base:
        env = {"PATH": "/usr/bin:/bin", "TIMEBANK_URL": base, "TIMEBANK_TOKEN": m.tokens["mini"]}
        run = stepper(command, language, env)

        # 1-2. Registered by the mini-program, and signed up for the project.
        m.at(MORNING + timedelta(minutes=5))
        phone = f"139{uuid.uuid4().int % 10**8:08d}"
        openid = f"o_{uuid.uuid4().hex}"
        member = await run("register", a, openid, "王小明", phone, "1990-04-01")
        assert (member["book"], member["status"]) == (a, "active")
        signup = await run("signUp", member["id"], project["id"])
        assert (signup["member_id"], signup["status"]) == (member["id"], "active")

        # 3. A forged code is refused by type; the code on the site's screen checks in, and
        # the one shown two hours later checks out: 115 minutes, waiting for approval.
        refused = await run("tryCheckIn", member["id"], project["id"], "not-a-code")
        assert refused == PROBLEM + "invalid-checkin-code"
        record = await run("checkIn", member["id"], project["id"], await m.code(project["id"]))
        assert (record["status"], record["member_id"]) == ("open", member["id"])
        m.at(MORNING + timedelta(hours=2))
        done = await run("checkOut", member["id"], record["id"], await m.code(project["id"]))
        assert (done["status"], done["credited_minutes"]) == ("pending", 115)
        await m.ok("POST", f"/v1/service-records/{record['id']}/approve", "team")

        # 4. Thirty minutes move to book B, once, although the request is sent twice.
        key = uuid.uuid4().hex
        moved = await run("moveHours", member["id"], agreement["id"], 30, key)
        again = await run("moveHours", member["id"], agreement["id"], 30, key)
        assert again["id"] == moved["id"] and (moved["from_amount"], moved["to_amount"]) == (30, 27)

        # 5. Balances in both books, and each book's history in words.
        found = await run("balances", member["id"])
        held = {(x["book"], x["asset"]): x["posted"] for x in found["balances"] if x["posted"]}
        assert held == {(a, "HOUR"): 85, (b, "HOUR"): 27}
        there = await run("history", member["id"], b)
        assert [line["about"]["label"] for line in there["items"]] == [f"通存通兑：从账本 {a} 转入"]
        home = await run("history", member["id"])
        assert [line["about"]["label"] for line in home["items"]] == [
            f"通存通兑：转出到账本 {b}",
            f"志愿服务：社区助老（{team}）",
        ]

        # 6. A redeem code that the kiosk recognises as the member's.
        code = await run("redeemCode", member["id"])
        assert code["member_id"] == member["id"]
    checked = await m.ok("POST", "/v1/kiosk/code-checks", "kiosk", body={"code": code["code"]})
    assert checked["member_id"] == member["id"]
