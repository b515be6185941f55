// Integrity (everyone, the auditor first): each book's head, its latest signed checkpoint and
// that checkpoint's age, the signing keys and their periods; the export to download; and
// verification IN THE PAGE of an export (chain, Merkle root, receipts, checkpoint signature),
// a receipt or a service proof, with the browser's own WebCrypto (verify.js), so that what is
// checked does not depend on the service that produced it. A witness policy (C2SP tlog-policy,
// docs/witness.md) pasted or loaded here is kept in this browser only (localStorage), never
// taken from the service; with one set, the export's checkpoint and a receipt's proof bundle
// must meet it, and the verdicts name the witnesses that cosigned.

import { api } from "../api.js";
import { dateTime, lang, number, t } from "../i18n.js";
import { h as el } from "../dom.js";

const WORDS = {
  zh: {
    title: "完整性", head: "账本链头", seq: "最新序号", hash: "最新哈希", checkpoint: "最新签名检查点",
    size: "树大小", root: "默克尔根", signedAt: "签名时间", age: "距今", kid: "签名密钥",
    noCheckpoint: "尚无检查点", keys: "签名密钥（JWKS）", validFrom: "生效", validUntil: "失效",
    current: "当前", export: "导出账本", download: "下载导出文件（JSON Lines）",
    exportHelp: "导出文件含每条分录、其签名凭条与最新检查点，可离线核验。",
    verifyExport: "核验导出文件", file: "选择导出文件", verifyNow: "核验本账本的当前导出",
    trusted: "用本服务当前公布的密钥（JWKS）核验，而不是文件自带的密钥",
    verifying: "正在核验… {done}/{total}", passed: "核验通过", failed: "核验未通过",
    entries: "分录 {n} 条（序号 {from}–{to}），树大小 {size}", firstBad: "首个问题出在序号 {seq}",
    noSeq: "问题不在某一条分录上", ownKeys: "注意：使用的是文件自带的密钥，只能证明文件自洽",
    receipt: "核验凭条或服务证明", paste: "粘贴凭条（JWS）或服务证明（JSON）",
    check: "核验", scan: "扫码核验", camera: "摄像头画面", receiptOk: "凭条有效：账本 {book}，序号 {seq}，{kind}",
    proofOk: "服务证明有效",
    proofChanged: "签名有效，但出具后有 {n} 条记录已被冲正或更正，现仍成立 {hours} 小时", invalid: "无效：{reason}", seconds: "{n} 秒", minutes: "{n} 分钟",
    hours: "{n} 小时", days: "{n} 天", noExport: "本角色不能下载导出文件（由管理员或审计员下载）",
    policy: "见证策略", policyHelp: "见证人（如民政局、纪委、合作基金会）为每个检查点联署。设定策略后，导出文件的检查点和凭条的证明须达到其法定人数。策略只保存在本浏览器中，不从服务获取。",
    policyText: "策略文本（C2SP tlog-policy）", policyFile: "或从文件读取", policySave: "保存策略",
    policyClear: "清除策略", policyNone: "未设定见证策略：核验不检查见证人联署",
    policySet: "已设定：{rule}；见证人 {names}", policyBad: "策略无效：{reason}",
    cosigned: "见证人联署：{list}", cosignedNone: "没有所列见证人联署", proofUnavailable: "未能取得凭条的包含证明（{reason}），无法按见证策略核验",
    witnesses: "本账本的见证人", noWitnesses: "本账本尚未配置见证人（timebank witnesses add）",
    witness: "见证人", lastCosigned: "最近联署的树大小", cosignedAt: "联署时间", state: "状态",
    stateOk: "正常", stateDown: "暂时联系不上（{n} 次）：{error}",
    stateRefused: "拒绝联署：{refusal}",
    alarm: "警报：见证人拒绝了本账本的检查点。这意味着它看到的历史与本服务现在给出的不一致，须立即调查。",
  },
  en: {
    title: "Integrity", head: "Chain head", seq: "Latest seq", hash: "Latest hash",
    checkpoint: "Latest signed checkpoint", size: "Tree size", root: "Merkle root",
    signedAt: "Signed at", age: "Age", kid: "Signing key", noCheckpoint: "No checkpoint yet",
    keys: "Signing keys (JWKS)", validFrom: "Valid from", validUntil: "Valid until",
    current: "current", export: "Export", download: "Download the export (JSON Lines)",
    exportHelp: "The export holds every entry, its signed receipt and the latest checkpoint, to verify offline.",
    verifyExport: "Verify an export", file: "Choose an export file",
    verifyNow: "Verify this book's export now",
    trusted: "Verify with the keys this service publishes now (JWKS), not the file's own",
    verifying: "Verifying… {done}/{total}", passed: "Verified", failed: "Verification failed",
    entries: "{n} entries (seq {from}–{to}), tree size {size}", firstBad: "First problem at seq {seq}",
    noSeq: "The problem is not in one entry", ownKeys: "Note: the file's own keys were used; this only shows the file is self-consistent",
    receipt: "Verify a receipt or a service proof", paste: "Paste a receipt (JWS) or a service proof (JSON)",
    check: "Verify", scan: "Scan a QR code", camera: "Camera view", receiptOk: "Valid receipt: book {book}, seq {seq}, {kind}",
    proofOk: "Valid service proof",
    proofChanged: "Signature valid, but {n} of its records were reversed or corrected since; {hours} h still stand",
    invalid: "Invalid: {reason}", seconds: "{n} s",
    minutes: "{n} min", hours: "{n} h", days: "{n} days",
    noExport: "This role cannot download the export (admins and auditors do)",
    policy: "Witness policy", policyHelp: "Witnesses (the civil-affairs bureau, the discipline office, a partner foundation) cosign each checkpoint. With a policy set, an export's checkpoint and a receipt's proof must meet its quorum. The policy is kept in this browser only, never taken from the service.",
    policyText: "Policy text (C2SP tlog-policy)", policyFile: "or read it from a file",
    policySave: "Save the policy", policyClear: "Clear the policy",
    policyNone: "No witness policy: verification does not check cosignatures",
    policySet: "Set: {rule}; witnesses {names}", policyBad: "Invalid policy: {reason}",
    cosigned: "Cosigned by: {list}", cosignedNone: "No listed witness cosigned",
    proofUnavailable: "The receipt's inclusion proof is unavailable ({reason}): the witness policy cannot be checked",
    witnesses: "This book's witnesses", noWitnesses: "No witnesses configured for this book (timebank witnesses add)",
    witness: "Witness", lastCosigned: "Last cosigned size", cosignedAt: "Cosigned at", state: "State",
    stateOk: "OK", stateDown: "Unreachable ({n} in a row): {error}",
    stateRefused: "Refused: {refusal}",
    alarm: "Alarm: a witness refused this book's checkpoint. The history it saw does not extend what this service shows now; investigate at once.",
  },
};
const EXPORTERS = ["admin", "auditor"];
const POLICY_KEY = "timebank.console.witnessPolicy";

/** The witness policy this browser keeps (its text), or null. */
function savedPolicy() {
  return localStorage.getItem(POLICY_KEY) || null;
}

const message = (failure) => (lang() === "en" ? failure?.message_en : failure?.message_zh)
  ?? failure?.check;

/** Who cosigned, with the time each states, as one line (a verdict's `witnesses`). */
function cosignedLine(witnesses) {
  const list = witnesses.cosigned.map((c) => `${c.witness} (${c.key_name}, ${
    typeof c.timestamp === "number" ? dateTime(c.timestamp * 1000) : c.timestamp})`);
  const p = el("p", { className: "witnesses", textContent: list.length
    ? t(WORDS, "cosigned", { list: list.join(lang() === "en" ? "; " : "；") })
    : t(WORDS, "cosignedNone") });
  p.dataset.witnesses = witnesses.cosigned.map((c) => c.witness).join(" ");
  return p;
}

function age(signedAt) {
  const s = Math.max(0, Math.round((Date.now() - new Date(signedAt).getTime()) / 1000));
  if (s < 120) return t(WORDS, "seconds", { n: s });
  if (s < 7200) return t(WORDS, "minutes", { n: Math.round(s / 60) });
  if (s < 172800) return t(WORDS, "hours", { n: Math.round(s / 3600) });
  return t(WORDS, "days", { n: Math.round(s / 86400) });
}

function facts(rows) {
  const dl = el("dl", { className: "facts" });
  for (const [label, value, testId] of rows) {
    dl.append(el("dt", { textContent: label }), el("dd", { className: "mono", textContent: value }));
    if (testId) dl.lastChild.dataset.fact = testId;
  }
  return dl;
}

async function headCard(book) {
  const [head, checkpoint] = await Promise.all([
    api("GET", `/v1/books/${encodeURIComponent(book)}/head`),
    api("GET", `/v1/books/${encodeURIComponent(book)}/checkpoint`).catch((e) => {
      if (e.status === 404) return null;
      throw e;
    }),
  ]);
  const card = el("section", { className: "card", id: "book-head" },
    el("h3", { textContent: `${t(WORDS, "head")} · ${book}` }),
    facts([[t(WORDS, "seq"), number(head.seq), "seq"], [t(WORDS, "hash"), head.entry_hash, "hash"]]));
  card.append(el("h3", { textContent: t(WORDS, "checkpoint") }));
  if (checkpoint === null) {
    card.append(el("p", { className: "muted", textContent: t(WORDS, "noCheckpoint") }));
  } else {
    card.append(facts([
      [t(WORDS, "size"), number(checkpoint.tree_size), "tree-size"],
      [t(WORDS, "root"), checkpoint.root, "root"],
      [t(WORDS, "signedAt"), dateTime(checkpoint.signed_at), "signed-at"],
      [t(WORDS, "age"), age(checkpoint.signed_at), "age"],
      [t(WORDS, "kid"), checkpoint.kid, "kid"],
    ]));
  }
  return card;
}

async function keysCard() {
  const jwks = await api("GET", "/.well-known/jwks.json");
  const rows = jwks.keys.map((key) => el("tr", {},
    el("td", { className: "mono", textContent: key.kid }),
    el("td", { textContent: dateTime(key.valid_from) }),
    el("td", { textContent: key.valid_until ? dateTime(key.valid_until) : t(WORDS, "current") })));
  const table = el("table", {},
    el("thead", {}, el("tr", {},
      el("th", { scope: "col", textContent: "kid" }),
      el("th", { scope: "col", textContent: t(WORDS, "validFrom") }),
      el("th", { scope: "col", textContent: t(WORDS, "validUntil") }))),
    el("tbody", {}, ...rows));
  return { jwks, card: el("section", { className: "card", id: "keys" },
    el("h3", { textContent: t(WORDS, "keys") }), el("div", { className: "table-wrap" }, table)) };
}

function verdictLine(result) {
  const box = el("div", { id: "export-verdict", role: "status" });
  box.dataset.ok = String(result.ok);
  box.append(el("p", { className: result.ok ? "ok" : "bad",
    textContent: result.ok ? t(WORDS, "passed") : t(WORDS, "failed") }));
  if (result.ok && result.entries !== undefined) {
    box.append(el("p", { textContent: t(WORDS, "entries", {
      n: number(result.entries), from: result.fromSeq, to: result.toSeq,
      size: number(result.treeSize ?? 0) }) }));
  }
  if (!result.ok && result.failure) {
    const { seq, check } = result.failure;
    const message = lang() === "en" ? result.failure.message_en : result.failure.message_zh;
    const where = seq === null || seq === undefined ? t(WORDS, "noSeq") : t(WORDS, "firstBad", { seq });
    box.append(el("p", { className: "bad", textContent: `${where}: ${message} (${check})` }));
    if (seq !== null && seq !== undefined) box.dataset.seq = String(seq);
  }
  if (result.witnesses) box.append(cosignedLine(result.witnesses));
  if (result.trusted_keys === false) {
    box.append(el("p", { className: "muted", textContent: t(WORDS, "ownKeys") }));
  }
  return box;
}

function verifyCard(ctx, jwks) {
  const progress = el("p", { className: "muted", id: "export-progress", role: "status" });
  const out = el("div", { id: "export-result" });
  const trusted = el("input", { type: "checkbox", id: "trusted-keys", checked: true });
  const file = el("input", { type: "file", id: "export-file", accept: ".jsonl,.json,.txt" });

  async function run(text) {
    const { verifyExport } = await import("../../verify.js");
    out.replaceChildren();
    const result = await verifyExport(text, {
      jwks: trusted.checked ? jwks : undefined,
      witnessPolicy: savedPolicy(),
      onProgress: (done, total) => {
        progress.textContent = t(WORDS, "verifying", { done, total });
      },
    });
    progress.textContent = "";
    out.replaceChildren(verdictLine(result));
  }

  file.addEventListener("change", async () => {
    if (file.files.length) await run(await file.files[0].text());
  });
  const card = el("section", { className: "card", id: "verify-export" },
    el("h3", { textContent: t(WORDS, "verifyExport") }),
    el("label", { htmlFor: "export-file", textContent: t(WORDS, "file") }), file,
    el("label", { className: "check" }, trusted, document.createTextNode(` ${t(WORDS, "trusted")}`)));
  if (EXPORTERS.includes(ctx.role)) {
    const now = el("button", { type: "button", id: "verify-now", className: "secondary",
      textContent: t(WORDS, "verifyNow") });
    now.addEventListener("click", async () => {
      now.disabled = true;
      file.value = "";
      try {
        const response = await api("GET", `/v1/books/${encodeURIComponent(ctx.book)}/export`, { raw: true });
        await run(await response.text());
      } finally {
        now.disabled = false;
      }
    });
    card.append(el("p", {}, now));
  }
  card.append(progress, out);
  return card;
}

function exportCard(ctx) {
  const card = el("section", { className: "card", id: "export" }, el("h3", { textContent: t(WORDS, "export") }));
  if (!EXPORTERS.includes(ctx.role)) {
    card.append(el("p", { className: "muted", textContent: t(WORDS, "noExport") }));
    return card;
  }
  card.append(
    el("p", { className: "muted", textContent: t(WORDS, "exportHelp") }),
    el("a", { id: "export-link", href: `/v1/books/${encodeURIComponent(ctx.book)}/export`,
      download: `${ctx.book}-export.jsonl`, textContent: t(WORDS, "download") }));
  return card;
}

function receiptCard(jwks) {
  const input = el("textarea", { id: "receipt-input", rows: 4, spellcheck: false });
  const out = el("p", { id: "receipt-verdict", role: "status" });
  const cosigners = el("div", { id: "receipt-witnesses" });
  const button = el("button", { type: "submit", textContent: t(WORDS, "check") });
  const scan = el("button", { type: "button", id: "receipt-camera", className: "secondary",
    textContent: t(WORDS, "scan"), hidden: true });
  const video = el("video", { id: "receipt-video", hidden: true, muted: true, playsInline: true });
  video.setAttribute("aria-label", t(WORDS, "camera"));
  const form = el("form", { id: "receipt-form" },
    el("label", { htmlFor: "receipt-input", textContent: t(WORDS, "paste") }), input,
    el("p", { className: "buttons" }, button, scan), video, out, cosigners);
  // The camera where the browser reads QR codes (the kiosk's scanner): a receipt's QR holds the
  // token, a printed service proof's the address of its check, whose JSON answer is verified.
  import("/kiosk/scanner.js").then(async ({ canScan, startScan }) => {
    if (!(await canScan())) return;
    scan.hidden = false;
    scan.addEventListener("click", () => startScan(video, async (text) => {
      let found = text;
      try {
        const url = new URL(text, location.origin);
        if (url.origin === location.origin && url.pathname.startsWith("/v1/service-proofs/")) {
          found = await (await fetch(url, { headers: { Accept: "application/json" } })).text();
        }
      } catch { /* not an address: the text itself */ }
      input.value = found;
      form.requestSubmit();
    }));
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    const verify = await import("../../verify.js");
    out.className = "";
    delete out.dataset.valid;
    delete out.dataset.changed;
    cosigners.replaceChildren();
    // A JSON text is a service proof's answer; a token may be a receipt or a proof's token.
    const proof = () => verify.verifyServiceProof(text, jwks);
    const receipt = () => verify.verifyReceiptToken(text, jwks);
    let result = text.startsWith("{") ? await proof() : await receipt();
    let isProof = text.startsWith("{");
    if (!result.ok && !isProof) {
      const other = await proof();
      if (other.ok) [result, isProof] = [other, true];
    }
    // With a witness policy, a receipt is also checked in the checkpoint of its proof bundle,
    // which the service gives to whoever may read the transaction.
    const policy = savedPolicy();
    if (result.ok && !isProof && policy) {
      const path = `/v1/transactions/${encodeURIComponent(result.claims.tx_id)}/proof`;
      const bundle = await api("GET", path, { raw: true }).then((r) => r.text(), (e) => {
        cosigners.append(el("p", { className: "bad",
          textContent: t(WORDS, "proofUnavailable", { reason: e.message }) }));
        return null;
      });
      // Without the bundle the policy cannot be checked: the verdict says so (not valid).
      result = await verify.verifyReceiptToken(text, jwks, { proof: bundle,
        witnessPolicy: policy });
    }
    if (result.witnesses) cosigners.append(cosignedLine(result.witnesses));
    // The public check's answer (docs/service-proof.md §7) also says whether the records
    // still stand: the signature proves what was issued, not that it still holds.
    const changed = isProof && result.ok ? standingOf(text) : null;
    if (changed) {
      out.textContent = t(WORDS, "proofChanged", changed);
      out.className = "warn";
      out.dataset.changed = "true";
    } else if (result.ok) {
      const claims = result.claims ?? {};
      out.textContent = isProof ? t(WORDS, "proofOk")
        : t(WORDS, "receiptOk", { book: claims.book, seq: claims.seq, kind: claims.kind });
      out.className = "ok";
    } else {
      out.textContent = t(WORDS, "invalid", { reason: message(result.failure) });
      out.className = "bad";
    }
    out.dataset.valid = String(result.ok);
  });
  return el("section", { className: "card", id: "verify-receipt" }, el("h3", { textContent: t(WORDS, "receipt") }), form);
}

/** From a proof check's JSON answer, how many records no longer stand and the hours that do,
 * or null when all stand (or the text is not such an answer). */
function standingOf(text) {
  try {
    const answer = JSON.parse(text);
    if (answer?.records_stand !== false || !Array.isArray(answer.changed_records)) return null;
    return { n: answer.changed_records.length, hours: answer.standing_totals?.hours ?? "?" };
  } catch {
    return null;
  }
}

function policyCard() {
  const text = el("textarea", { id: "policy-text", rows: 6, spellcheck: false,
    value: savedPolicy() ?? "" });
  const file = el("input", { type: "file", id: "policy-file", accept: ".txt,.policy,text/plain" });
  const state = el("p", { id: "policy-state", role: "status" });
  const save = el("button", { type: "button", id: "policy-save",
    textContent: t(WORDS, "policySave") });
  const clear = el("button", { type: "button", id: "policy-clear", className: "secondary",
    textContent: t(WORDS, "policyClear") });

  async function show() {
    const saved = savedPolicy();
    state.className = "";
    state.dataset.policy = saved ? "set" : "none";
    if (!saved) {
      state.textContent = t(WORDS, "policyNone");
      return;
    }
    const { readWitnessPolicy } = await import("../../verify.js");
    const read = await readWitnessPolicy(saved);
    state.textContent = read.ok
      ? t(WORDS, "policySet", { rule: read.rule,
        names: read.witnesses.map((w) => w.witness).join(", ") })
      : t(WORDS, "policyBad", { reason: message(read.failure) });
  }

  save.addEventListener("click", async () => {
    const { readWitnessPolicy } = await import("../../verify.js");
    const read = await readWitnessPolicy(text.value);
    if (!read.ok) {
      // A policy that cannot be read is not kept: the one saved before stays in force.
      state.textContent = t(WORDS, "policyBad", { reason: message(read.failure) });
      state.className = "bad";
      state.dataset.policy = "invalid";
      return;
    }
    localStorage.setItem(POLICY_KEY, text.value);
    await show();
  });
  clear.addEventListener("click", async () => {
    localStorage.removeItem(POLICY_KEY);
    text.value = "";
    await show();
  });
  file.addEventListener("change", async () => {
    if (file.files.length) text.value = await file.files[0].text();
  });
  show();
  return el("section", { className: "card", id: "witness-policy" },
    el("h3", { textContent: t(WORDS, "policy") }),
    el("p", { className: "muted", textContent: t(WORDS, "policyHelp") }),
    el("label", { htmlFor: "policy-text", textContent: t(WORDS, "policyText") }), text,
    el("label", { htmlFor: "policy-file", textContent: t(WORDS, "policyFile") }), file,
    el("p", { className: "buttons" }, save, clear), state);
}

/** Each witness of the book (GET /v1/books/{code}/witnesses): the size it last cosigned, when,
 * and whether it is unreachable or refusing. A refusal is an alarm, shown first and loud. */
async function witnessStatusCard(book) {
  const card = el("section", { className: "card", id: "witness-status" },
    el("h3", { textContent: t(WORDS, "witnesses") }));
  const found = await api("GET", `/v1/books/${encodeURIComponent(book)}/witnesses`);
  if (found.alarm) {
    card.append(el("p", { className: "alarm", role: "alert", textContent: t(WORDS, "alarm") }));
  }
  if (!found.items.length) {
    card.append(el("p", { className: "muted", textContent: t(WORDS, "noWitnesses") }));
    return card;
  }
  const state = (w) => {
    if (w.alarm) return t(WORDS, "stateRefused", { refusal: w.refusal ?? "" });
    if (w.failures) return t(WORDS, "stateDown", { n: number(w.failures), error: w.last_error ?? "" });
    return t(WORDS, "stateOk");
  };
  const rows = found.items.map((w) => el("tr", { className: w.alarm ? "refused" : "" },
    el("td", { className: "mono", textContent: w.name }),
    el("td", { textContent: w.cosigned_size === null ? "—" : number(w.cosigned_size) }),
    el("td", { textContent: w.cosigned_at ? dateTime(w.cosigned_at) : "—" }),
    el("td", { textContent: state(w) })));
  card.append(el("table", {},
    el("thead", {}, el("tr", {}, ...["witness", "lastCosigned", "cosignedAt", "state"].map(
      (k) => el("th", { scope: "col", textContent: t(WORDS, k) })))),
    el("tbody", {}, ...rows)));
  return card;
}

export async function render(root, ctx) {
  const [head, keys, witnesses] = await Promise.all([
    headCard(ctx.book), keysCard(), witnessStatusCard(ctx.book)]);
  root.append(
    el("h2", { textContent: t(WORDS, "title") }),
    el("div", { className: "grid" }, head, keys.card),
    witnesses,
    policyCard(),
    exportCard(ctx),
    verifyCard(ctx, keys.jwks),
    receiptCard(keys.jwks),
  );
}
