// The kiosk's screens: sign in, scan a member's code, pick items, confirm, receipt, verify, and
// the site's witness policy.

import { api, ApiError, Attempt, explain, serverNow, session } from "./api.js";
import { b64urlDecode, checkReceipt, loadJwks } from "./receipt.js";
import { canScan, startScan } from "./scanner.js";

const $ = (id) => document.getElementById(id);
const CODE = /^[\x21-\x7e]{1,79}$/; // a redeem code: printable ASCII, no space, < 80 chars
const MAX_QUANTITY = 99;
// The site's witness policy (C2SP tlog-policy, docs/witness.md): set here once and kept in this
// browser, never fetched from the service, whose word it is there to check.
const POLICY_KEY = "timebank.kiosk.witnessPolicy";
// The console's verifier (inclusion proof, log signature, cosignatures), loaded only when a
// policy is set: one implementation for both pages.
const VERIFIER = "/console/verify.js";

const state = {
  site: null, // {site_id, book, name}
  code: null, // the member's scanned redeem code
  items: [], // the site's active items
  cart: new Map(), // item id -> quantity
  redemption: null, // the pending redemption
  screen: null,
  back: null, // where 验证凭条's and 见证策略's 返回 leads
  stopCamera: null,
  countdown: null,
  qrUrl: null,
};
const attempts = { reserve: new Attempt(), confirm: new Attempt(), cancel: new Attempt() };

// --- small helpers ---------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

const UNITS = { POINT: "积分", HOUR: "分钟" };
const amount = (n, asset) => `${n} ${UNITS[asset] ?? asset}`;

function totals(pairs) {
  const sums = new Map();
  for (const [asset, n] of pairs) if (n > 0) sums.set(asset, (sums.get(asset) ?? 0) + n);
  return [...sums].map(([asset, n]) => amount(n, asset)).join(" + ") || "0";
}

const formatTime = (value) => new Date(value).toLocaleString("zh-CN", { hour12: false });

function setError(id, prefix, error) {
  $(id).textContent = error ? prefix + explain(error) : "";
}

function show(name) {
  if (state.stopCamera) state.stopCamera();
  state.stopCamera = null;
  for (const section of document.querySelectorAll("main > section")) {
    section.hidden = section.id !== `screen-${name}`;
  }
  for (const node of document.querySelectorAll(".error")) node.textContent = "";
  state.screen = name;
  $("nav-verify").hidden = name === "verify";
  // Only the signed-in site sets its policy: a passer-by must not clear it or weaken it.
  $("nav-policy").hidden = name === "policy" || !session.token;
  $("nav-signout").hidden = !session.token;
}

/** A 401 means the token is wrong or revoked: back to sign-in with the reason. */
function signedOut(error) {
  if (!(error instanceof ApiError) || error.status !== 401) return false;
  signOut();
  setError("signin-error", "请重新登录：", error);
  return true;
}

// --- 登录 ------------------------------------------------------------------------------------

async function signIn(token) {
  session.token = token;
  try {
    state.site = await api.site();
  } catch (error) {
    // A refused token is forgotten; without an answer it is kept for 登录 to try again.
    if (error instanceof ApiError && error.status < 500) session.token = null;
    show("signin");
    $("signin-token").value = session.token ?? "";
    setError("signin-error", "登录失败：", error);
    return;
  }
  $("site-label").textContent = `${state.site.name}（账本 ${state.site.book}）`;
  startOver();
  await offerPending();
}

/** Trade a pairing code for this kiosk's own credential, then sign in with its token. */
async function pairWith(code, name) {
  try {
    const paired = await api.pair(code, name);
    $("pair-code").value = "";
    await signIn(paired.token);
  } catch (error) {
    setError("pair-error", "配对失败：", error);
  }
}

/** After a reload, the site's redemption still waiting for the member can be taken up again. */
async function offerPending() {
  let pending;
  try {
    [pending] = (await api.pending(state.site.site_id)).items;
  } catch {
    return; // nothing to offer without an answer; the hold expires by itself
  }
  if (!pending || Date.parse(pending.expires_at) <= serverNow()) return;
  const button = $("scan-resume");
  button.textContent = `继续未完成的兑换（合计 ${amount(pending.total, pending.asset)}）`;
  button.onclick = () => {
    button.hidden = true;
    confirmScreen(pending);
  };
  button.hidden = false;
}

function signOut() {
  session.token = null;
  state.site = null;
  $("site-label").textContent = "";
  $("signin-token").value = "";
  show("signin");
}

// --- 扫码 ------------------------------------------------------------------------------------

function startOver(notice = "") {
  clearInterval(state.countdown);
  $("scan-resume").hidden = true;
  Object.assign(state, { code: null, redemption: null, cart: new Map() });
  $("scan-code").value = "";
  show("scan");
  $("scan-notice").textContent = notice;
  $("scan-code").focus();
}

function scanned(text) {
  const code = text.trim();
  if (!CODE.test(code)) {
    $("scan-error").textContent = "兑换码格式不正确，请重新扫描或输入";
    return;
  }
  state.code = code;
  pick();
}

async function useCamera(video, errorId, onCode) {
  try {
    state.stopCamera = await startScan(video, onCode);
  } catch (error) {
    $(errorId).textContent = `无法打开摄像头：${error.message}`;
  }
}

// --- 选购 ------------------------------------------------------------------------------------

async function pick() {
  show("pick");
  $("pick-items").replaceChildren();
  $("pick-total").textContent = "0";
  $("pick-member").textContent = "正在读取会员积分……";
  $("pick-loading").textContent = "正在读取商品……";
  $("pick-loading").hidden = false;
  state.points = null;
  try {
    // The member's points first: a used or expired code is said before goods are chosen.
    const [checked, { items }] = await Promise.all([
      api.checkCode(state.code), api.items(state.site.site_id)]);
    state.points = new Map(checked.points.map((p) => [p.asset, p.available]));
    $("pick-member").textContent = `会员 ${checked.volunteer_number}　可用 `
      + (checked.points.map((p) => amount(p.available, p.asset)).join("，") || "0 积分");
    state.items = items.filter((item) => item.status === "active");
  } catch (error) {
    $("pick-member").textContent = "";
    if (!signedOut(error)) setError("pick-error", "无法兑换：", error);
    return;
  } finally {
    $("pick-loading").hidden = true;
  }
  renderItems();
}

/** Whether the basket costs more than the member has; shown beside the total. */
function overBudget() {
  const needed = new Map();
  for (const item of state.items) {
    const n = item.price * (state.cart.get(item.id) ?? 0);
    if (n > 0) needed.set(item.asset, (needed.get(item.asset) ?? 0) + n);
  }
  const short = [...needed].filter(([asset, n]) => n > (state.points?.get(asset) ?? 0));
  $("pick-over").hidden = !state.points || short.length === 0;
  $("pick-over").textContent = short.length
    ? `积分不足：可用 ${short.map(([a]) => amount(state.points?.get(a) ?? 0, a)).join("，")}`
    : "";
  return Boolean(state.points) && short.length > 0;
}

const limit = (item) => Math.min(MAX_QUANTITY, item.available ?? MAX_QUANTITY);

function renderItems() {
  if (state.items.length === 0) {
    $("pick-loading").textContent = "本站暂无可兑换的商品";
    $("pick-loading").hidden = false;
  }
  $("pick-items").replaceChildren(...state.items.map((item) => {
    const quantity = el("output", { className: "quantity", value: state.cart.get(item.id) ?? 0 });
    const step = (delta) => {
      const n = Math.max(0, Math.min(limit(item), (state.cart.get(item.id) ?? 0) + delta));
      state.cart.set(item.id, n);
      quantity.value = n;
      minus.disabled = n === 0;
      plus.disabled = n >= limit(item);
      $("pick-total").textContent = totals(
        state.items.map((i) => [i.asset, i.price * (state.cart.get(i.id) ?? 0)]));
      $("pick-submit").disabled = overBudget();
    };
    const minus = el("button", { type: "button", className: "step", textContent: "−",
      ariaLabel: `减少 ${item.name}`, onclick: () => step(-1) });
    const plus = el("button", { type: "button", className: "step", textContent: "+",
      ariaLabel: `增加 ${item.name}`, onclick: () => step(1) });
    const stock = item.available === null ? "不限量"
      : item.available > 0 ? `可兑 ${item.available}` : "已兑完";
    const li = el("li", { className: "item" },
      el("span", { className: "name", textContent: item.name }),
      el("span", { className: "price", textContent: amount(item.price, item.asset) }),
      el("span", { className: "stock", textContent: stock }),
      el("span", { className: "stepper" }, minus, quantity, plus));
    li.dataset.itemId = item.id;
    step(0);
    return li;
  }));
}

async function submitCart() {
  const items = [...state.cart].filter(([, n]) => n > 0)
    .map(([item_id, quantity]) => ({ item_id, quantity }));
  if (items.length === 0) {
    $("pick-error").textContent = "请至少选择一件商品";
    return;
  }
  const attempt = attempts.reserve;
  const button = $("pick-submit");
  button.disabled = true;
  $("pick-error").textContent = "";
  try {
    const key = attempt.key({ code: state.code, items });
    const redemption = await api.reserve(state.code, items, key);
    attempt.settle();
    confirmScreen(redemption);
  } catch (error) {
    attempt.settle(error);
    if (signedOut(error)) return;
    setError("pick-error", "兑换失败：", error);
    if (error instanceof ApiError && error.slug === "insufficient-funds") {
      // The basket's total beside what the member has: "可用积分 12，本次需要 30".
      const needed = totals(
        state.items.map((i) => [i.asset, i.price * (state.cart.get(i.id) ?? 0)]));
      $("pick-error").textContent += `，本次需要 ${needed}`;
    }
  } finally {
    button.disabled = false;
  }
}

// --- 确认 ------------------------------------------------------------------------------------

function confirmScreen(redemption) {
  state.redemption = redemption;
  show("confirm");
  $("confirm-lines").replaceChildren(...redemption.lines.map((line) => el("tr", {},
    el("td", { textContent: line.name }),
    el("td", { textContent: amount(line.price, redemption.asset) }),
    el("td", { textContent: String(line.quantity) }),
    el("td", { textContent: amount(line.amount, redemption.asset) }))));
  $("confirm-total").textContent = amount(redemption.total, redemption.asset);
  $("confirm-ok").disabled = $("confirm-cancel").disabled = false;
  const deadline = Date.parse(redemption.expires_at);
  const tick = () => {
    const left = Math.max(0, Math.floor((deadline - serverNow()) / 1000));
    $("confirm-countdown").textContent =
      `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
    if (left === 0) {
      clearInterval(state.countdown);
      $("confirm-ok").disabled = true;
      $("confirm-error").textContent = "已超时，预留的积分将自动释放，请取消后重新扫码";
    }
  };
  clearInterval(state.countdown);
  state.countdown = setInterval(tick, 500);
  tick();
}

async function resolve(action) {
  const { id } = state.redemption;
  const attempt = attempts[action];
  const buttons = [$("confirm-ok"), $("confirm-cancel")];
  const wasDisabled = buttons.map((b) => b.disabled);
  for (const b of buttons) b.disabled = true;
  $("confirm-error").textContent = "";
  try {
    const answer = await api[action](id, attempt.key({ action, id }));
    attempt.settle();
    clearInterval(state.countdown);
    if (action === "cancel") startOver("已取消本次兑换，预留的积分已释放");
    else await receiptScreen(answer);
  } catch (error) {
    attempt.settle(error);
    buttons.forEach((b, i) => { b.disabled = wasDisabled[i]; });
    if (signedOut(error)) return;
    if (error instanceof ApiError && error.type?.endsWith(":redemption-not-pending")) {
      await settledElsewhere(id); // e.g. confirmed by a request whose answer was lost
      return;
    }
    if (action === "cancel" && error instanceof ApiError && error.status < 500) {
      startOver(`本次兑换未能取消（${explain(error)}），预留会自动过期释放`);
      return;
    }
    setError("confirm-error", action === "cancel" ? "取消失败：" : "兑换失败：", error);
  }
}

/** The redemption was settled by another request: show what it became. */
async function settledElsewhere(id) {
  try {
    const redemption = await api.redemption(id);
    if (redemption.status === "confirmed") {
      const { receipt, book, seq } = await api.receipt(redemption.tx_id);
      await receiptScreen({ redemption, receipt, book, seq, tx_id: redemption.tx_id });
    } else {
      const cancelled = redemption.status === "cancelled";
      startOver(cancelled ? "本次兑换已取消" : "本次兑换已过期，预留的积分已释放");
    }
  } catch (error) {
    setError("confirm-error", "查询兑换状态失败：", error);
  }
}

// --- 凭条 ------------------------------------------------------------------------------------

function claimsOf(token) {
  try {
    return JSON.parse(new TextDecoder().decode(b64urlDecode(token.split(".")[1], "载荷")));
  } catch {
    return null;
  }
}

async function receiptScreen(answer) {
  const { redemption } = answer;
  show("receipt");
  let token = answer.receipt;
  if (!token) {
    try {
      token = (await api.receipt(answer.tx_id)).receipt;
    } catch (error) {
      setError("receipt-error", "凭条暂不可用：", error);
    }
  }
  const claims = token ? claimsOf(token) : null;
  const when = claims?.posted_at ?? redemption.resolved_at ?? new Date().toISOString();
  const facts = [
    ["账本", answer.book],
    ["序号", String(answer.seq)],
    ["交易号", answer.tx_id],
    ["商品", redemption.lines.map((l) => `${l.name} × ${l.quantity}`).join("，")],
    ["合计", amount(redemption.total, redemption.asset)],
    ["时间", formatTime(when)],
  ];
  $("receipt-facts").replaceChildren(...facts.flatMap(([term, value]) =>
    [el("dt", { textContent: term }), el("dd", { textContent: value })]));
  $("receipt-token").value = token ?? "";
  $("receipt-verdict").replaceChildren();
  $("receipt-witness").hidden = true;
  $("receipt-witness").replaceChildren();
  showQr(answer.tx_id);
  if (!token) return;
  const checked = await checkReceipt(token);
  renderVerdict($("receipt-verdict"), checked);
  const policy = savedPolicy();
  if (policy && checked.valid) {
    await witnessVerdict(token, answer.tx_id, checked.keys.jwks, policy);
  }
}

/** With a witness policy: the entry's proof bundle from the service, its inclusion and its
 * checkpoint's cosignatures checked here against the policy; the verdict beside the receipt's. */
async function witnessVerdict(token, txId, jwks, policy) {
  const box = $("receipt-witness");
  box.hidden = false;
  box.className = "verdict";
  box.replaceChildren(el("p", { textContent: "正在核对见证人联署……" }));
  let result;
  try {
    const [proof, { verifyReceiptToken }] = await Promise.all([api.proof(txId), import(VERIFIER)]);
    result = await verifyReceiptToken(token, jwks, { proof, witnessPolicy: policy });
  } catch (error) {
    box.className = "verdict invalid";
    box.replaceChildren(el("p", { className: "verdict-word", textContent: "见证未核对" }),
      el("p", { className: "verdict-reason", textContent: `无法取得包含证明：${explain(error)}` }));
    box.dataset.witnessed = "unknown";
    return;
  }
  const names = (result.witnesses?.cosigned ?? []).map((c) => `${c.witness}（${c.key_name}，${
    typeof c.timestamp === "number" ? formatTime(c.timestamp * 1000) : c.timestamp}）`);
  box.className = `verdict ${result.ok ? "valid" : "invalid"}`;
  box.replaceChildren(
    el("p", { className: "verdict-word", textContent: result.ok ? "见证通过" : "见证未通过" }),
    el("p", { className: "verdict-reason", textContent: result.ok
      ? `本笔记录在检查点（${result.checkpoint.treeSize} 条）中，该检查点达到见证策略要求`
      : `原因：${result.failure.message_zh}` }),
    el("p", { className: "verdict-source", textContent: names.length
      ? `已联署的见证人：${names.join("；")}` : "没有策略所列的见证人联署" }));
  box.dataset.witnessed = String(result.ok);
}

async function showQr(txId) {
  const img = $("receipt-qr");
  img.hidden = true;
  $("receipt-qr-note").textContent = "正在生成二维码……";
  try {
    const svg = await api.receiptSvg(txId);
    if (state.qrUrl) URL.revokeObjectURL(state.qrUrl);
    state.qrUrl = URL.createObjectURL(svg);
    img.src = state.qrUrl;
    img.hidden = false;
    $("receipt-qr-note").textContent = "扫码可核验本凭条";
  } catch (error) {
    $("receipt-qr-note").textContent = `二维码不可用：${explain(error)}`;
  }
}

async function copyToken() {
  const box = $("receipt-token");
  try {
    await navigator.clipboard.writeText(box.value);
    $("receipt-copy").textContent = "已复制";
  } catch {
    box.select(); // no clipboard permission: leave it selected for a manual copy
    $("receipt-copy").textContent = "已选中，请手动复制";
  }
  setTimeout(() => { $("receipt-copy").textContent = "复制凭条"; }, 3000);
}

// --- 验证 ------------------------------------------------------------------------------------

const legText = (leg) =>
  `${leg.account_id.slice(0, 8)}… ${leg.amount > 0 ? "+" : ""}${amount(leg.amount, leg.asset)}`;

function renderVerdict(box, result) {
  const { valid, reason, claims, kid, keys } = result;
  box.className = `verdict ${valid ? "valid" : "invalid"}`;
  const source = !keys ? "未能取得公钥"
    : keys.source === "network" ? `公钥来源：服务器（刚刚获取，已缓存到本机）`
      : `公钥来源：本机缓存（获取于 ${formatTime(keys.fetchedAt)}；服务器不可达：${keys.error}）`;
  const rows = [];
  if (claims) {
    rows.push(["账本", claims.book], ["序号", String(claims.seq)], ["交易号", claims.tx_id],
      ["类型", claims.kind], ["记账时间", formatTime(claims.posted_at)],
      ["分录", claims.legs.map(legText).join("；")],
      ["签名密钥", kid]);
  }
  box.replaceChildren(
    el("p", { className: "verdict-word", textContent: valid ? "有效" : "无效" }),
    el("p", { className: "verdict-reason",
      textContent: valid ? "签名正确，由本服务的密钥在其有效期内签发" : `原因：${reason}` }),
    el("p", { className: "verdict-source", textContent: source }),
    el("dl", { className: "facts" }, ...rows.flatMap(([t, v]) =>
      [el("dt", { textContent: t }), el("dd", { textContent: v })])));
  box.dataset.valid = String(valid);
  box.dataset.source = keys?.source ?? "none";
}

// --- 见证策略 --------------------------------------------------------------------------------

function savedPolicy() {
  try {
    return localStorage.getItem(POLICY_KEY) || null;
  } catch {
    return null;
  }
}

function policyScreen() {
  if (!session.token) {
    show("signin");
    return;
  }
  if (state.screen !== "policy" && state.screen !== "verify") state.back = state.screen;
  show("policy");
  $("policy-text").value = savedPolicy() ?? "";
  showPolicy();
}

async function showPolicy() {
  const saved = savedPolicy();
  const out = $("policy-state");
  out.dataset.policy = saved ? "set" : "none";
  if (!saved) {
    out.textContent = "未设定见证策略：兑换后只核验凭条签名";
    return;
  }
  const { readWitnessPolicy } = await import(VERIFIER);
  const read = await readWitnessPolicy(saved);
  out.textContent = read.ok
    ? `已设定：${read.rule}；见证人 ${read.witnesses.map((w) => w.witness).join("、")}`
    : `本机保存的策略无效：${read.failure.message_zh}`;
}

async function savePolicy() {
  const text = $("policy-text").value;
  const out = $("policy-state");
  try {
    const { readWitnessPolicy } = await import(VERIFIER);
    const read = await readWitnessPolicy(text);
    if (!read.ok) {
      // Not kept: the policy saved before (if any) stays in force.
      out.textContent = `策略无效，未保存：${read.failure.message_zh}`;
      out.dataset.policy = "invalid";
      return;
    }
    localStorage.setItem(POLICY_KEY, text);
  } catch (error) {
    out.textContent = `未能保存：${explain(error)}`;
    out.dataset.policy = "invalid";
    return;
  }
  await showPolicy();
}

function leave() {
  if (!session.token) show("signin");
  else if (state.back && state.back !== "signin") show(state.back);
  else startOver();
}

function verifyScreen() {
  if (state.screen !== "verify") state.back = state.screen;
  show("verify");
  $("verify-verdict").replaceChildren();
  $("verify-verdict").className = "verdict";
  $("verify-token").focus();
}

async function verifyToken(token) {
  const box = $("verify-verdict");
  box.className = "verdict";
  box.replaceChildren(el("p", { textContent: "正在验证……" }));
  renderVerdict(box, await checkReceipt(token));
}

// --- wiring ----------------------------------------------------------------------------------

function wire() {
  $("signin-form").onsubmit = (e) => {
    e.preventDefault();
    signIn($("signin-token").value.trim());
  };
  $("pair-form").onsubmit = (e) => {
    e.preventDefault();
    pairWith($("pair-code").value.trim(), $("pair-name").value.trim());
  };
  $("nav-signout").onclick = signOut;
  $("nav-verify").onclick = verifyScreen;
  $("scan-form").onsubmit = (e) => {
    e.preventDefault();
    scanned($("scan-code").value);
  };
  $("scan-camera").onclick = () => useCamera($("scan-video"), "scan-error", scanned);
  $("pick-back").onclick = () => startOver();
  $("pick-submit").onclick = submitCart;
  $("confirm-ok").onclick = () => resolve("confirm");
  $("confirm-cancel").onclick = () => resolve("cancel");
  $("receipt-copy").onclick = copyToken;
  $("receipt-next").onclick = () => startOver();
  $("verify-form").onsubmit = (e) => {
    e.preventDefault();
    verifyToken($("verify-token").value);
  };
  $("verify-camera").onclick = () => useCamera($("verify-video"), "verify-verdict", (text) => {
    $("verify-token").value = text;
    verifyToken(text);
  });
  $("verify-back").onclick = leave;
  $("nav-policy").onclick = policyScreen;
  $("policy-form").onsubmit = (e) => {
    e.preventDefault();
    savePolicy();
  };
  $("policy-clear").onclick = () => {
    localStorage.removeItem(POLICY_KEY);
    $("policy-text").value = "";
    showPolicy();
  };
  $("policy-back").onclick = leave;
}

async function main() {
  wire();
  if (await canScan()) $("scan-camera").hidden = $("verify-camera").hidden = false;
  loadJwks().catch(() => {}); // keep the cached keys fresh for verifying offline
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("sw.js").catch(() => {}); // the page itself offline
  }
  if (session.token) await signIn(session.token);
  else show("signin");
}

main();
