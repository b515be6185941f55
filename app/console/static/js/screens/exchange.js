// Exchange & regions (admins): the exchange rules and their versions, recognition agreements
// between books (通存通兑), the reconciliation of the clearing accounts, the book's public time
// pool, and the assets with the book's asset policies (docs/exchange.md §1, §4, §6, §7, §10).
//
// Every figure is what the API answers; every write goes through the API, which decides.

import { allPages, api } from "../api.js";
import { dateTime, number, t } from "../i18n.js";
import { h, field, select, table, said, writeForm as baseWriteForm } from "../dom.js";

const WORDS = {
  zh: {
    title: "兑换与区域", minutes: "分钟", points: "积分",
    rules: "兑换规则", rulesHelp: "规则按代码分组，每次修改都是新版本；新版本发布时旧版本自动停用。",
    noRules: "本账本还没有兑换规则。", version: "版本", pair: "兑换", ratio: "比例",
    limits: "每次限额", caps: "周期上限", validity: "有效期", status: "状态", hash: "规则哈希",
    actions: "操作", published: "已发布", retired: "已停用", inForce: "生效中",
    notInForce: "未生效", retiredBecause: "停用原因：{reason}", replacedBy: "被第 {n} 版取代",
    from: "自", until: "至", none: "无", perDay: "日", perMonth: "月",
    perYear: "年", ratioSays: "{give} → {get}", ratioText: "{num}/{den}（{says}）",
    openEnded: "{from}（长期）", retire: "停用", retireReason: "停用原因",
    retireConfirm: "确认停用", cancel: "取消", retiredToast: "已停用 {code} 第 {v} 版",
    newVersion: "发布新版本", ruleText: "第 {v} 版规则文本与哈希", loadingText: "读取中…",
    publish: "发布规则", publishHelp: "代码已存在时发布为新版本，并停用当前版本。",
    code: "规则代码", fromAsset: "付出资产", toAsset: "获得资产", num: "比例分子",
    den: "比例分母", minAmount: "每次最少（付出资产单位）", maxAmount: "每次最多（可留空）",
    pool: "出资机构（资金池）", noPools: "本账本还没有机构开设资金池，无法发布规则。",
    poolAssets: "{name}（资金池：{assets}）", publishButton: "发布",
    publishedToast: "已发布 {code} 第 {v} 版",
    agreements: "通存通兑协议", agreementsHelp: "一个账本按比例承认另一个账本的单位。建立协议需要同时管辖两个账本的管理员（平台管理员）；任一方账本的管理员都可结束协议。",
    noAgreements: "本账本没有通存通兑协议。", agreementList: "协议列表", direction: "方向", assets: "资产", created: "建立",
    ended: "结束", active: "生效", endedStatus: "已结束", end: "结束协议", endConfirm: "确认结束",
    endedToast: "协议已结束", newAgreement: "建立协议", fromBook: "转出账本",
    toBook: "转入账本", agree: "建立", agreedToast: "协议已建立",
    reconciliation: "清算账户对账", reconHelp: "两个账本互相的清算账户应当镜像：余额等于跨区分录推算的数，两边笔数一致，转账记录与日记账一致。",
    noPairs: "本账本与其他账本之间还没有协议或清算账户。", mirrored: "✓ 镜像一致",
    notMirrored: "✗ 不一致", recordedMatch: "✓ 转账记录与日记账相符",
    recordedMismatch: "✗ 转账记录与日记账不符", allBooks: "全部账本对：", clearing: "清算账户",
    book: "账本", asset: "资产", posted: "余额", implied: "分录推算", forBook: "{a} 对 {b}",
    flows: "跨区转账", journalCount: "日记账笔数", journalOut: "转出合计", journalIn: "转入合计",
    recordedCount: "记录笔数", recordedOut: "记录转出", recordedIn: "记录转入",
    heads: "快照时账本头：{heads}", unmatched: "无法配对的分录", unplaced: "无法归属的分录",
    notOpened: "未开设",
    publicPool: "公益时间池", publicPoolHelp: "会员捐入、溢出的单位在此，机构和管理员按事由发放给有需要的会员。",
    noPool: "本账本的公益时间池尚未开设。", available: "可用", recent: "最近变动",
    when: "时间", kind: "类型", amount: "数量", after: "变动后余额", grant: "发放",
    grantTitle: "从公益时间池发放", memberId: "会员 ID", reason: "事由（不要写姓名、电话或身份证号）",
    grantButton: "发放", grantedToast: "已发放 {amount}，会员实收 {received}",
    "kind.public_pool.donation": "会员捐赠", "kind.public_pool.grant": "发放",
    "kind.service_credit": "服务时长溢出", "kind.gift": "转赠溢出", "kind.exchange": "兑换溢出",
    "kind.recognition.in": "跨区转入溢出",
    assetsTitle: "资产与账本政策", assetList: "资产", name: "名称", unit: "单位",
    issuer: "发行账本", validityYears: "有效期（年）", never: "不过期", policies: "本账本的资产政策",
    storageCap: "存储上限", giftCap: "每年转赠上限", giftRelations: "允许的转赠关系",
    noPolicies: "本账本没有设置资产政策（不限）。", unlimited: "不限",
    sectionFailed: "这一部分加载失败：{reason}",
  },
  en: {
    title: "Exchange & regions", minutes: "min", points: "points",
    rules: "Exchange rules", rulesHelp: "Rules are grouped by code; every change is a new version, and publishing one retires the version before it.",
    noRules: "This book has no exchange rules yet.", version: "Version", pair: "Exchange",
    ratio: "Ratio", limits: "Per exchange", caps: "Caps", validity: "Valid", status: "Status",
    hash: "Rule hash", actions: "Actions", published: "published", retired: "retired",
    inForce: "in force", notInForce: "not in force", retiredBecause: "Retired: {reason}",
    replacedBy: "replaced by version {n}", from: "from", until: "until",
    none: "none", perDay: "day", perMonth: "month", perYear: "year", ratioSays: "{give} → {get}",
    ratioText: "{num}/{den} ({says})", openEnded: "{from} (open-ended)",
    retire: "Retire", retireReason: "Reason for retiring", retireConfirm: "Retire it",
    cancel: "Cancel", retiredToast: "Retired {code} version {v}", newVersion: "Publish a new version",
    ruleText: "Version {v}: rule text and hash", loadingText: "Loading…",
    publish: "Publish a rule", publishHelp: "An existing code is published as its next version, which retires the current one.",
    code: "Rule code", fromAsset: "Member gives", toAsset: "Member receives", num: "Ratio numerator",
    den: "Ratio denominator", minAmount: "Least per exchange (units given)",
    maxAmount: "Most per exchange (optional)", pool: "Paying organisation (pools)",
    noPools: "No organisation of this book has opened pools yet, so no rule can be published.",
    poolAssets: "{name} (pools: {assets})", publishButton: "Publish",
    publishedToast: "Published {code} version {v}",
    agreements: "Recognition agreements", agreementsHelp: "One book accepts another book's units at a ratio. Making one needs an admin reaching both books (a platform admin); an admin of either book may end it.",
    noAgreements: "This book has no recognition agreements.", agreementList: "List of agreements", direction: "Direction",
    assets: "Assets", created: "Made", ended: "Ended", active: "active", endedStatus: "ended",
    end: "End agreement", endConfirm: "End it", endedToast: "Agreement ended",
    newAgreement: "Make an agreement", fromBook: "From book", toBook: "To book", agree: "Make",
    agreedToast: "Agreement made",
    reconciliation: "Clearing accounts reconciliation", reconHelp: "Each book's clearing account for the other must mirror it: balances equal what the transfer entries imply, as many entries in as out, and the transfer records match the journals.",
    noPairs: "This book has no agreement or clearing account with another book yet.",
    mirrored: "✓ mirrored", notMirrored: "✗ not mirrored", recordedMatch: "✓ records match the journals",
    recordedMismatch: "✗ records differ from the journals", allBooks: "All pairs of books:",
    clearing: "Clearing accounts", book: "Book", asset: "Asset", posted: "Balance",
    implied: "Implied by entries", forBook: "{a} for {b}", flows: "Transfers between books",
    journalCount: "Entries", journalOut: "Out (journal)", journalIn: "In (journal)",
    recordedCount: "Records", recordedOut: "Out (records)", recordedIn: "In (records)",
    heads: "Book heads in the snapshot: {heads}", unmatched: "Unmatched entries",
    unplaced: "Entries of no pair", notOpened: "not opened",
    publicPool: "Public time pool", publicPoolHelp: "Members' donations and what storage caps turn away; organisations and admins grant from it to members in need, with a reason.",
    noPool: "This book's public time pool has not been opened yet.", available: "available",
    recent: "Latest movements", when: "When", kind: "Kind", amount: "Amount",
    after: "Balance after", grant: "Grant", grantTitle: "Grant from the public time pool",
    memberId: "Member id", reason: "Reason (no names, phone or ID numbers)", grantButton: "Grant",
    grantedToast: "Granted {amount}; the member received {received}",
    "kind.public_pool.donation": "member donation", "kind.public_pool.grant": "grant",
    "kind.service_credit": "service overflow", "kind.gift": "gift overflow",
    "kind.exchange": "exchange overflow", "kind.recognition.in": "transfer-in overflow",
    assetsTitle: "Assets and the book's policies", assetList: "Assets", name: "Name",
    unit: "Unit", issuer: "Issuer's book", validityYears: "Validity (years)", never: "never lapse",
    policies: "This book's asset policies", storageCap: "Storage cap", giftCap: "Gifts per year",
    giftRelations: "Gift relationships", noPolicies: "This book sets no asset policy (no limits).",
    unlimited: "no limit", sectionFailed: "This part could not be loaded: {reason}",
  },
};

const w = (key, values) => t(WORDS, key, values);

/** Units of an asset as people read them: HOUR in minutes, POINT in points. */
function amount(asset, value) {
  if (value === null || value === undefined) return "—";
  const unit = { HOUR: w("minutes"), POINT: w("points") }[asset];
  return `${number(value)} ${unit ?? asset ?? ""}`.trim();
}

function badge(text, tone) {
  return h("span", { class: `badge ${tone ?? ""}`.trim(), text });
}

/** The screen's forms are stacked. */
function writeForm(props, children, action) {
  return baseWriteForm({ class: "stack", ...props }, children, action);
}

const integer = (value) => (value === "" || value === null ? null : Number(value));

/** A card whose content is built by `build`; a failure shows in the card, not the screen. */
async function card(id, title, build) {
  const section = h("section", { class: "card", "aria-labelledby": `${id}-title`, data: { section: id } },
    h("h3", { id: `${id}-title`, text: title }));
  try {
    section.append(...await build());
  } catch (error) {
    section.append(h("p", { class: "error", role: "alert", text: w("sectionFailed", { reason: said(error) }) }));
  }
  return section;
}

// ---- Exchange rules -------------------------------------------------------------------------

function retiredReason(reason) {
  const replaced = /^replaced by version (\d+)$/.exec(reason ?? "");
  return replaced ? w("replacedBy", { n: replaced[1] }) : reason;
}

function validity(rule) {
  const from = `${w("from")} ${dateTime(rule.valid_from)}`;
  return rule.valid_until ? `${from} ${w("until")} ${dateTime(rule.valid_until)}` : w("openEnded", { from });
}

function caps(rule) {
  const parts = [["day", "perDay"], ["month", "perMonth"], ["year", "perYear"]]
    .filter(([period]) => rule.caps[period] !== null)
    .map(([period, label]) => `${w(label)} ${amount(rule.from_asset, rule.caps[period])}`);
  return parts.length ? parts.join(" · ") : w("none");
}

function ratio(rule) {
  const { num, den } = rule.ratio;
  const says = w("ratioSays", { give: amount(rule.from_asset, den), get: amount(rule.to_asset, num) });
  return w("ratioText", { num, den, says });
}

function ruleRow(version, ctx, prefill) {
  const rule = version.rule;
  const status = h("td", { class: "status" },
    version.status === "published" ? badge(w("published"), "ok") : badge(w("retired"), "muted"), " ",
    version.in_force ? badge(w("inForce"), "ok") : badge(w("notInForce"), "muted"));
  if (version.retired_reason) {
    status.append(h("div", { class: "muted", text: w("retiredBecause", { reason: retiredReason(version.retired_reason) }) }));
  }
  const actions = h("td", { class: "actions" });
  if (ctx.canWrite && version.status === "published") {
    const reason = h("input", { name: "reason", required: true, maxlength: 200 });
    const form = writeForm({ hidden: true, class: "inline" }, [
      field(w("retireReason"), reason),
      h("div", { class: "row" },
        h("button", { type: "submit", class: "danger", text: w("retireConfirm") }),
        h("button", { type: "button", class: "secondary", text: w("cancel"), onclick: () => { form.hidden = true; open.hidden = false; } })),
    ], async (data, key) => {
      await api("POST", `/v1/exchange-rules/${version.id}/retire`, { body: { reason: data.get("reason").trim() }, key });
      ctx.toast(w("retiredToast", { code: version.code, v: version.version }));
      await ctx.rerender();
    });
    const open = h("button", { type: "button", class: "secondary", text: w("retire"),
      "aria-label": `${w("retire")} ${version.code} v${version.version}`,
      onclick: () => { form.hidden = false; open.hidden = true; reason.focus(); } });
    actions.append(open, form);
  }
  if (ctx.canWrite && prefill) {
    actions.append(h("button", { type: "button", class: "secondary", text: w("newVersion"),
      "aria-label": `${w("newVersion")}: ${version.code}`, onclick: () => prefill(rule) }));
  }
  const limits = `${amount(rule.from_asset, rule.min_amount)} – ${rule.max_amount === null ? w("unlimited") : amount(rule.from_asset, rule.max_amount)}`;
  return h("tr", { data: { ruleId: version.id, version: String(version.version), status: version.status } },
    h("td", { class: "num version", text: `v${version.version}` }),
    h("td", { text: `${rule.from_asset} → ${rule.to_asset}` }),
    h("td", { class: "ratio", text: ratio(rule) }),
    h("td", { text: limits }),
    h("td", { text: caps(rule) }),
    h("td", { class: "validity", text: validity(rule) }),
    status,
    h("td", { class: "hash" }, h("code", { class: "mono", text: version.rule_hash })),
    actions);
}

/** The version's full document, read from GET /v1/exchange-rules/{id} when first opened. */
function ruleText(version) {
  const body = h("pre", { class: "mono rule-text", text: w("loadingText") });
  const details = h("details", { data: { ruleText: version.id } },
    h("summary", { text: w("ruleText", { v: version.version }) }), body);
  let loaded = false;
  details.addEventListener("toggle", async () => {
    if (!details.open || loaded) return;
    loaded = true;
    try {
      const found = await api("GET", `/v1/exchange-rules/${version.id}`);
      body.textContent = `SHA-256 (JCS) = ${found.rule_hash}\n\n${JSON.stringify(found.rule, null, 2)}`;
    } catch (error) {
      loaded = false;
      body.textContent = said(error);
    }
  });
  return details;
}

function publishForm(ctx, assets, organisations) {
  const withPools = organisations
    .map((o) => ({ o, assets: [...new Set(o.accounts.filter((a) => a.purpose === "pool").map((a) => a.asset))] }))
    .filter((entry) => entry.assets.length > 0);
  const assetOptions = assets.map((a) => [a.code, `${a.code} · ${a.name}`]);
  const code = h("input", { name: "code", required: true, pattern: "[a-z][a-z0-9_\\-]{0,63}", maxlength: 64, autocomplete: "off", spellcheck: "false" });
  const from = select("from_asset", assetOptions, "HOUR");
  const to = select("to_asset", assetOptions, "POINT");
  const num = h("input", { name: "num", type: "number", min: 1, max: 1000000, step: 1, required: true, value: "1" });
  const den = h("input", { name: "den", type: "number", min: 1, max: 1000000, step: 1, required: true, value: "1" });
  const min = h("input", { name: "min_amount", type: "number", min: 1, step: 1, required: true, value: "1" });
  const max = h("input", { name: "max_amount", type: "number", min: 1, step: 1 });
  const pool = select("pool", withPools.map(({ o, assets: held }) =>
    [o.id, w("poolAssets", { name: o.name, assets: held.join("、") })]), withPools[0]?.o.id);
  const form = writeForm({ data: { form: "publish" } }, [
    h("h4", { id: "publish-title", text: w("publish") }),
    h("p", { class: "muted", text: w("publishHelp") }),
    h("div", { class: "row" }, field(w("code"), code), field(w("fromAsset"), from), field(w("toAsset"), to)),
    h("div", { class: "row" }, field(w("num"), num), field(w("den"), den), field(w("minAmount"), min), field(w("maxAmount"), max)),
    h("div", { class: "row" }, field(w("pool"), pool)),
    withPools.length ? null : h("p", { class: "bad", text: w("noPools") }),
    h("div", { class: "row" }, h("button", { type: "submit", disabled: withPools.length === 0, text: w("publishButton") })),
  ], async (data, key) => {
    const body = {
      code: data.get("code").trim(),
      from_asset: data.get("from_asset"),
      to_asset: data.get("to_asset"),
      ratio: { num: integer(data.get("num")), den: integer(data.get("den")) },
      min_amount: integer(data.get("min_amount")),
      max_amount: integer(data.get("max_amount")),
      pools: [{ book: ctx.book, organisation_id: data.get("pool") }],
    };
    const published = await api("POST", "/v1/exchange-rules", { body, key });
    ctx.toast(w("publishedToast", { code: published.code, v: published.version }));
    await ctx.rerender();
  });
  form.setAttribute("aria-labelledby", "publish-title");
  /** Fill the form from a version, for its next one. */
  const prefill = (rule) => {
    code.value = rule.code;
    from.value = rule.from_asset;
    to.value = rule.to_asset;
    num.value = String(rule.ratio.num);
    den.value = String(rule.ratio.den);
    min.value = String(rule.min_amount);
    max.value = rule.max_amount === null ? "" : String(rule.max_amount);
    const here = rule.pools.find((p) => p.book === ctx.book);
    if (here && withPools.some(({ o }) => o.id === here.organisation_id)) pool.value = here.organisation_id;
    form.scrollIntoView({ block: "start" });
    num.focus();
  };
  return { form, prefill };
}

async function rulesCard(ctx, assets, organisations) {
  return card("rules", w("rules"), async () => {
    const rules = (await api("GET", "/v1/exchange-rules"))
      .filter((version) => version.rule.pools.some((p) => p.book === ctx.book));
    const publishing = ctx.canWrite ? publishForm(ctx, await assets, await organisations) : null;
    const groups = new Map();
    for (const version of rules) {
      if (!groups.has(version.code)) groups.set(version.code, []);
      groups.get(version.code).push(version);
    }
    const parts = [h("p", { class: "muted", text: w("rulesHelp") })];
    if (groups.size === 0) parts.push(h("p", { text: w("noRules") }));
    for (const [code, versions] of groups) {
      versions.sort((a, b) => b.version - a.version);
      parts.push(h("div", { class: "rule-group", data: { code } },
        h("h4", {}, h("code", { class: "mono", text: code })),
        table([w("version"), w("pair"), w("ratio"), w("limits"), w("caps"), w("validity"), w("status"), w("hash"), w("actions")],
          versions.map((version, i) => ruleRow(version, ctx, i === 0 ? publishing?.prefill : null)), { label: `${w("rules")} ${code}` }),
        versions.map(ruleText)));
    }
    if (publishing) parts.push(publishing.form);
    return parts;
  });
}

// ---- Recognition agreements and the reconciliation ------------------------------------------

async function agreementsCard(ctx, assets) {
  return card("agreements", w("agreements"), async () => {
    const query = new URLSearchParams({ book: ctx.book, limit: "500" });
    const { items } = await api("GET", `/v1/recognition/agreements?${query}`);
    const rows = items.map((agreement) => {
      const actions = h("td", { class: "actions" });
      if (ctx.canWrite && agreement.status === "active") {
        const confirm = writeForm({ hidden: true, class: "inline" }, [h("div", { class: "row" },
          h("button", { type: "submit", class: "danger", text: w("endConfirm") }),
          h("button", { type: "button", class: "secondary", text: w("cancel"), onclick: () => { confirm.hidden = true; ask.hidden = false; } }))],
        async (_data, key) => {
          await api("POST", `/v1/recognition/agreements/${agreement.id}/end`, { key });
          ctx.toast(w("endedToast"));
          await ctx.rerender();
        });
        const ask = h("button", { type: "button", class: "secondary", text: w("end"),
          "aria-label": `${w("end")} ${agreement.from_book} → ${agreement.to_book}`,
          onclick: () => { confirm.hidden = false; ask.hidden = true; } });
        actions.append(ask, confirm);
      }
      return h("tr", { data: { agreementId: agreement.id, status: agreement.status } },
        h("td", { text: `${agreement.from_book} → ${agreement.to_book}` }),
        h("td", { text: `${agreement.from_asset} → ${agreement.to_asset}` }),
        h("td", { class: "num ratio", text: `${agreement.ratio.num}/${agreement.ratio.den}` }),
        h("td", {}, agreement.status === "active" ? badge(w("active"), "ok") : badge(w("endedStatus"), "muted")),
        h("td", { text: dateTime(agreement.created_at) }),
        h("td", { text: agreement.ended_at ? dateTime(agreement.ended_at) : "—" }),
        actions);
    });
    const parts = [h("p", { class: "muted", text: w("agreementsHelp") })];
    parts.push(rows.length
      ? table([w("direction"), w("assets"), { text: w("ratio"), class: "num" }, w("status"), w("created"), w("ended"), w("actions")], rows, { label: w("agreementList") })
      : h("p", { text: w("noAgreements") }));
    if (ctx.canWrite) {
      const assetOptions = (await assets).map((a) => [a.code, a.code]);
      parts.push(writeForm({ data: { form: "agreement" }, "aria-labelledby": "agreement-title" }, [
        h("h4", { id: "agreement-title", text: w("newAgreement") }),
        h("div", { class: "row" },
          field(w("fromBook"), h("input", { name: "from_book", required: true, value: ctx.book, pattern: "[a-z][a-z0-9_\\-]{0,31}", autocomplete: "off" })),
          field(w("toBook"), h("input", { name: "to_book", required: true, pattern: "[a-z][a-z0-9_\\-]{0,31}", autocomplete: "off" })),
          field(w("fromAsset"), select("from_asset", assetOptions, "HOUR")),
          field(w("toAsset"), select("to_asset", assetOptions, "HOUR"))),
        h("div", { class: "row" },
          field(w("num"), h("input", { name: "num", type: "number", min: 1, max: 1000000, step: 1, required: true, value: "1" })),
          field(w("den"), h("input", { name: "den", type: "number", min: 1, max: 1000000, step: 1, required: true, value: "1" }))),
        h("div", { class: "row" }, h("button", { type: "submit", text: w("agree") })),
      ], async (data, key) => {
        const body = {
          from_book: data.get("from_book").trim(), to_book: data.get("to_book").trim(),
          from_asset: data.get("from_asset"), to_asset: data.get("to_asset"),
          ratio_num: integer(data.get("num")), ratio_den: integer(data.get("den")),
        };
        await api("POST", "/v1/recognition/agreements", { body, key });
        ctx.toast(w("agreedToast"));
        await ctx.rerender();
      }));
    }
    return parts;
  });
}

function verdict(ok, good, bad) {
  return h("span", { class: `verdict ${ok ? "ok" : "bad"}`, text: w(ok ? good : bad) });
}

function clearingRow(side) {
  const differs = side.posted !== side.implied;
  return h("tr", { data: { clearing: `${side.book}|${side.asset ?? ""}` } },
    h("td", { text: side.book }),
    h("td", { text: side.asset ?? "—" }),
    h("td", { class: `num posted ${differs ? "bad" : ""}`.trim(), text: side.account_id ? amount(side.asset, side.posted) : w("notOpened") }),
    h("td", { class: "num implied", text: amount(side.asset, side.implied) }));
}

function flowRow(flow) {
  const { journal, recorded } = flow;
  const mismatch = journal.transfers !== recorded.transfers || journal.from_amount !== recorded.from_amount
    || journal.to_amount !== recorded.to_amount;
  return h("tr", { data: { flow: `${flow.from_book}>${flow.to_book}` }, class: mismatch ? "bad" : null },
    h("td", { text: `${flow.from_book} → ${flow.to_book}` }),
    h("td", { class: "num", text: number(journal.transfers) }),
    h("td", { class: "num", text: amount(flow.from_asset, journal.from_amount) }),
    h("td", { class: "num", text: amount(flow.to_asset, journal.to_amount) }),
    h("td", { class: "num", text: number(recorded.transfers) }),
    h("td", { class: "num", text: amount(flow.from_asset, recorded.from_amount) }),
    h("td", { class: "num", text: amount(flow.to_asset, recorded.to_amount) }));
}

function strays(title, entries) {
  if (!entries.length) return null;
  return h("div", { class: "bad" }, h("h5", { text: title }), h("ul", {}, entries.map((e) =>
    h("li", { text: `${e.book} #${e.seq} ${e.kind}: ${e.reason}` }))));
}

async function reconciliationCard(ctx) {
  return card("reconciliation", w("reconciliation"), async () => {
    const found = await api("GET", `/v1/recognition/reconciliation?${new URLSearchParams({ book: ctx.book })}`);
    const parts = [h("p", { class: "muted", text: w("reconHelp") })];
    if (!found.pairs.length && !found.unplaced.length) {
      parts.push(h("p", { text: w("noPairs") }));
      return parts;
    }
    parts.push(h("p", { class: "overall" }, w("allBooks"), " ",
      verdict(found.mirrored, "mirrored", "notMirrored"), " ",
      verdict(found.recorded_matches, "recordedMatch", "recordedMismatch")));
    for (const pair of found.pairs) {
      const [a, b] = pair.books;
      const block = h("div", { class: "pair", data: { pair: `${a}|${b}`, mirrored: String(pair.mirrored) } },
        h("h4", {}, `${a} ⇄ ${b} `, verdict(pair.mirrored, "mirrored", "notMirrored"), " ",
          verdict(pair.recorded_matches, "recordedMatch", "recordedMismatch")));
      for (const row of pair.assets) {
        block.append(h("div", { class: "pair-asset", data: { assets: `${row.a_asset ?? ""}|${row.b_asset ?? ""}`, mirrored: String(row.mirrored) } },
          h("h5", {}, `${row.a_asset ?? "—"} ⇄ ${row.b_asset ?? "—"} `, verdict(row.mirrored, "mirrored", "notMirrored")),
          table([w("book"), w("asset"), { text: w("posted"), class: "num" }, { text: w("implied"), class: "num" }],
            [clearingRow(row.a_clearing), clearingRow(row.b_clearing)], { label: `${w("clearing")} ${a} ⇄ ${b}` }),
          table([w("direction"), { text: w("journalCount"), class: "num" }, { text: w("journalOut"), class: "num" }, { text: w("journalIn"), class: "num" },
            { text: w("recordedCount"), class: "num" }, { text: w("recordedOut"), class: "num" }, { text: w("recordedIn"), class: "num" }],
          [flowRow(row.a_to_b), flowRow(row.b_to_a)], { label: `${w("flows")} ${a} ⇄ ${b}` })));
      }
      block.append(strays(w("unmatched"), pair.unmatched) ?? "");
      parts.push(block);
    }
    parts.push(strays(w("unplaced"), found.unplaced) ?? "");
    const heads = Object.entries(found.heads).map(([book, head]) => `${book} #${head.seq}`).join("，");
    parts.push(h("p", { class: "muted", text: w("heads", { heads }) }));
    return parts;
  });
}

// ---- The public time pool -------------------------------------------------------------------

async function publicPoolCard(ctx, assets) {
  return card("public-pool", w("publicPool"), async () => {
    const found = await api("GET", `/v1/books/${encodeURIComponent(ctx.book)}/public-pool?limit=10`);
    const parts = [h("p", { class: "muted", text: w("publicPoolHelp") })];
    if (!found.pools.length) parts.push(h("p", { text: w("noPool") }));
    parts.push(h("div", { class: "figures" }, found.pools.map((pool) =>
      h("div", { class: "figure", data: { pool: pool.asset } },
        h("span", { text: pool.asset }),
        h("b", { class: "posted", text: amount(pool.asset, pool.posted) }),
        h("span", { class: "muted", text: `${w("available")} ${amount(pool.asset, pool.available)}` })))));
    const recent = found.pools.flatMap((pool) => pool.recent.map((entry) => ({ ...entry, asset: pool.asset })))
      .sort((x, y) => y.seq - x.seq);
    if (recent.length) {
      parts.push(h("h4", { text: w("recent") }), table(
        [w("when"), w("kind"), { text: w("amount"), class: "num" }, { text: w("after"), class: "num" }, "#"],
        recent.map((entry) => h("tr", {},
          h("td", { text: dateTime(entry.posted_at) }),
          h("td", { text: WORDS.zh[`kind.${entry.kind}`] ? w(`kind.${entry.kind}`) : entry.kind }),
          h("td", { class: `num ${entry.amount < 0 ? "bad" : ""}`.trim(), text: amount(entry.asset, entry.amount) }),
          h("td", { class: "num", text: amount(entry.asset, entry.posted_after) }),
          h("td", { class: "num", text: String(entry.seq) }))), { label: `${w("publicPool")} · ${w("recent")}` }));
    }
    if (ctx.canWrite) {
      const assetOptions = (await assets).map((a) => [a.code, a.code]);
      parts.push(writeForm({ data: { form: "grant" }, "aria-labelledby": "grant-title" }, [
        h("h4", { id: "grant-title", text: w("grantTitle") }),
        h("div", { class: "row" },
          field(w("memberId"), h("input", { name: "member_id", required: true, autocomplete: "off", spellcheck: "false",
            pattern: "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}" })),
          field(w("asset"), select("asset", assetOptions, "HOUR")),
          field(w("amount"), h("input", { name: "amount", type: "number", min: 1, step: 1, required: true }))),
        h("div", { class: "row" }, field(w("reason"), h("input", { name: "reason", required: true, maxlength: 200 }))),
        h("div", { class: "row" }, h("button", { type: "submit", text: w("grantButton") })),
      ], async (data, key) => {
        const body = {
          member_id: data.get("member_id").trim(), asset: data.get("asset"),
          amount: integer(data.get("amount")), reason: data.get("reason").trim(),
        };
        const { grant } = await api("POST", `/v1/books/${encodeURIComponent(ctx.book)}/public-pool/grants`, { body, key });
        ctx.toast(w("grantedToast", { amount: amount(grant.asset, grant.amount), received: amount(grant.asset, grant.received) }));
        await ctx.rerender();
      }));
    }
    return parts;
  });
}

// ---- Assets and policies --------------------------------------------------------------------

async function assetsCard(ctx, assets) {
  return card("assets", w("assetsTitle"), async () => {
    const policies = await api("GET", `/v1/books/${encodeURIComponent(ctx.book)}/asset-policies`);
    const limit = (asset, value) => (value === null ? w("unlimited") : amount(asset, value));
    return [
      h("h4", { text: w("assetList") }),
      table([w("asset"), w("name"), w("unit"), w("issuer"), w("validityYears")], (await assets).map((asset) =>
        h("tr", { data: { asset: asset.code } },
          h("td", {}, h("code", { class: "mono", text: asset.code })),
          h("td", { text: asset.name }),
          h("td", { text: asset.unit }),
          h("td", { text: asset.issuer_book ?? "—" }),
          h("td", { text: asset.expires_after_years === null ? w("never") : String(asset.expires_after_years) }))), { label: w("assetList") }),
      h("h4", { text: w("policies") }),
      policies.items.length
        ? table([w("asset"), { text: w("storageCap"), class: "num" }, { text: w("giftCap"), class: "num" }, w("giftRelations")],
          policies.items.map((policy) => h("tr", { data: { policy: policy.asset } },
            h("td", { text: policy.asset }),
            h("td", { class: "num", text: limit(policy.asset, policy.storage_cap) }),
            h("td", { class: "num", text: limit(policy.asset, policy.gift_yearly_cap) }),
            h("td", { text: policy.gift_relations ? policy.gift_relations.join("、") : w("unlimited") }))), { label: w("policies") })
        : h("p", { text: w("noPolicies") }),
    ];
  });
}

export async function render(el, ctx) {
  // Shared reads, each asked once; a card that needs one waits for it.
  const assets = api("GET", "/v1/assets").then((found) => found.items);
  const organisations = ctx.canWrite ? allPages("/v1/organisations", { book: ctx.book, limit: "500" }).then((r) => r.items) : Promise.resolve([]);
  assets.catch(() => {});
  organisations.catch(() => {});
  el.append(h("h2", { text: `${w("title")} · ${ctx.book}` }));
  el.append(...await Promise.all([
    rulesCard(ctx, assets, organisations),
    agreementsCard(ctx, assets),
    reconciliationCard(ctx),
    publicPoolCard(ctx, assets),
    assetsCard(ctx, assets),
  ]));
}
