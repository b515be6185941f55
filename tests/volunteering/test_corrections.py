"""Correcting an approved record whose minutes were since spent (docs/volunteering.md §6.1):
what is still held is taken back, the rest owed by the member or written off by the
organisation, in one balanced entry; statistics, history, proofs and verifiers follow."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.audit.test_audit_export import audit_verify_here, export, saved_jwks, write
from tests.audit.test_export_verifier import TIMEBANK, VERIFIER, run
from tests.conftest import Api
from tests.volunteering.district import MORNING, District, build_district

PROBLEM = "urn:timebank:problem:"


@pytest.fixture
async def district(api: Api) -> District:
    return await build_district(api)


async def approved(d: District, member: dict[str, Any], minutes: int, day: int = 0) -> str:
    """A manual record of `minutes` on the morning `day` days after MORNING, approved."""
    project = await d.project(
        starts_at=(MORNING + timedelta(days=day)).isoformat(),
        ends_at=(MORNING + timedelta(days=day, hours=5)).isoformat(),
    )
    entered = await d.manual(project["id"], member["id"], MORNING + timedelta(days=day), minutes)
    assert entered.status_code == 201, entered.text
    record = entered.json()["id"]
    await d.ok("POST", f"/v1/service-records/{record}/approve", "team")
    return str(record)


async def spend(d: District, member: dict[str, Any], minutes: int) -> None:
    """The member gives `minutes` to the book's public time pool: they are spent."""
    body = {"member_id": member["id"], "amount": minutes}
    await d.ok("POST", f"/v1/books/{d.book}/public-pool/donations", "admin", body=body)


async def purpose_account(d: District, owner: str, purpose: str) -> tuple[str, int] | None:
    async with d.api.app.state.sessions() as session:
        row = (
            await session.execute(
                text(
                    "SELECT id::text AS id, posted FROM accounts WHERE book_code = :b "
                    "AND owner = :o AND meta ->> 'purpose' = :p"
                ),
                {"b": d.book, "o": owner, "p": purpose},
            )
        ).one_or_none()
    return None if row is None else (row.id, int(row.posted))


async def kinds(d: District) -> list[str]:
    async with d.api.app.state.sessions() as session:
        rows = await session.execute(
            text("SELECT kind FROM journal_entries WHERE book_code = :b ORDER BY seq"),
            {"b": d.book},
        )
        return [r.kind for r in rows]


async def ledger_stats(d: District) -> dict[str, Any]:
    data = await d.ok("GET", f"/v1/stats/service?book={d.book}", "admin")
    stats: dict[str, Any] = data["ledger"]
    return stats


async def history(d: District, member: dict[str, Any]) -> list[dict[str, Any]]:
    page = await d.ok("GET", f"/v1/members/{member['id']}/entries", "admin")
    items: list[dict[str, Any]] = page["items"]
    return items


async def test_a_spent_record_is_corrected_with_the_rest_owed_then_settled(
    district: District,
) -> None:
    d = district
    member = await d.member()
    record = await approved(d, member, 120)
    proof = await d.ok("GET", f"/v1/members/{member['id']}/service-proof", "admin")
    await spend(d, member, 90)
    assert await d.balance(member["hours"]) == 30

    # A reversal would overdraw the member: the operator must say what becomes of the rest.
    path = f"/v1/service-records/{record}/reverse"
    refused = await d.call("POST", path, "team", body={"reason": "重复录入"})
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["type"] == PROBLEM + "correction-needs-remainder"
    assert (problem["credited"], problem["held"]) == (120, 30)
    assert (await d.ok("GET", f"/v1/service-records/{record}", "team"))["status"] == "approved"

    body = {"reason": "重复录入", "remainder": "owed"}
    first, second = await asyncio.gather(
        d.call("POST", path, "team", body=body), d.call("POST", path, "team", body=body)
    )
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    corrected = first.json()
    assert corrected["status"] == "reversed"
    assert second.json()["reversal_tx_id"] == corrected["reversal_tx_id"]
    again = await d.ok("POST", path, "team", body={"reason": "再次", "remainder": "written_off"})
    assert again["reversal_tx_id"] == corrected["reversal_tx_id"]
    assert (await kinds(d)).count("service_correction") == 1

    receivable = await purpose_account(d, f"org:{d.team}", f"receivable:{member['id']}")
    assert receivable is not None and receivable[1] == -90
    assert await purpose_account(d, f"org:{d.team}", "write_off") is None
    assert await d.balance(member["hours"]) == 0
    assert await d.balance(d.team_issuance) == 0

    tx = await d.ok("GET", f"/v1/transactions/{corrected['reversal_tx_id']}")
    credit = (await d.ok("GET", f"/v1/service-records/{record}", "team"))["tx_id"]
    assert tx["kind"] == "service_correction"
    legs = [(leg["account_id"], leg["amount"]) for leg in tx["entry"]["legs"]]
    assert legs == [(d.team_issuance, 120), (member["hours"], -30), (receivable[0], -90)]
    meta = tx["entry"]["meta"]
    assert meta == {
        "record": record,
        "project": meta["project"],
        "credit": credit,
        "taken_back": 30,
        "owed": 90,
        "written_off": 0,
        "actor": {"credential": d.credentials["team"]},
    }
    detail = await d.ok("GET", f"/v1/service-records/{record}", "auditor")
    event = detail["events"][-1]
    assert event["event"] == "corrected"
    assert event["detail"] == {
        "tx_id": corrected["reversal_tx_id"],
        "reason": "重复录入",
        "taken_back": 30,
        "owed": 90,
        "written_off": 0,
    }

    stats = await ledger_stats(d)
    assert stats == {
        "service_credit_minutes": 120,
        "reversed_minutes": 120,
        "net_minutes": 0,
        "reconciled": True,
    }
    line = (await history(d, member))[0]
    assert line["tx_id"] == corrected["reversal_tx_id"] and line["amount"] == -30
    assert line["about"]["topic"] == "service"
    assert line["about"]["label"].startswith("志愿服务记录更正：陪伴空巢老人")
    assert line["about"]["label"].endswith("（欠还 1.5 小时）")
    assert line["about"]["record_id"] == record

    # The proof issued before says its record no longer stands; its signature still holds.
    check = await d.api.client.get(f"/v1/service-proofs/{proof['proof_id']}")
    answer = check.json()
    assert answer["signature_valid"] is True and answer["records_stand"] is False
    assert answer["verdict"] == "changed"
    assert answer["document"]["totals"]["minutes"] == 120  # what was issued
    assert answer["standing_totals"]["minutes"] == 0
    (change,) = answer["changed_records"]
    assert change["record_id"] == record and change["change"] == "corrected"
    assert change["tx_id"] == corrected["reversal_tx_id"] and change["minutes"] == 120
    assert change["at"] is not None and change["at"][:19] == corrected["reversed_at"][:19]
    page = await d.api.client.get(f"/v1/service-proofs/{proof['proof_id']}?format=html")
    assert "已更正" in page.text and "核验通过" not in page.text

    # The member's next credit settles what they owe first; the credit itself stays whole.
    later = await approved(d, member, 60, day=1)
    assert await d.balance(member["hours"]) == 0
    assert (await purpose_account(d, f"org:{d.team}", f"receivable:{member['id']}")) == (
        receivable[0],
        -30,
    )
    assert (await kinds(d))[-2:] == ["service_credit", "service_correction.settle"]
    lines = await history(d, member)
    assert lines[0]["about"]["label"] == "抵扣更正欠还时长"
    assert lines[0]["about"]["record_id"] == later and lines[0]["amount"] == -60
    stats = await ledger_stats(d)
    assert (stats["net_minutes"], stats["reconciled"]) == (60, True)


async def test_a_spent_record_is_corrected_with_the_rest_written_off(district: District) -> None:
    d = district
    member = await d.member()
    record = await approved(d, member, 60)
    await spend(d, member, 60)
    body = {"reason": "项目取消", "remainder": "written_off"}
    corrected = await d.ok("POST", f"/v1/service-records/{record}/reverse", "team", body=body)
    write_off = await purpose_account(d, f"org:{d.team}", "write_off")
    assert write_off is not None and write_off[1] == -60
    assert await purpose_account(d, f"org:{d.team}", f"receivable:{member['id']}") is None
    tx = await d.ok("GET", f"/v1/transactions/{corrected['reversal_tx_id']}")
    legs = [(leg["account_id"], leg["amount"]) for leg in tx["entry"]["legs"]]
    assert legs == [(d.team_issuance, 60), (write_off[0], -60)]
    assert (tx["entry"]["meta"]["taken_back"], tx["entry"]["meta"]["owed"]) == (0, 0)
    assert tx["entry"]["meta"]["written_off"] == 60
    assert (await ledger_stats(d))["reconciled"] is True
    line = (await history(d, member))[0]
    assert line["about"]["label"] == "捐入公共时间池"  # the member's own leg was the spending
    # A later credit owes nothing: no settlement.
    await approved(d, member, 30, day=1)
    assert await d.balance(member["hours"]) == 30
    assert "service_correction.settle" not in await kinds(d)


async def test_a_held_record_is_simply_reversed_whatever_the_remainder(
    district: District,
) -> None:
    d = district
    member = await d.member()
    record = await approved(d, member, 45)
    body = {"reason": "录错", "remainder": "owed"}
    reversed_ = await d.ok("POST", f"/v1/service-records/{record}/reverse", "team", body=body)
    tx = await d.ok("GET", f"/v1/transactions/{reversed_['reversal_tx_id']}")
    assert tx["kind"] == "reversal"
    detail = await d.ok("GET", f"/v1/service-records/{record}", "auditor")
    assert detail["events"][-1]["event"] == "reversed"
    bad = await d.call(
        "POST",
        f"/v1/service-records/{record}/reverse",
        "team",
        body={"reason": "x", "remainder": "gone"},
    )
    assert bad.status_code == 422


async def test_what_is_owed_is_written_off_once(district: District) -> None:
    d = district
    member = await d.member()
    record = await approved(d, member, 50)
    await spend(d, member, 50)
    body = {"reason": "重复录入", "remainder": "owed"}
    await d.ok("POST", f"/v1/service-records/{record}/reverse", "team", body=body)
    path = f"/v1/organisations/{d.team}/owed-minutes/{member['id']}/write-off"
    other = await d.call("POST", path, "other_team", body={"reason": "无法追回"})
    assert other.status_code == 403, other.text
    written = await d.call("POST", path, "team", body={"reason": "无法追回"}, key="w-1")
    assert written.status_code == 200, written.text
    done = written.json()
    assert done["written_off_minutes"] == 50
    replay = await d.call("POST", path, "team", body={"reason": "无法追回"}, key="w-1")
    assert replay.json() == done
    receivable = await purpose_account(d, f"org:{d.team}", f"receivable:{member['id']}")
    write_off = await purpose_account(d, f"org:{d.team}", "write_off")
    assert receivable is not None and receivable[1] == 0
    assert write_off is not None and write_off[1] == -50
    tx = await d.ok("GET", f"/v1/transactions/{done['tx_id']}")
    assert tx["kind"] == "service_correction.write_off"
    legs = [(leg["account_id"], leg["amount"]) for leg in tx["entry"]["legs"]]
    assert legs == [(write_off[0], -50), (receivable[0], 50)]
    assert tx["entry"]["meta"] == {
        "member": member["id"],
        "written_off": 50,
        "reason": "无法追回",
        "actor": {"credential": d.credentials["team"]},
    }
    again = await d.call("POST", path, "team", body={"reason": "无法追回"})
    assert again.status_code == 409 and again.json()["type"] == PROBLEM + "nothing-owed"
    # Nothing is owed any more: the next credit is the member's whole.
    await approved(d, member, 20, day=1)
    assert await d.balance(member["hours"]) == 20
    assert (await ledger_stats(d))["reconciled"] is True


@pytest.mark.slow
async def test_the_verifiers_accept_corrections(
    district: District, cli_env: dict[str, str], tmp_path: Path
) -> None:
    d = district
    owing, writing = await d.member(), await d.member()
    for member, remainder in ((owing, "owed"), (writing, "written_off")):
        record = await approved(d, member, 90)
        await spend(d, member, 75)
        body = {"reason": "更正", "remainder": remainder}
        await d.ok("POST", f"/v1/service-records/{record}/reverse", "team", body=body)
    await approved(d, owing, 30, day=1)  # settles part of what is owed
    write_off = f"/v1/organisations/{d.team}/owed-minutes/{owing['id']}/write-off"
    await d.ok("POST", write_off, "admin", body={"reason": "无法追回"})
    assert {
        "service_correction",
        "service_correction.settle",
        "service_correction.write_off",
    } <= set(await kinds(d))

    verified = await run([TIMEBANK, "verify", "--book", d.book], cli_env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    lines = await export(d.api, d.book)
    path = await write(tmp_path / "export.jsonl", lines)
    jwks = await saved_jwks(d.api, tmp_path)
    audited = audit_verify_here(path, "--jwks", str(jwks))
    assert audited.exit_code == 0, audited.output
    independent = await run([sys.executable, str(VERIFIER), str(path)])
    assert independent.returncode == 0, independent.stdout + independent.stderr
    exported = "\n".join(lines)
    assert '"kind":"service_correction"' in exported
    assert '"kind":"service_correction.settle"' in exported
    assert '"kind":"service_correction.write_off"' in exported


async def test_a_records_entries_are_not_reversed_by_the_generic_route(district: District) -> None:
    """A service credit reversed by itself would leave its record approved and the statistics
    unreconciled: the generic route refuses it, and the correction, naming the record's route."""
    d = district
    member = await d.member()
    record = await approved(d, member, 30)
    detail = await d.ok("GET", f"/v1/service-records/{record}", "auditor")
    refused = await d.call("POST", f"/v1/transactions/{detail['tx_id']}/reversal", "admin")
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["type"] == PROBLEM + "not-reversible" and problem["kind"] == "service_credit"
    assert "/v1/service-records/{id}/reverse" in problem["detail"]
    assert (await d.ok("GET", f"/v1/service-records/{record}", "auditor"))["status"] == "approved"
    assert (await ledger_stats(d))["reconciled"] is True
    # Spent, then corrected: the correction stands too.
    await spend(d, member, 30)
    body = {"reason": "录错", "remainder": "written_off"}
    corrected = await d.ok("POST", f"/v1/service-records/{record}/reverse", "team", body=body)
    again = await d.call(
        "POST", f"/v1/transactions/{corrected['reversal_tx_id']}/reversal", "admin"
    )
    assert again.status_code == 422 and again.json()["kind"] == "service_correction"
    assert (await ledger_stats(d))["reconciled"] is True
