// Kiosk sites (admins, organisations): each charity supermarket (爱心超市) of the book with its
// stock, stock moves and new items, its latest redemptions, and each day's report of whether
// the books and the goods agree (账物相符), with its CSV (docs/kiosk.md §1, §4, §5).
//
// Admins of the book and a site's own organisation credential manage the site; any other
// organisation of the book sees the catalogues only (the API refuses the rest anyway).

import { allPages, api } from "../api.js";
import { dateTime, number, t } from "../i18n.js";
import { h, field, select, table, said, writeForm } from "../dom.js";

const WORDS = {
  zh: {
    title: "爱心超市", noSites: "本账本还没有爱心超市。",
    readOnly: "你的机构不是爱心超市：这里只显示各超市的商品和库存；库存调整、兑换记录和对账报表由超市本身和管理员查看。",
    stock: "库存", item: "商品", price: "单价", onHand: "库存", reserved: "预留", available: "可兑",
    status: "状态", active: "在售", inactive: "下架", unlimited: "不限", noItems: "还没有商品。",
    points: "积分", minutes: "分钟",
    move: "库存调整", moveHelp: "补货只能增加；盘点更正可增可减。每次调整都记录操作人和原因。",
    kind: "类型", restock: "补货", correction: "盘点更正", delta: "数量变化（件）", reason: "原因",
    moveButton: "记录调整", movedToast: "{name} 库存：{before} → {after}",
    noLimited: "没有限量库存的商品可以调整。",
    addItem: "上架新商品", name: "名称", pricePoints: "单价（积分）",
    initialStock: "初始库存（留空为不限量）", addButton: "上架", addedToast: "已上架 {name}",
    redemptions: "最近兑换", noRedemptions: "还没有兑换。", when: "时间", lines: "商品",
    total: "合计", member: "会员", "status.pending": "待确认", "status.confirmed": "已兑换",
    "status.cancelled": "已取消", "status.expired": "已过期",
    report: "每日对账（账物相符）", day: "日期", show: "查看", reconciled: "✓ 账物相符",
    notReconciled: "✗ 账物不符", count: "兑换笔数", taken: "扣除{asset}", differences: "差异",
    out: "兑出", stockLeft: "现有库存", csv: "下载 CSV（{day}）", zone: "按 {zone} 时区的自然日",
    nothingTaken: "当日没有已确认的兑换",
    sectionFailed: "这一部分加载失败：{reason}",
  },
  en: {
    title: "Kiosk sites", noSites: "This book has no kiosk site yet.",
    readOnly: "Your organisation is not a kiosk site: this shows the sites' items and stock only; stock moves, redemptions and reports are for the site itself and admins.",
    stock: "Stock", item: "Item", price: "Price", onHand: "On hand", reserved: "Reserved",
    available: "Available", status: "Status", active: "active", inactive: "withdrawn",
    unlimited: "unlimited", noItems: "No items yet.", points: "points", minutes: "min",
    move: "Stock move", moveHelp: "A restock only adds; a correction adds or removes. Each move records who made it and why.",
    kind: "Kind", restock: "Restock", correction: "Correction", delta: "Change (pieces)",
    reason: "Reason", moveButton: "Record the move", movedToast: "{name} stock: {before} → {after}",
    noLimited: "No item of limited stock to move.",
    addItem: "List a new item", name: "Name", pricePoints: "Price (points)",
    initialStock: "Initial stock (empty: unlimited)", addButton: "List it", addedToast: "Listed {name}",
    redemptions: "Latest redemptions", noRedemptions: "No redemptions yet.", when: "When",
    lines: "Items", total: "Total", member: "Member", "status.pending": "pending",
    "status.confirmed": "redeemed", "status.cancelled": "cancelled", "status.expired": "expired",
    report: "Daily report (books and goods agree)", day: "Day", show: "Show",
    reconciled: "✓ books and goods agree", notReconciled: "✗ books and goods differ",
    count: "Redemptions", taken: "{asset} taken", differences: "Differences", out: "Out",
    stockLeft: "Stock left", csv: "Download CSV ({day})", zone: "Calendar day in {zone}",
    nothingTaken: "No confirmed redemption that day",
    sectionFailed: "This part could not be loaded: {reason}",
  },
};

const w = (key, values) => t(WORDS, key, values);
// The service's time zone decides which day a redemption belongs to; the report names it.
let serviceZone = "Asia/Shanghai";

function amount(asset, value) {
  if (value === null || value === undefined) return "—";
  const unit = { HOUR: w("minutes"), POINT: w("points") }[asset];
  return `${number(value)} ${unit ?? asset ?? ""}`.trim();
}

const pieces = (value) => (value === null || value === undefined ? w("unlimited") : number(value));

/** A part of a site's card; its failure shows there, not over the screen. */
async function part(id, title, build) {
  const section = h("section", { class: "site-part", "aria-labelledby": id, data: { part: id.split("-")[0] } },
    h("h4", { id, text: title }));
  try {
    section.append(...await build());
  } catch (error) {
    section.append(h("p", { class: "error", role: "alert", text: w("sectionFailed", { reason: said(error) }) }));
  }
  return section;
}

function today(zone) {
  // en-CA writes dates as YYYY-MM-DD.
  return new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" })
    .format(new Date());
}

// ---- Stock ----------------------------------------------------------------------------------

function itemsTable(site, items) {
  if (!items.length) return h("p", { text: w("noItems") });
  return table(
    [w("item"), { text: w("price"), class: "num" }, { text: w("onHand"), class: "num" },
      { text: w("reserved"), class: "num" }, { text: w("available"), class: "num" }, w("status")],
    items.map((item) => h("tr", { data: { itemId: item.id } },
      h("td", { class: "name", text: item.name }),
      h("td", { class: "num price", text: amount(item.asset, item.price) }),
      h("td", { class: "num stock", text: pieces(item.stock) }),
      h("td", { class: "num reserved", text: number(item.reserved) }),
      h("td", { class: "num available", text: pieces(item.available) }),
      h("td", {}, h("span", { class: `badge ${item.status === "active" ? "ok" : "muted"}`, text: w(item.status) })))),
    { label: `${w("stock")} · ${site.name}` });
}

function moveForm(ctx, site, items) {
  const limited = items.filter((item) => item.stock !== null);
  if (!limited.length) return h("p", { class: "muted", text: w("noLimited") });
  const byId = new Map(limited.map((item) => [item.id, item]));
  return writeForm({ data: { form: "stock" }, "aria-label": `${w("move")} · ${site.name}` }, [
    h("p", { class: "muted", text: w("moveHelp") }),
    h("div", { class: "row" },
      field(w("item"), select("item_id", limited.map((item) => [item.id, `${item.name}（${w("onHand")} ${number(item.stock)}）`]), limited[0].id)),
      field(w("kind"), select("kind", [["restock", w("restock")], ["correction", w("correction")]], "restock")),
      field(w("delta"), h("input", { name: "delta", type: "number", step: 1, required: true }))),
    h("div", { class: "row" }, field(w("reason"), h("input", { name: "reason", required: true, maxlength: 200 }))),
    h("div", { class: "row" }, h("button", { type: "submit", text: w("moveButton") })),
  ], async (data, key) => {
    const item = byId.get(data.get("item_id"));
    const body = { kind: data.get("kind"), delta: Number(data.get("delta")), reason: data.get("reason").trim() };
    const moved = await api("POST", `/v1/kiosk/items/${item.id}/stock`, { body, key });
    ctx.toast(w("movedToast", { name: moved.item.name, before: number(item.stock), after: number(moved.item.stock) }));
    await ctx.rerender();
  });
}

function addForm(ctx, site) {
  return writeForm({ data: { form: "item" }, "aria-label": `${w("addItem")} · ${site.name}` }, [
    h("div", { class: "row" },
      field(w("name"), h("input", { name: "name", required: true, maxlength: 100 })),
      field(w("pricePoints"), h("input", { name: "price", type: "number", min: 1, step: 1, required: true })),
      field(w("initialStock"), h("input", { name: "stock", type: "number", min: 0, step: 1 }))),
    h("div", { class: "row" }, h("button", { type: "submit", text: w("addButton") })),
  ], async (data, key) => {
    const stock = data.get("stock");
    const body = { name: data.get("name").trim(), asset: "POINT", price: Number(data.get("price")), stock: stock === "" ? null : Number(stock) };
    const item = await api("POST", `/v1/kiosk/sites/${site.id}/items`, { body, key });
    ctx.toast(w("addedToast", { name: item.name }));
    await ctx.rerender();
  });
}

// ---- Redemptions and the day's report -------------------------------------------------------

function redemptionsTable(site, found) {
  if (!found.length) return h("p", { text: w("noRedemptions") });
  return table([w("when"), w("status"), w("lines"), { text: w("total"), class: "num" }, w("member")],
    found.map((r) => h("tr", { data: { redemptionId: r.id, status: r.status } },
      h("td", { text: dateTime(r.resolved_at ?? r.created_at) }),
      h("td", {}, h("span", { class: `badge ${r.status === "confirmed" ? "ok" : "muted"}`, text: w(`status.${r.status}`) })),
      h("td", { class: "lines", text: r.lines.map((line) => `${line.name} × ${line.quantity}`).join("，") }),
      h("td", { class: "num total", text: amount(r.asset, r.total) }),
      h("td", {}, h("code", { class: "mono", title: r.member_id, text: r.member_id.slice(0, 8) })))),
    { label: `${w("redemptions")} · ${site.name}` });
}

function reportView(site, report) {
  const csvPath = `/v1/kiosk/sites/${site.id}/report?${new URLSearchParams({ date: report.date, format: "csv" })}`;
  const taken = Object.entries(report.taken);
  return h("div", { class: "report", data: { day: report.date, reconciled: String(report.reconciled) } },
    h("p", { class: `verdict ${report.reconciled ? "ok" : "bad"}`, text: w(report.reconciled ? "reconciled" : "notReconciled") }),
    h("div", { class: "figures" },
      h("div", { class: "figure" }, h("span", { text: w("count") }), h("b", { class: "count", text: number(report.redemptions) })),
      taken.length
        ? taken.map(([asset, value]) => h("div", { class: "figure", data: { taken: asset } },
          h("span", { text: w("taken", { asset: asset === "POINT" ? w("points") : asset }) }), h("b", { text: amount(asset, value) })))
        : h("div", { class: "figure" }, h("span", { class: "muted", text: w("nothingTaken") }))),
    report.differences.length
      ? h("div", { class: "bad differences" }, h("h5", { text: w("differences") }), h("ul", {}, report.differences.map((d) =>
        h("li", { text: [d.issue, d.redemption_id, d.item_id, d.tx_id].filter(Boolean).join(" · ") }))))
      : null,
    table([w("item"), { text: w("price"), class: "num" }, { text: w("out"), class: "num" }, { text: w("stockLeft"), class: "num" },
      { text: w("reserved"), class: "num" }, w("status")],
    report.items.map((item) => h("tr", { data: { itemId: item.item_id } },
      h("td", { text: item.name }),
      h("td", { class: "num", text: amount(item.asset, item.price) }),
      h("td", { class: "num out", text: number(item.out) }),
      h("td", { class: "num stock-left", text: pieces(item.stock_left) }),
      h("td", { class: "num", text: number(item.reserved) }),
      h("td", { text: w(item.status) }))), { label: `${w("report")} ${report.date} · ${site.name}` }),
    h("p", { class: "muted", text: w("zone", { zone: report.time_zone }) }),
    // Same origin: the browser sends the session cookie with the download.
    h("p", {}, h("a", { class: "csv", href: csvPath, download: `${report.book}-kiosk-${site.id}-${report.date}.csv`, text: w("csv", { day: report.date }) })));
}

async function loadReport(site, day) {
  const path = (d) => `/v1/kiosk/sites/${site.id}/report?${new URLSearchParams({ date: d })}`;
  let report = await api("GET", path(day));
  if (report.time_zone !== serviceZone) {
    // The page guessed the zone; the service named its own: "today" may be another day there.
    const guessed = today(serviceZone) === day;
    serviceZone = report.time_zone;
    if (guessed && today(serviceZone) !== day) report = await api("GET", path(today(serviceZone)));
  }
  return report;
}

function reportPart(site) {
  return part(`report-${site.id}`, w("report"), async () => {
    const day = h("input", { name: "date", type: "date", required: true, value: today(serviceZone) });
    const shown = h("div", { class: "report-slot", "aria-live": "polite" });
    const show = async (chosen) => {
      const report = await loadReport(site, chosen);
      day.value = report.date;
      shown.replaceChildren(reportView(site, report));
    };
    const form = writeForm({ data: { form: "report" }, "aria-label": `${w("report")} · ${site.name}` }, [
      h("div", { class: "row" }, field(w("day"), day), h("button", { type: "submit", class: "secondary", text: w("show") })),
    ], async (data) => { await show(data.get("date")); });
    await show(day.value);
    return [form, shown];
  });
}

// ---- A site ---------------------------------------------------------------------------------

async function siteCard(ctx, site) {
  const own = ctx.organisationId === site.id;
  const manage = ctx.canWrite && (ctx.role === "admin" || own);
  const reads = ctx.role === "admin" || ctx.role === "auditor" || own;
  const parts = await Promise.all([
    part(`stock-${site.id}`, w("stock"), async () => {
      const { items } = await api("GET", `/v1/kiosk/sites/${site.id}/items`);
      return [itemsTable(site, items), manage ? h("h5", { text: w("move") }) : null, manage ? moveForm(ctx, site, items) : null,
        manage ? h("h5", { text: w("addItem") }) : null, manage ? addForm(ctx, site) : null].filter(Boolean);
    }),
    reads ? part(`redemptions-${site.id}`, w("redemptions"), async () => {
      const { items } = await api("GET", `/v1/kiosk/sites/${site.id}/redemptions?limit=20`);
      return [redemptionsTable(site, items)];
    }) : null,
    reads ? reportPart(site) : null,
  ]);
  return h("section", { class: "card site", "aria-labelledby": `site-${site.id}`, data: { siteId: site.id } },
    h("h3", { id: `site-${site.id}`, text: site.name }),
    parts.filter(Boolean));
}

export async function render(el, ctx) {
  const organisations = await allPages("/v1/organisations", { book: ctx.book, limit: "500" }).then((r) => r.items);
  let sites = organisations.filter((o) => o.kind === "kiosk_site");
  const ownSite = sites.some((site) => site.id === ctx.organisationId);
  if (ctx.role === "org" && ownSite) sites = sites.filter((site) => site.id === ctx.organisationId);
  el.append(h("h2", { text: `${w("title")} · ${ctx.book}` }));
  if (ctx.role === "org" && !ownSite) el.append(h("p", { class: "muted", text: w("readOnly") }));
  if (!sites.length) el.append(h("p", { text: w("noSites") }));
  el.append(...await Promise.all(sites.map((site) => siteCard(ctx, site))));
}
