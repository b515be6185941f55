"""The console's integrity screen in Chromium: each book's head, latest checkpoint and keys as
the API gives them, the export for those who may download it, and verification in the page of
an export, a receipt and a service proof."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.console.conftest import BOOK, Console, go, open_console, screenshot, sign_in
from tests.e2e.test_kiosk_page import FAKE_CAMERA
from tests.e2e.witnesses import (
    FOUNDATION,
    MCA,
    TWO_OF_THREE,
    cosigned,
    note_of,
    with_note,
)

pytestmark = pytest.mark.slow


async def fact(page: Any, name: str) -> str:
    text: str = await page.inner_text(f"#book-head dd[data-fact={name}]")
    return text


async def test_the_auditor_sees_the_head_checkpoint_keys_and_export(
    browser: Any, console: Console
) -> None:
    async with console.api("admin") as client:
        await client.post(f"/v1/books/{BOOK}/checkpoints", headers={"Idempotency-Key": "ck-1"})
        head = (await client.get(f"/v1/books/{BOOK}/head")).json()
        checkpoint = (await client.get(f"/v1/books/{BOOK}/checkpoint")).json()
        jwks = (await client.get("/.well-known/jwks.json")).json()
    page = await open_console(browser, console)
    await sign_in(page, console.tokens["auditor"])
    await go(page, "integrity")
    assert await fact(page, "hash") == head["entry_hash"]
    assert int((await fact(page, "seq")).replace(",", "")) >= head["seq"]
    assert int((await fact(page, "tree-size")).replace(",", "")) >= checkpoint["tree_size"]
    assert await fact(page, "kid") == checkpoint["kid"]
    assert "秒" in await fact(page, "age") or "分钟" in await fact(page, "age")
    kids = await page.locator("#keys td.mono").all_inner_texts()
    assert kids == [key["kid"] for key in jwks["keys"]]
    assert await page.get_attribute("#export-link", "href") == f"/v1/books/{BOOK}/export"
    # The auditor has no write control: every button is the shell's or a verifier's (the
    # witness policy's are kept in the browser only).
    buttons = await page.locator("#screen button:visible").all_inner_texts()
    assert set(buttons) <= {"核验", "核验本账本的当前导出", "保存策略", "清除策略"}, buttons
    await screenshot(page, "integrity-auditor")
    assert page.errors == []
    await page.context.close()


async def test_an_organisation_reads_the_head_but_has_no_export(
    browser: Any, console: Console
) -> None:
    page = await open_console(browser, console)
    await sign_in(page, console.tokens["org"])
    await go(page, "integrity")
    assert len(await fact(page, "hash")) == 64
    assert await page.locator("#export-link").count() == 0
    assert await page.locator("#verify-now").count() == 0
    assert "不能下载" in await page.inner_text("#export")
    assert page.errors == []
    await page.context.close()


async def test_the_page_verifies_the_true_export_and_names_the_seq_of_a_tampered_one(
    browser: Any, console: Console, tmp_path: Path
) -> None:
    async with console.api("auditor") as client:
        r = await client.get(f"/v1/books/{BOOK}/export")
        assert r.status_code == 200, r.text
    true_export = r.content
    lines = true_export.split(b"\n")
    # Entry 7's amount or memo changed, its hash left as it was: the chain breaks at seq 7.
    entry = json.loads(lines[6])
    assert entry["entry"]["seq"] == 7
    entry["entry"]["memo"] = entry["entry"]["memo"] + " 改"
    tampered = [*lines[:6], json.dumps(entry, ensure_ascii=False).encode(), *lines[7:]]
    (tmp_path / "true.jsonl").write_bytes(true_export)
    (tmp_path / "tampered.jsonl").write_bytes(b"\n".join(tampered))

    page = await open_console(browser, console)
    await sign_in(page, console.tokens["auditor"])
    await go(page, "integrity")
    verdict = page.locator("#export-verdict")

    await page.set_input_files("#export-file", str(tmp_path / "true.jsonl"))
    await verdict.wait_for()
    assert await verdict.get_attribute("data-ok") == "true"
    assert "核验通过" in await verdict.inner_text()

    await page.set_input_files("#export-file", str(tmp_path / "tampered.jsonl"))
    await page.wait_for_selector("#export-verdict[data-ok=false]")
    assert await verdict.get_attribute("data-seq") == "7"
    assert "首个问题出在序号 7" in await verdict.inner_text()
    await screenshot(page, "integrity-tampered")

    # The book's current export, fetched and verified in the page with the service's keys.
    await page.click("#verify-now")
    await page.wait_for_selector("#export-verdict[data-ok=true]")
    assert await page.input_value("#export-file") == ""
    assert page.errors == []
    await page.context.close()


async def test_a_pasted_receipt_verifies_and_a_tampered_one_does_not(
    browser: Any, console: Console
) -> None:
    async with console.api("admin") as client:
        head = (await client.get(f"/v1/books/{BOOK}/head")).json()
        entries = await client.get(f"/v1/books/{BOOK}/export", params={"from_seq": head["seq"]})
        line = json.loads(entries.text.splitlines()[0])
    receipt = line["receipt"]
    page = await open_console(browser, console)
    await sign_in(page, console.tokens["auditor"])
    await go(page, "integrity")
    out = page.locator("#receipt-verdict")
    await page.fill("#receipt-input", receipt)
    await page.click("#receipt-form button[type=submit]")
    await page.wait_for_selector("#receipt-verdict[data-valid=true]")
    assert f"序号 {head['seq']}" in await out.inner_text()
    header, payload, signature = receipt.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    await page.fill("#receipt-input", f"{header}.{payload}.{flipped}")
    await page.click("#receipt-form button[type=submit]")
    await page.wait_for_selector("#receipt-verdict[data-valid=false]")
    assert "无效" in await out.inner_text()

    # A member's service proof, pasted as the service answered it.
    async with console.api("admin") as client:
        members = (await client.get("/v1/members", params={"book": BOOK, "limit": 1})).json()
        member = members["items"][0]["id"]
        proof = await client.get(f"/v1/members/{member}/service-proof")
        assert proof.status_code == 200, proof.text
    await page.fill("#receipt-input", proof.text)
    await page.click("#receipt-form button[type=submit]")
    await page.wait_for_selector("#receipt-verdict[data-valid=true]")
    assert await out.inner_text() == "服务证明有效"
    # The public check's answer says whether its records still stand: as the service would
    # answer once one was corrected (docs/service-proof.md §7), the signature still good.
    async with console.api("admin") as client:
        check = (await client.get(f"/v1/service-proofs/{proof.json()['proof_id']}")).json()
    assert check["records_stand"] is True
    await page.fill("#receipt-input", json.dumps(check))
    await page.click("#receipt-form button[type=submit]")
    await page.wait_for_selector("#receipt-verdict[data-valid=true]")
    assert await out.inner_text() == "服务证明有效"
    changed = check | {
        "records_stand": False,
        "changed_records": [{"record_id": "r", "status": "reversed", "change": "corrected"}],
        "standing_totals": check["standing_totals"] | {"hours": "0.50"},
        "verdict": "changed",
    }
    await page.fill("#receipt-input", json.dumps(changed))
    await page.click("#receipt-form button[type=submit]")
    await page.wait_for_selector("#receipt-verdict[data-changed=true]")
    said = await out.inner_text()
    assert said == "签名有效，但出具后有 1 条记录已被冲正或更正，现仍成立 0.50 小时"
    token = proof.json()["token"]
    forged = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    await page.fill("#receipt-input", json.dumps(proof.json() | {"token": forged}))
    await page.click("#receipt-form button[type=submit]")
    await page.wait_for_selector("#receipt-verdict[data-valid=false]")
    assert page.errors == []
    await page.context.close()


async def test_a_receipt_and_a_printed_proof_scanned_with_the_camera_are_verified(
    browser: Any, console: Console
) -> None:
    async with console.api("admin") as client:
        head = (await client.get(f"/v1/books/{BOOK}/head")).json()
        export = await client.get(f"/v1/books/{BOOK}/export", params={"from_seq": head["seq"]})
        receipt = json.loads(export.text.splitlines()[0])["receipt"]
        members = (await client.get("/v1/members", params={"book": BOOK, "limit": 1})).json()
        proof = await client.get(f"/v1/members/{members['items'][0]['id']}/service-proof")
        assert proof.status_code == 200, proof.text
    # What a printed proof's QR code holds: the address of its public check.
    check = f"{console.base}/v1/service-proofs/{proof.json()['proof_id']}"
    for scanned, said in ((receipt, f"序号 {head['seq']}"), (check, "服务证明有效")):
        context = await browser.new_context(base_url=console.base, locale="zh-CN")
        await context.add_init_script(FAKE_CAMERA + f"window.__qrText = {json.dumps(scanned)};")
        page = await context.new_page()
        await page.goto("/console/")
        await sign_in(page, console.tokens["auditor"])
        await go(page, "integrity")
        await page.click("#receipt-camera")
        await page.wait_for_selector("#receipt-verdict[data-valid=true]")
        assert said in await page.inner_text("#receipt-verdict")
        assert await page.locator("#receipt-video").is_hidden()  # the camera is off again
        await context.close()


async def test_a_witness_policy_kept_in_the_browser_holds_exports_and_receipts_to_it(
    browser: Any, console: Console, tmp_path: Path
) -> None:
    async with console.api("auditor") as client:
        r = await client.get(f"/v1/books/{BOOK}/export")
        assert r.status_code == 200, r.text
    export = r.text
    receipt = json.loads(export.split("\n")[-3])["receipt"]
    note = note_of(export)
    (tmp_path / "two.jsonl").write_text(with_note(export, cosigned(note, MCA, FOUNDATION)))
    (tmp_path / "one.jsonl").write_text(with_note(export, cosigned(note, MCA)))
    page = await open_console(browser, console)
    await sign_in(page, console.tokens["auditor"])
    await go(page, "integrity")
    state = page.locator("#policy-state")
    await page.wait_for_selector("#policy-state[data-policy=none]")
    assert "未设定见证策略" in await state.inner_text()

    # A policy the text does not allow is refused, naming the line, and not kept.
    await page.fill("#policy-text", "witness a not-a-key\nquorum a\n")
    await page.click("#policy-save")
    await page.wait_for_selector("#policy-state[data-policy=invalid]")
    assert "见证策略第 1 行" in await state.inner_text()
    assert await page.evaluate("localStorage.getItem('timebank.console.witnessPolicy')") is None
    # The 2-of-3 policy is kept in this browser: another screen and back, it is still in force.
    await page.fill("#policy-text", TWO_OF_THREE)
    await page.click("#policy-save")
    await page.wait_for_selector("#policy-state[data-policy=set]")
    await go(page, "overview")
    await go(page, "integrity")
    await page.wait_for_selector("#policy-state[data-policy=set]")
    assert "district = 2 of (mca, discipline, foundation)" in await state.inner_text()
    assert await page.input_value("#policy-text") == TWO_OF_THREE

    # The service's export: no witness cosigned its checkpoint yet, so it is refused.
    verdict = page.locator("#export-verdict")
    await page.click("#verify-now")
    await page.wait_for_selector("#export-verdict[data-ok=false]")
    assert "检查点未达到见证法定人数" in await verdict.inner_text()
    # Cosigned by two of the three it passes, naming them; by one it is refused.
    await page.set_input_files("#export-file", str(tmp_path / "two.jsonl"))
    await page.wait_for_selector("#export-verdict[data-ok=true]")
    listed = page.locator("#export-verdict .witnesses")
    assert await listed.get_attribute("data-witnesses") == "mca foundation"
    assert MCA.name in await listed.inner_text()
    await screenshot(page, "integrity-witnesses")
    await page.set_input_files("#export-file", str(tmp_path / "one.jsonl"))
    await page.wait_for_selector("#export-verdict[data-ok=false]")
    assert "已联署的见证人为 mca" in await verdict.inner_text()

    # A receipt: its proof bundle's checkpoint, fetched from the service, is held to it too.
    out = page.locator("#receipt-verdict")
    await page.fill("#receipt-input", receipt)
    await page.click("#receipt-form button[type=submit]")
    await page.wait_for_selector("#receipt-verdict[data-valid=false]")
    assert "见证法定人数" in await out.inner_text()
    # Cleared, the receipt alone is checked again.
    await page.click("#policy-clear")
    await page.wait_for_selector("#policy-state[data-policy=none]")
    await page.click("#receipt-form button[type=submit]")
    await page.wait_for_selector("#receipt-verdict[data-valid=true]")
    assert await page.locator("#receipt-witnesses").inner_text() == ""
    assert page.errors == []
    await page.context.close()


async def test_the_witnesses_panel_shows_each_witness_and_raises_a_refusal(
    browser: Any, console: Console, tmp_path: Path
) -> None:
    import asyncio
    import subprocess

    from tests.e2e.test_two_servers import TIMEBANK, free_port

    # A real witness that was never told of this log (it refuses with 404: an alarm), and one
    # nobody runs (port 9 refuses connections: only unreachable).
    directory = tmp_path / "witness"
    vkey = console.cli("witness", "init", "--dir", str(directory), "--name", "w.example/a")
    vkey = vkey.split()[-1]
    port = free_port()
    with (tmp_path / "witness.log").open("wb") as out:
        witness = subprocess.Popen(  # noqa: ASYNC220 - Popen starts it and returns
            [TIMEBANK, "witness", "serve", "--dir", str(directory), "--port", str(port)],
            env=console.served.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    added = [("w.example/a", vkey, f"http://127.0.0.1:{port}"),
             (MCA.name, MCA.vkey, "http://127.0.0.1:9")]  # fmt: skip
    try:
        async with console.api("admin") as client:
            await client.post(f"/v1/books/{BOOK}/checkpoints")
            for _, key, url in added:
                console.cli("witnesses", "add", "--book", BOOK, "--vkey", key, "--url", url)
            async with asyncio.timeout(60):
                while not (await client.get(f"/v1/books/{BOOK}/witnesses")).json()["alarm"]:  # noqa: ASYNC110 - the follower
                    await asyncio.sleep(0.2)
        page = await open_console(browser, console)
        await sign_in(page, console.tokens["auditor"])
        await go(page, "integrity")
        alarm = page.locator("#witness-status [role=alert]")
        assert "拒绝" in await alarm.inner_text()
        rows = await page.locator("#witness-status tbody tr").all_inner_texts()
        assert len(rows) == 2
        refused = next(r for r in rows if "w.example/a" in r)
        assert "拒绝联署：404" in refused
        await screenshot(page, "integrity-witness-alarm")
        assert page.errors == []
        await page.context.close()
    finally:
        witness.terminate()
        witness.wait(timeout=20)
        for name, _, _ in added:
            console.cli("witnesses", "remove", "--book", BOOK, "--name", name)
