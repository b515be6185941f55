"""The kiosk web page (/kiosk/) in headless Chromium against a real server: receipt
verification in the browser (online, offline from the cached keys, tampered), the same verdicts
as the Python reference, the whole redemption from sign-in to a verified receipt, and with a
witness policy set at the site, the receipt's checkpoint held to it."""

from __future__ import annotations

import base64
import copy
import json
import re
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.audit import keys, receipts
from tests.audit.test_deep_entries import deep_book
from tests.audit.test_receipts import (
    HASH_1,
    HEADER,
    JWKS,
    KEY,
    b64url,
    claims_bytes,
    resign,
    token_1,
)
from tests.conftest import Api
from tests.e2e.browser import TIMEOUT_MS, launched, require_chromium
from tests.e2e.test_two_servers import TIMEBANK, admin_token, free_port, wait_ready
from tests.e2e.witnesses import DISCIPLINE, MCA, TWO_OF_THREE, cosigned

pytestmark = pytest.mark.slow  # a server process and Chromium


@dataclass
class Server:
    base: str
    admin: str  # an admin token
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
async def server(cli_env: dict[str, str], tmp_path: Path) -> AsyncIterator[Server]:
    """`timebank serve` on the test database, on a free port of 127.0.0.1."""
    token = await admin_token(cli_env)
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 - Popen starts it and returns
            [TIMEBANK, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=cli_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(base, process)
        yield Server(base, token, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def chromium() -> Path:
    return require_chromium()


@pytest.fixture(scope="module")
async def browser(chromium: Path) -> AsyncIterator[Any]:
    """Headless Chromium driven by Playwright (never a browser of Playwright's own), started
    once for the module: each test opens a context of its own (cookies, storage, offline)."""
    async with launched() as instance:
        yield instance


async def new_page(browser: Any, server: Server, **options: Any) -> tuple[Any, Any]:
    context = await browser.new_context(base_url=server.base, locale="zh-CN", **options)
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # uncaught exceptions in the page fail the test at its end
    await page.goto("/kiosk/")
    return context, page


async def verify_on_screen(page: Any, token: str) -> dict[str, str]:
    """Paste `token` on the 验证凭条 screen; the verdict's word, reason line and key source."""
    await page.fill("#verify-token", token)
    box = page.locator("#verify-verdict")
    await box.evaluate("b => b.removeAttribute('data-valid')")
    await page.click("#verify-form button[type=submit]")
    await box.and_(page.locator("[data-valid]")).wait_for()
    return {
        "valid": await box.get_attribute("data-valid") or "",
        "source": await box.get_attribute("data-source") or "",
        "text": await box.inner_text(),
    }


def tampered(token: str) -> str:
    """The token with one claim changed and the signature kept (still canonical base64url)."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["legs"][0]["amount"] -= 1
    forged = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode())
    return f"{header}.{forged.rstrip(b'=').decode()}.{signature}"


# --- the verifier agrees with app.audit.receipts.verify_receipt --------------------------------

# docs/audit-format.md §7: the published RFC 8032 test key; §6.5 has a receipt it signed.
DOCS_JWKS = {
    "keys": [
        {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",
            "use": "sig",
            "alg": "Ed25519",
            "valid_from": "2026-01-01T00:00:00Z",
            "valid_until": "2027-01-01T00:00:00Z",
        }
    ]
}
DOCS = Path(__file__).parents[2] / "docs" / "audit-format.md"


def docs_receipt() -> str:
    found = re.findall(r"^eyJ[\w-]+\.[\w-]+\.[\w-]+$", DOCS.read_text(), re.MULTILINE)
    assert len(found) == 1, "docs/audit-format.md §6.5 prints one receipt"
    return str(found[0])


def signed(**changes: Any) -> str:
    """A receipt of ENTRY_1 signed by KEY, with some claims changed."""
    return str(resign(HEADER, claims_bytes(**changes)))


def signed_raw(header: bytes, payload: bytes) -> str:
    """A JWS of exactly these header and payload bytes, signed by KEY."""
    signing_input = f"{b64url(header)}.{b64url(payload)}"
    return f"{signing_input}.{b64url(KEY.private_key.sign(signing_input.encode()))}"


def parity_cases() -> list[tuple[str, str, dict[str, Any]]]:
    """(name, token, JWKS): the valid and refused receipts of tests/audit/test_receipts.py,
    and a few more."""
    good = str(token_1())
    header, payload, signature = good.split(".")
    flipped = bytearray(base64.urlsafe_b64decode(signature + "=="))
    flipped[10] ^= 1
    claims = claims_bytes()

    def key(**changes: Any) -> dict[str, Any]:
        jwks = copy.deepcopy(JWKS)
        jwks["keys"][0].update(changes)
        return jwks

    def alg(name: str) -> str:
        return b64url(json.dumps({**HEADER, "alg": name}).encode())

    stranger_x = keys.public_jwk(keys.SigningKey(keys.generate_private_key()).public_key)["x"]
    dup_header = b'{"alg":"Ed25519","alg":"Ed25519","kid":"%s","typ":"timebank-receipt+jwt"}'
    return [
        ("valid", good, JWKS),
        ("docs example", docs_receipt(), DOCS_JWKS),
        ("valid, key without end", good, key(valid_from="2026-11-26T20:30:00Z")),
        ("valid, last second", good, key(valid_until="2026-11-26T20:30:01Z")),
        ("iat before the key", good, key(valid_from="2026-11-26T20:30:01Z")),
        ("iat at the key's end", good, key(valid_until="2026-11-26T20:30:00Z")),
        ("bad valid_from", good, key(valid_from="yesterday")),
        ("impossible date", good, key(valid_until="2027-02-30T00:00:00Z")),
        ("unknown kid", good, {"keys": []}),
        ("kid twice", good, {"keys": JWKS["keys"] * 2}),
        ("keys not a list", good, {"keys": "none"}),
        ("kid not the thumbprint", good, key(x=stranger_x)),
        ("private key published", good, key(d=stranger_x)),
        ("not OKP", good, key(kty="EC")),
        ("signature flipped", f"{header}.{payload}.{b64url(bytes(flipped))}", JWKS),
        ("payload swapped", f"{header}.{b64url(claims_bytes(seq=2))}.{signature}", JWKS),
        ("tampered", tampered(good), JWKS),
        ("alg EdDSA", f"{alg('EdDSA')}.{payload}.{signature}", JWKS),
        ("alg none", f"{alg('none')}.{payload}.", JWKS),
        ("empty", "", JWKS),
        ("two parts", "a.b", JWKS),
        ("four parts", good + ".x", JWKS),
        ("not base64url", "%%%.e30.AAAA", JWKS),
        ("padding", good + "=", JWKS),
        ("padded header", good.replace(".", "=.", 1), JWKS),
        ("typ JWT", str(resign({**HEADER, "typ": "JWT"}, claims)), JWKS),
        ("no typ", str(resign({"alg": "Ed25519", "kid": KEY.kid}, claims)), JWKS),
        ("extra header member", str(resign({**HEADER, "cty": "json"}, claims)), JWKS),
        ("header duplicate", signed_raw(dup_header % KEY.kid.encode(), claims), JWKS),
        (
            "not JCS",
            signed_raw(json.dumps(HEADER).encode(), json.dumps(json.loads(claims)).encode()),
            JWKS,
        ),
        ("seq a string", signed(seq="1"), JWKS),
        ("seq 0", signed(seq=0), JWKS),
        ("iat 1.5", signed(iat=1.5), JWKS),
        (
            "iat 1.0",
            signed_raw(
                json.dumps(HEADER).encode(),
                claims.replace(b'"iat":1795725000', b'"iat":1795725000.0'),
            ),
            JWKS,
        ),
        ("upper-case hash", signed(entry_hash=HASH_1.upper()), JWKS),
        ("leg without amount", signed(legs=[{"account_id": "a", "asset": "HOUR"}]), JWKS),
        ("amount true", signed(legs=[{"account_id": "a", "asset": "H", "amount": True}]), JWKS),
        ("extra claim", signed(memo="extra"), JWKS),
        (
            "lone surrogate",
            signed_raw(
                json.dumps(HEADER).encode(), claims.replace(b'"book":"xh"', b'"book":"\\ud800"')
            ),
            JWKS,
        ),
        ("array payload", signed_raw(json.dumps(HEADER).encode(), b"[1]"), JWKS),
        ("duplicate claim", signed_raw(json.dumps(HEADER).encode(), b'{"seq":1,"seq":1}'), JWKS),
        ("not UTF-8", signed_raw(json.dumps(HEADER).encode(), b"\xff"), JWKS),
        # Nested deeper than any parser that recurses once per level could read.
        ("deep payload", signed_raw(json.dumps(HEADER).encode(), deep_claims(3000)), JWKS),
        ("deep header", f"{b64url(b'[' * 5000 + b']' * 5000)}.{payload}.{signature}", JWKS),
    ]


def deep_claims(depth: int) -> bytes:
    """The claims in canonical form with `legs` nested `depth` arrays deep."""
    claims = json.loads(claims_bytes())
    return claims_bytes().replace(
        json.dumps(claims["legs"], separators=(",", ":")).encode(),
        b"[" * depth + b"]" * depth,
    )


def python_verdict(token: str, jwks: dict[str, Any]) -> bool:
    try:
        receipts.verify_receipt(token, jwks)
    except receipts.ReceiptError:
        return False
    return True


async def browser_verdicts(page: Any, cases: list[tuple[str, str, dict[str, Any]]]) -> list[Any]:
    """[name, valid, reason] for each case, from receipt.js's verifyReceipt in the page."""
    return list(
        await page.evaluate(
            """async (cases) => {
                const m = await import("/kiosk/receipt.js");
                const out = [];
                for (const [name, token, jwks] of cases) {
                    try {
                        await m.verifyReceipt(token, jwks);
                        out.push([name, true, null]);
                    } catch (e) {
                        out.push([name, false, e instanceof m.ReceiptError ? e.message : "!" + e]);
                    }
                }
                return out;
            }""",
            [list(c) for c in cases],
        )
    )


# --- tests -------------------------------------------------------------------------------------


async def visible(client: httpx.AsyncClient, path: str) -> None:
    """GET `path` answers 200 right after the 201 that created it: a request's session commits
    before its answer is sent (app/http/context.py)."""
    r = await client.get(path)
    assert r.status_code == 200, r.text


async def seed_receipt(server: Server) -> str:
    """A transfer posted through the API; its receipt."""
    async with httpx.AsyncClient(
        base_url=server.base, headers={"Authorization": f"Bearer {server.admin}"}
    ) as client:
        book = "kv" + uuid.uuid4().hex[:6]
        r = await client.post("/v1/books", json={"code": book, "name": "验证"})
        assert r.status_code == 201, r.text
        await visible(client, f"/v1/books/{book}")
        ids = []
        for limit in (10**6, 0):
            r = await client.post(
                f"/v1/books/{book}/accounts",
                json={"asset": "POINT", "owner": "test:kiosk", "overdraft_limit": limit},
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
            await visible(client, f"/v1/accounts/{ids[-1]}")
        r = await client.post(
            f"/v1/books/{book}/transactions",
            json={
                "kind": "transfer",
                "legs": [
                    {"account_id": ids[0], "amount": -30},
                    {"account_id": ids[1], "amount": 30},
                ],
            },
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == 201, r.text
        r = await client.get(f"/v1/transactions/{r.json()['id']}/receipt")
        assert r.status_code == 200, r.text
        return str(r.json()["receipt"])


async def test_receipts_verify_in_the_browser_online_and_offline(
    browser: Any, server: Server, tmp_path: Path
) -> None:
    token = await seed_receipt(server)
    context, page = await new_page(browser, server)
    try:
        # No token needed: anyone at the kiosk may check a receipt.
        await page.locator("#screen-signin").wait_for()
        await page.click("#nav-verify")
        online = await verify_on_screen(page, token)
        assert online["valid"] == "true" and online["source"] == "network", online
        assert "有效" in online["text"] and "服务器" in online["text"]
        cached = await page.evaluate("localStorage.getItem('timebank.jwks')")
        assert json.loads(cached)["jwks"]["keys"], "the key set is cached for offline use"

        # The same verdicts as app.audit.receipts.verify_receipt, case by case.
        cases = parity_cases()
        verdicts = await browser_verdicts(page, cases)
        expected = [[name, python_verdict(t, jwks)] for name, t, jwks in cases]
        assert [[name, ok] for name, ok, _ in verdicts] == expected
        assert not [v for v in verdicts if (v[2] or "").startswith("!")], verdicts
        assert expected[0][1] and expected[1][1] and sum(ok for _, ok in expected) == 4, expected

        # Network cut: the cached keys still verify, and the page says so.
        await page.evaluate("navigator.serviceWorker.ready")
        await context.set_offline(True)
        offline = await verify_on_screen(page, token)
        assert offline["valid"] == "true" and offline["source"] == "cache", offline
        assert "本机缓存" in offline["text"]
        forged = await verify_on_screen(page, tampered(token))
        assert forged["valid"] == "false" and "无效" in forged["text"], forged
        assert "签名不正确" in forged["text"]
        # Reloaded with the server gone too, the page comes from its service worker's cache.
        server.process.terminate()
        server.process.wait(timeout=20)
        await page.reload()
        await page.click("#nav-verify")
        again = await verify_on_screen(page, token)
        assert again["valid"] == "true" and again["source"] == "cache", again
        await page.screenshot(path=str(tmp_path / "kiosk-verify-offline.png"), full_page=True)
        assert page.errors == []
    finally:
        await context.close()


FAKE_CAMERA = """
// No camera and no BarcodeDetector in headless Chromium on Linux: a detector that reads the
// given text, and a camera that films a blank canvas.
window.BarcodeDetector = class {
  static async getSupportedFormats() { return ["qr_code", "ean_13"]; }
  async detect() { return [{ format: "qr_code", rawValue: window.__qrText }]; }
};
navigator.mediaDevices.getUserMedia = async () => {
  const canvas = Object.assign(document.createElement("canvas"), { width: 64, height: 64 });
  canvas.getContext("2d").fillRect(0, 0, 64, 64);
  return canvas.captureStream(5);
};
"""


async def test_a_receipt_scanned_with_the_camera_is_verified(browser: Any, server: Server) -> None:
    token = await seed_receipt(server)
    context = await browser.new_context(base_url=server.base)
    await context.add_init_script(FAKE_CAMERA + f"window.__qrText = {json.dumps(token)};")
    try:
        page = await context.new_page()
        await page.goto("/kiosk/")
        await page.click("#nav-verify")
        await page.click("#verify-camera")
        box = page.locator("#verify-verdict[data-valid]")
        await box.wait_for()
        assert await box.get_attribute("data-valid") == "true"
        assert await page.input_value("#verify-token") == token
        assert await page.locator("#verify-video").is_hidden()  # the camera is off again
    finally:
        await context.close()


async def test_receipts_of_entries_with_deep_metas_verify_in_the_browser(
    browser: Any, server: Server, api: Api
) -> None:
    # The deepest meta the API accepts and a legacy entry nested past any limit (written by
    # the sequencer, as before the door limited depth), in the server's database.
    book = await deep_book(api)
    tokens = []
    for tx in (book.accepted_tx, book.legacy_tx):
        r = await api.client.get(f"/v1/transactions/{tx}/receipt")
        assert r.status_code == 200, r.text
        tokens.append(r.json()["receipt"])
    context, page = await new_page(browser, server)
    try:
        jwks = await page.evaluate("fetch('/.well-known/jwks.json').then(r => r.json())")
        cases = [(f"receipt {i}", token, jwks) for i, token in enumerate(tokens)]
        verdicts = await browser_verdicts(page, cases)
        assert verdicts == [[name, True, None] for name, _, _ in cases], verdicts
        assert all(python_verdict(token, jwks) for token in tokens)
        # The page's JSON reader and JCS writer have no depth limit (explicit stacks).
        round_trip = await page.evaluate(
            """async (depth) => {
                const m = await import("/kiosk/receipt.js");
                const text = '{"a":['.repeat(depth) + '1,"\u00e9"' + "]}".repeat(depth);
                return m.canonicalJson(m.strictJson(text, "x")) === text;
            }""",
            100_000,
        )
        assert round_trip is True
        await page.click("#nav-verify")
        for token in tokens:
            shown = await verify_on_screen(page, token)
            assert shown["valid"] == "true" and shown["source"] == "network", shown
        assert page.errors == []
    finally:
        await context.close()


# --- the whole redemption ---------------------------------------------------------------------


@dataclass
class Shop:
    """A book with a kiosk site, its items, and a member with 100 points."""

    book: str
    site_id: str
    site_name: str
    kiosk_token: str
    member_id: str
    points_account: str
    mini_token: str
    items: dict[str, str]  # name -> id


async def seed_shop(client: httpx.AsyncClient) -> Shop:
    async def post(path: str, body: dict[str, Any] | None = None, **headers: str) -> Any:
        r = await client.post(
            path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex, **headers}
        )
        assert r.status_code in (200, 201), r.text
        return r.json()

    book = "ks" + uuid.uuid4().hex[:6]
    await post("/v1/books", {"code": book, "name": "幸福街道"})
    await visible(client, f"/v1/books/{book}")
    charity = await post(
        "/v1/organisations",
        {
            "book": book,
            "kind": "charity",
            "name": "街道慈善会",
            "accounts": [{"asset": "POINT", "purpose": "issuance", "overdraft_limit": 10**6}],
        },
    )
    site = await post(
        "/v1/organisations", {"book": book, "kind": "kiosk_site", "name": "幸福里爱心超市"}
    )
    kiosk = await post(
        "/v1/credentials", {"role": "kiosk", "book": book, "organisation_id": site["id"]}
    )
    mini = await post("/v1/credentials", {"role": "miniprogram", "book": book})
    member = await post(
        "/v1/members",
        {
            "book": book,
            "display_name": "李阿姨",
            "phone": "13800001111",
            "birth_date": "1956-03-08",
            "identity": {"provider": "wechat", "subject": "o-kiosk-" + uuid.uuid4().hex},
        },
        Authorization=f"Bearer {mini['token']}",
    )
    await visible(client, f"/v1/members/{member['id']}")
    points = next(a["account_id"] for a in member["accounts"] if a["asset"] == "POINT")
    issuance = next(a["id"] for a in charity["accounts"] if a["asset"] == "POINT")
    legs = [{"account_id": issuance, "amount": -100}, {"account_id": points, "amount": 100}]
    await post(f"/v1/books/{book}/transactions", {"legs": legs})
    items = {}
    for name, price, stock, status in (
        ("大米 5kg", 30, 10, "active"),
        ("食用油 1.8L", 20, None, "active"),
        ("旧款毛巾", 5, 3, "inactive"),
    ):
        body = {"name": name, "price": price, "stock": stock, "status": status}
        items[name] = (await post(f"/v1/kiosk/sites/{site['id']}/items", body))["id"]
    return Shop(
        book, site["id"], site["name"], kiosk["token"], member["id"], points, mini["token"], items
    )


async def redeem_code(client: httpx.AsyncClient, shop: Shop) -> str:
    """A fresh code from the member's mini-program (codes live 60 s: ask just before use)."""
    r = await client.post(
        f"/v1/members/{shop.member_id}/redeem-codes",
        headers={
            "Authorization": f"Bearer {shop.mini_token}",
            "X-Member-Id": shop.member_id,
            "Idempotency-Key": uuid.uuid4().hex,
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["member_id"] == shop.member_id
    return str(r.json()["code"])


def _as_kiosk(shop: Shop) -> dict[str, str]:
    return {"Authorization": f"Bearer {shop.kiosk_token}", "Idempotency-Key": uuid.uuid4().hex}


async def hold_points(client: httpx.AsyncClient, shop: Shop, item: str) -> str:
    """Reserve one of `item` for the member through the API: its points are held."""
    line = {"item_id": shop.items[item], "quantity": 1}
    body = {"code": await redeem_code(client, shop), "items": [line]}
    r = await client.post("/v1/kiosk/redemptions", json=body, headers=_as_kiosk(shop))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def cancel_redemption(client: httpx.AsyncClient, shop: Shop, redemption: str) -> None:
    r = await client.post(f"/v1/kiosk/redemptions/{redemption}/cancel", headers=_as_kiosk(shop))
    assert r.status_code == 200, r.text


async def scan_and_pick(page: Any, code: str, quantities: dict[str, int]) -> None:
    """Type the code, then tap + on each item as often as asked."""
    await page.locator("#screen-scan").wait_for()
    await page.fill("#scan-code", code)
    await page.click("#scan-form button[type=submit]")
    await page.locator("#pick-items li").first.wait_for()
    for name, n in quantities.items():
        for _ in range(n):
            await page.get_by_role("button", name=f"增加 {name}").click()


async def test_a_member_redeems_at_the_kiosk_and_gets_a_verified_receipt(
    browser: Any, server: Server, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(
        base_url=server.base, headers={"Authorization": f"Bearer {server.admin}"}
    ) as client:
        shop = await seed_shop(client)
        context, page = await new_page(browser, server)
        try:
            # 登录: a wrong pairing code or token is refused in plain Chinese; a code an admin
            # asked for pairs the kiosk and signs it in, no token typed.
            await page.fill("#pair-code", "ABCD2345")
            await page.click("#pair-form button[type=submit]")
            await page.get_by_text("配对失败：配对码无效、已过期或已使用，请重新获取").wait_for()
            await page.fill("#signin-token", "tbk_not-a-real-token")
            await page.click("#signin-form button[type=submit]")
            await page.get_by_text("登录失败：").wait_for()
            assert await page.locator("#screen-signin").is_visible()
            issued = await client.post(
                f"/v1/kiosk/sites/{shop.site_id}/pairing-codes",
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            assert issued.status_code == 201, issued.text
            await page.fill("#pair-code", issued.json()["code"].lower())
            await page.fill("#pair-name", "收银台 1")
            await page.screenshot(path=str(tmp_path / "kiosk-pairing.png"), full_page=True)
            await page.click("#pair-form button[type=submit]")
            await page.locator("#screen-scan").wait_for()
            assert shop.site_name in await page.inner_text("#site-label")
            stored = await page.evaluate("sessionStorage.getItem('timebank.kiosk.token')")
            assert stored.startswith("tbk_") and stored != shop.kiosk_token

            # 扫码 and 选购: only active items are offered; the total follows the taps.
            await scan_and_pick(
                page, await redeem_code(client, shop), {"大米 5kg": 2, "食用油 1.8L": 1}
            )
            names = await page.locator("#pick-items .name").all_inner_texts()
            assert sorted(names) == ["大米 5kg", "食用油 1.8L"]
            assert await page.inner_text("#pick-total") == "80 积分"
            await page.screenshot(path=str(tmp_path / "kiosk-pick.png"), full_page=True)
            await page.click("#pick-submit")

            # 确认: the lines, the total and a countdown to the hold's expiry.
            await page.locator("#screen-confirm").wait_for()
            assert await page.inner_text("#confirm-total") == "80 积分"
            countdown = await page.inner_text("#confirm-countdown")
            assert re.fullmatch(r"\d+:[0-5]\d", countdown) and countdown != "0:00", countdown
            lines = await page.locator("#confirm-lines tr").all_inner_texts()
            assert len(lines) == 2 and any(
                "大米 5kg" in line and "60 积分" in line for line in lines
            )
            await page.screenshot(path=str(tmp_path / "kiosk-confirm.png"), full_page=True)
            # The kiosk reloads mid-way: the site's pending redemption is offered again.
            await page.reload()
            resume = page.locator("#scan-resume")
            await resume.wait_for()
            assert "80 积分" in await resume.inner_text()
            await resume.click()
            await page.locator("#screen-confirm").wait_for()
            assert await page.inner_text("#confirm-total") == "80 积分"
            await page.click("#confirm-ok")

            # 凭条: the QR code, the words, the token, and its verdict, right away.
            await page.locator("#screen-receipt").wait_for()
            verdict = page.locator("#receipt-verdict[data-valid]")
            await verdict.wait_for()
            assert await verdict.get_attribute("data-valid") == "true"
            assert "有效" in await verdict.inner_text()
            qr = page.locator("#receipt-qr")
            await qr.wait_for()
            assert await qr.evaluate("img => img.complete && img.naturalWidth") > 100
            facts = await page.inner_text("#receipt-facts")
            assert shop.book in facts and "大米 5kg × 2" in facts and "80 积分" in facts
            token = await page.input_value("#receipt-token")
            await page.screenshot(path=str(tmp_path / "kiosk-receipt.png"), full_page=True)

            # What the page showed is what the service recorded.
            jwks = (await client.get("/.well-known/jwks.json")).json()
            claims = receipts.verify_receipt(token, jwks)
            assert claims["book"] == shop.book and claims["kind"] == "hold.post"
            assert claims["tx_id"] in facts and str(claims["seq"]) in facts
            balance = (await client.get(f"/v1/accounts/{shop.points_account}")).json()
            assert balance["posted"] == 20
            items = (await client.get(f"/v1/kiosk/sites/{shop.site_id}/items")).json()["items"]
            rice = next(i for i in items if i["name"] == "大米 5kg")
            assert rice["stock"] == 8 and rice["available"] == 8

            # 验证凭条: online, then with the network cut (cached keys), then tampered.
            await page.click("#nav-verify")
            online = await verify_on_screen(page, token)
            assert online["valid"] == "true" and online["source"] == "network", online
            await context.set_offline(True)
            offline = await verify_on_screen(page, token)
            assert offline["valid"] == "true" and offline["source"] == "cache", offline
            assert "本机缓存" in offline["text"]
            forged = await verify_on_screen(page, tampered(token))
            assert forged["valid"] == "false" and "无效" in forged["text"], forged
            await context.set_offline(False)
            await page.click("#verify-back")
            await page.locator("#screen-receipt").wait_for()

            # 下一位: a used code is refused with the service's reason.
            used = await redeem_code(client, shop)
            await page.click("#receipt-next")
            await scan_and_pick(page, used, {"食用油 1.8L": 1})
            await page.click("#pick-submit")
            await page.locator("#screen-confirm").wait_for()
            await page.click("#confirm-cancel")
            await page.get_by_text("已取消本次兑换").wait_for()
            # Scanned again, the used code is refused at once, before any goods are chosen.
            await page.fill("#scan-code", used)
            await page.click("#scan-form button[type=submit]")
            error = page.locator("#pick-error")
            await error.get_by_text("无法兑换：").wait_for()
            said = await error.inner_text()
            # Plain Chinese: no id, no English detail from the service.
            assert said == "无法兑换：兑换码已使用过，请会员刷新后重新出示", said
            assert await page.locator("#pick-items li").count() == 0
            # The member's points show as soon as the code is scanned (20 left), and a basket
            # beyond them cannot be submitted.
            await page.click("#pick-back")
            await scan_and_pick(page, await redeem_code(client, shop), {"大米 5kg": 1})
            member_line = await page.inner_text("#pick-member")
            assert "可用 20 积分" in member_line, member_line
            assert await page.inner_text("#pick-over") == "积分不足：可用 20 积分"
            assert await page.is_disabled("#pick-submit")
            await page.screenshot(path=str(tmp_path / "kiosk-points.png"), full_page=True)
            # Points held elsewhere meanwhile: the service's refusal, in plain Chinese.
            await page.get_by_role("button", name="减少 大米 5kg").click()
            await page.get_by_role("button", name="增加 食用油 1.8L").click()
            assert await page.is_enabled("#pick-submit")
            held = await hold_points(client, shop, "食用油 1.8L")
            await page.click("#pick-submit")
            await error.get_by_text("会员积分不足").wait_for()
            said = await error.inner_text()
            assert said == "兑换失败：会员积分不足：可用积分 0，本次需要 20 积分", said
            assert not re.search(r"[A-Za-z]", said)
            await page.screenshot(path=str(tmp_path / "kiosk-refusal.png"), full_page=True)
            await cancel_redemption(client, shop, held)

            # A retry after a lost answer reuses the Idempotency-Key: one redemption, not two.
            keys: list[str] = []

            async def lose_first_answer(route: Any) -> None:
                keys.append(route.request.headers["idempotency-key"])
                response = await route.fetch()
                if len(keys) == 1:
                    first.append(await response.json())
                    await route.abort("connectionreset")
                else:
                    await route.fulfill(response=response)

            first: list[Any] = []
            await page.route("**/v1/kiosk/redemptions", lose_first_answer)
            await page.click("#pick-back")
            await scan_and_pick(page, await redeem_code(client, shop), {"食用油 1.8L": 1})
            await page.click("#pick-submit")
            await error.get_by_text("网络").wait_for()
            await page.click("#pick-submit")
            await page.locator("#screen-confirm").wait_for()
            assert len(keys) == 2 and keys[0] == keys[1]
            r = await client.get(f"/v1/kiosk/redemptions/{first[0]['id']}")
            assert r.status_code == 200 and r.json()["status"] == "pending"
            assert await page.inner_text("#confirm-total") == "20 积分"

            # Past the hold's expiry the page stops offering 确认兑换; 取消 still releases it.
            await page.clock.install()
            await page.clock.fast_forward("03:00")
            await page.get_by_text("已超时").wait_for()
            assert await page.inner_text("#confirm-countdown") == "0:00"
            assert await page.locator("#confirm-ok").is_disabled()
            await page.click("#confirm-cancel")
            await page.get_by_text("已取消本次兑换").wait_for()
            r = await client.get(f"/v1/kiosk/redemptions/{first[0]['id']}")
            assert r.json()["status"] == "cancelled"
            balance = (await client.get(f"/v1/accounts/{shop.points_account}")).json()
            assert (balance["posted"], balance["available"], balance["pending_debits"]) == (
                20,
                20,
                0,
            )

            # Confirmed by another request (an answer lost, a second tab): the page finds out
            # and shows that redemption's receipt rather than an error.
            await page.unroute("**/v1/kiosk/redemptions")
            await scan_and_pick(page, await redeem_code(client, shop), {"食用油 1.8L": 1})
            async with page.expect_response("**/v1/kiosk/redemptions") as reserved:
                await page.click("#pick-submit")
            redemption = await (await reserved.value).json()
            await page.locator("#screen-confirm").wait_for()
            # The page's clock is still 3 minutes fast: the countdown follows the service's
            # (its Date header), so the hold is not taken for expired.
            assert await page.inner_text("#confirm-countdown") != "0:00"
            assert await page.locator("#confirm-ok").is_enabled()
            r = await client.post(
                f"/v1/kiosk/redemptions/{redemption['id']}/confirm",
                headers={
                    "Authorization": f"Bearer {shop.kiosk_token}",
                    "Idempotency-Key": uuid.uuid4().hex,
                },
            )
            assert r.status_code == 200, r.text
            await page.click("#confirm-ok")
            await page.locator("#screen-receipt").wait_for()
            await page.locator("#receipt-verdict[data-valid=true]").wait_for()
            assert await page.input_value("#receipt-token") == r.json()["receipt"]
            assert "食用油 1.8L × 1" in await page.inner_text("#receipt-facts")
            balance = (await client.get(f"/v1/accounts/{shop.points_account}")).json()
            assert balance["posted"] == 0

            # 退出登录 forgets the token.
            await page.click("#nav-signout")
            await page.locator("#screen-signin").wait_for()
            assert await page.evaluate("sessionStorage.length") == 0
            assert page.errors == []
        finally:
            await context.close()


# --- a witness policy set at the site -----------------------------------------------------------


async def redeem_at_kiosk(page: Any, client: httpx.AsyncClient, shop: Shop) -> None:
    """One 食用油 from the scan screen to the receipt and its verdict."""
    await scan_and_pick(page, await redeem_code(client, shop), {"食用油 1.8L": 1})
    await page.click("#pick-submit")
    await page.locator("#screen-confirm").wait_for()
    await page.click("#confirm-ok")
    await page.locator("#screen-receipt").wait_for()
    await page.locator("#receipt-verdict[data-valid=true]").wait_for()


async def test_with_a_witness_policy_the_kiosk_checks_the_receipts_checkpoint(
    browser: Any, server: Server, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(
        base_url=server.base, headers={"Authorization": f"Bearer {server.admin}"}
    ) as client:
        shop = await seed_shop(client)
        context, page = await new_page(browser, server)
        try:
            # Only the signed-in site sets its policy.
            assert await page.locator("#nav-policy").is_hidden()
            await page.fill("#signin-token", shop.kiosk_token)
            await page.click("#signin-form button[type=submit]")
            await page.locator("#screen-scan").wait_for()
            # The site's policy, set once on the page: a text it cannot read is refused, and
            # kept nowhere; the 2-of-3 policy is kept in this browser.
            await page.click("#nav-policy")
            state = page.locator("#policy-state")
            await page.wait_for_selector("#policy-state[data-policy=none]")
            await page.fill("#policy-text", "quorum mca\n")
            await page.click("#policy-form button[type=submit]")
            await page.wait_for_selector("#policy-state[data-policy=invalid]")
            assert "见证策略第 1 行" in await state.inner_text()
            await page.fill("#policy-text", TWO_OF_THREE)
            await page.click("#policy-form button[type=submit]")
            await page.wait_for_selector("#policy-state[data-policy=set]")
            assert "2 of (mca, discipline, foundation)" in await state.inner_text()
            stored = await page.evaluate("localStorage.getItem('timebank.kiosk.witnessPolicy')")
            assert stored == TWO_OF_THREE
            await page.click("#policy-back")
            await page.locator("#screen-scan").wait_for()

            # The service's proof bundle: its checkpoint has no cosignature (no witness yet),
            # so the page says so beside a valid receipt.
            await redeem_at_kiosk(page, client, shop)
            witness = page.locator("#receipt-witness")
            await page.wait_for_selector("#receipt-witness[data-witnessed=false]")
            said = await witness.inner_text()
            assert "见证未通过" in said and "未达到见证法定人数" in said, said
            assert "没有策略所列的见证人联署" in said
            await page.screenshot(path=str(tmp_path / "kiosk-witness-refused.png"), full_page=True)

            # The same bundle cosigned by two of the three (served through interception, as a
            # service with witnesses would serve it): the checkpoint meets the policy.
            asked: list[str] = []

            async def cosigned_proof(route: Any) -> None:
                asked.append(route.request.url)
                response = await route.fetch()
                bundle = await response.text()
                split = bundle.index("\n\n") + 2
                body = bundle[:split] + cosigned(bundle[split:], MCA, DISCIPLINE)
                await route.fulfill(response=response, body=body)

            await page.route("**/v1/transactions/*/proof", cosigned_proof)
            await page.click("#receipt-next")
            await redeem_at_kiosk(page, client, shop)
            await page.wait_for_selector("#receipt-witness[data-witnessed=true]")
            said = await witness.inner_text()
            assert "见证通过" in said and MCA.name in said and DISCIPLINE.name in said, said
            assert len(asked) == 1
            await page.screenshot(path=str(tmp_path / "kiosk-witnessed.png"), full_page=True)

            # Without a policy the page behaves as before: no proof is asked for.
            await page.click("#nav-policy")
            await page.click("#policy-clear")
            await page.wait_for_selector("#policy-state[data-policy=none]")
            await page.click("#policy-back")
            await page.locator("#screen-receipt").wait_for()
            await page.click("#receipt-next")
            await redeem_at_kiosk(page, client, shop)
            assert await witness.is_hidden() and len(asked) == 1
            assert page.errors == []
        finally:
            await context.close()
