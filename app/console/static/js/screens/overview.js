// The overview (admin, organisation, auditor): the book's certified service by month and by
// service category, active volunteers, 信用时 (check-in) and 荣誉时 (manual) hours, with the
// ledger's own figure for the same service beside them; the most urgent unmet needs; and
// exchanges, redemptions, gifts and transfers between books over time (exchangeCard).
// An organisation's credential sees the service it certified (the API scopes it).
//
// Charts: Apache ECharts, pinned in tools/console/package.json and shipped with the service as
// static/vendor/echarts.min.js (no CDN at run time; tests/test_console_assets.py holds the
// copy byte-identical to the pinned package's dist file). Why ECharts: it is what Chinese
// public dashboards use, with its Chinese and English locales built in (axis, tooltip and
// description words switch with the page) and text drawn in the page's own CJK fonts; its
// `aria` option writes a description of each chart (series and values) into the chart's
// aria-label for screen readers; and it has an SVG renderer as well as canvas (SVG here: crisp
// at any zoom, and a test can find the drawing). Every chart also has its numbers in a table
// beside it, which is what a screen reader, a person copying figures and the tests read.

import { api } from "../api.js";
import { dateTime, lang, number, t } from "../i18n.js";
import { h, said } from "../dom.js";

const WORDS = {
  zh: {
    title: "概览", book: "账本 {book}", orgScope: "只含本机构（{name}）认证的服务。",
    period: "全部时间，按服务日（{tz}）计。",
    figHours: "认证时数", figVolunteers: "活跃志愿者", figVolunteersNote: "有认证服务的成员",
    figCheckin: "信用时", figCheckinNote: "签到签退的时数", figManual: "荣誉时",
    figManualNote: "机构手工录入的时数", figRecords: "已认证记录", figProjects: "项目",
    reconciled: "✓ 已与账本核对一致：服务记录合计 {records} 分钟，账本 {ledger} 分钟。",
    notReconciled: "⚠ 与账本不一致：服务记录合计 {records} 分钟，账本 {ledger} 分钟（入账 {credited} 分钟，冲正 {reversed} 分钟）。",
    byMonth: "按月认证时数", byCategory: "按服务类别认证时数",
    monthCaption: "按月认证时数（数字）", monthsCut: "（最近 {n} 个月；合计为全部时间）", categoryCaption: "按服务类别认证时数（数字）",
    colMonth: "月份", colCategory: "类别", colHours: "时数", colMinutes: "分钟",
    colCheckin: "信用时", colManual: "荣誉时", colVolunteers: "志愿者", colRecords: "记录",
    total: "合计", seriesCheckin: "信用时", seriesManual: "荣誉时", seriesVolunteers: "志愿者",
    seriesHours: "认证时数", axisHours: "小时", axisPeople: "人",
    needs: "最急需的未满足需求", needsCaption: "未满足的需求，最紧急、最早登记的在前",
    needsNone: "没有未满足的需求。", colUrgency: "紧急程度", colTarget: "服务对象",
    colDescription: "需求", colCreated: "登记时间",
    urgent: "紧急", high: "高", normal: "普通", low: "低",
    exchange: "兑换与核销（按月）", noData: "暂无数据", exchangeCaption: "兑换与核销（数字，按月）",
    colExchanges: "兑换笔数", colHoursGiven: "换出时数", colPointsPaid: "换得积分",
    colRedemptions: "超市核销", colPointsSpent: "核销积分", colGifts: "转赠", colTransfers: "通存通兑",
    colExpiries: "到期", seriesExchanges: "兑换", seriesRedemptions: "超市核销", seriesGifts: "转赠",
    seriesTransfers: "通存通兑", axisEntries: "笔",
    flowsReconciled: "✓ 已与业务记录核对一致：兑换 {exchangesJournal} 笔（记录 {exchangesRecorded}），超市核销 {redemptionsJournal} 笔（记录 {redemptionsRecorded}）。",
    flowsNotReconciled: "⚠ 与业务记录不一致：兑换 账本 {exchangesJournal} 笔 / 记录 {exchangesRecorded} 笔，超市核销 账本 {redemptionsJournal} 笔 / 记录 {redemptionsRecorded} 笔。",
    exchangeFailed: "兑换统计无法加载：{reason}",
    noChart: "图表组件未能加载，数字见下表。",
  },
  en: {
    title: "Overview", book: "Book {book}", orgScope: "Only the service your organisation ({name}) certified.",
    period: "All time, by service day ({tz}).",
    figHours: "Certified hours", figVolunteers: "Active volunteers",
    figVolunteersNote: "members with certified service", figCheckin: "信用时 check-in hours",
    figCheckinNote: "checked in and out at the site", figManual: "荣誉时 manual hours",
    figManualNote: "entered by the organisation", figRecords: "Certified records",
    figProjects: "Projects",
    reconciled: "✓ Reconciled with the ledger: service records {records} min, ledger {ledger} min.",
    notReconciled: "⚠ Does not match the ledger: service records {records} min, ledger {ledger} min (credited {credited} min, reversed {reversed} min).",
    byMonth: "Certified hours by month", byCategory: "Certified hours by service category",
    monthCaption: "Certified hours by month (figures)",
    monthsCut: " (the last {n} months; the total is all time)",
    categoryCaption: "Certified hours by service category (figures)",
    colMonth: "Month", colCategory: "Category", colHours: "Hours", colMinutes: "Minutes",
    colCheckin: "Check-in h", colManual: "Manual h", colVolunteers: "Volunteers",
    colRecords: "Records", total: "Total", seriesCheckin: "Check-in (信用时)",
    seriesManual: "Manual (荣誉时)", seriesVolunteers: "Volunteers", seriesHours: "Certified hours",
    axisHours: "hours", axisPeople: "people",
    needs: "Most urgent unmet needs", needsCaption: "Unmet needs, most urgent and oldest first",
    needsNone: "No unmet needs.", colUrgency: "Urgency", colTarget: "For",
    colDescription: "Need", colCreated: "Registered",
    urgent: "Urgent", high: "High", normal: "Normal", low: "Low",
    exchange: "Exchanges and redemptions by month", noData: "No data yet",
    exchangeCaption: "Exchanges and redemptions by month (figures)",
    colExchanges: "Exchanges", colHoursGiven: "Hours given", colPointsPaid: "Points received",
    colRedemptions: "Redemptions", colPointsSpent: "Points spent", colGifts: "Gifts",
    colTransfers: "Transfers between books", colExpiries: "Expiries", seriesExchanges: "Exchanges",
    seriesRedemptions: "Kiosk redemptions", seriesGifts: "Gifts", seriesTransfers: "Transfers between books",
    axisEntries: "entries",
    flowsReconciled: "✓ Reconciled with the records: {exchangesJournal} exchanges (records {exchangesRecorded}), {redemptionsJournal} kiosk redemptions (records {redemptionsRecorded}).",
    flowsNotReconciled: "⚠ Does not match the records: exchanges ledger {exchangesJournal} / records {exchangesRecorded}, kiosk redemptions ledger {redemptionsJournal} / records {redemptionsRecorded}.",
    exchangeFailed: "Exchange statistics could not be loaded: {reason}",
    noChart: "The chart library could not be loaded; the figures are in the table below.",
  },
};

const FONT = 'system-ui, "PingFang SC", "Microsoft YaHei", "WenQuanYi Micro Hei", sans-serif';
const CHECKIN_COLOUR = "#0b5cad";
const MANUAL_COLOUR = "#b35c00";
const PEOPLE_COLOUR = "#116329";
const NEEDS_SHOWN = 10;
const MONTHS_SHOWN = 24;

const w = (key, values) => t(WORDS, key, values);

const hoursOf = (minutes) => number(minutes / 60, 2);

// ECharts is a classic script (a UMD bundle that sets window.echarts): added once, then shared.
let echartsLoading = null;

function loadECharts() {
  if (window.echarts) return Promise.resolve(window.echarts);
  echartsLoading ??= new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = new URL("../../vendor/echarts.min.js", import.meta.url).href;
    script.addEventListener("load", () => resolve(window.echarts));
    script.addEventListener("error", () => {
      script.remove();
      echartsLoading = null;
      reject(new Error("vendor/echarts.min.js did not load"));
    });
    document.head.append(script);
  });
  return echartsLoading;
}

/** A chart in `box`, drawn once the box is in the page and has a width (the screen is built
 * before the shell attaches it), resized whenever the box changes size (it is 100 % wide, so a
 * window resize or a phone's rotation reaches it), and disposed when the box leaves the page. */
function mountChart(echarts, box, option) {
  let chart = null;
  const observer = new ResizeObserver(() => {
    if (!box.isConnected) {
      if (chart) {
        observer.disconnect();
        chart.dispose();
        chart = null;
      }
      return;
    }
    if (box.clientWidth === 0) return;
    if (chart) {
      chart.resize();
      return;
    }
    chart = echarts.init(box, null, { renderer: "svg", locale: lang() === "en" ? "EN" : "ZH" });
    chart.setOption(option);
  });
  observer.observe(box);
}

/** The options every chart shares: the accessible description (`aria`), its title for that
 * description (not drawn: the card's heading is), the page's fonts, no animation. */
function baseOption(title) {
  return {
    title: { text: title, show: false },
    aria: { enabled: true },
    animation: false,
    textStyle: { fontFamily: FONT },
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
  };
}

function chartBox(echarts, name, option) {
  if (!echarts) return h("p", { class: "muted", text: w("noChart") });
  const box = h("div", { class: "chart", "data-chart": name });
  mountChart(echarts, box, option);
  return box;
}

/** A table: `columns` [{key, label, num}], `rows` [{key, cells: {column key: text or node}}],
 * the first column as row headers. */
function figuresTable(name, caption, columns, rows, total) {
  const head = h("tr", {}, ...columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null, text: c.label })));
  const line = (row) => h(
    "tr",
    { "data-key": row.key },
    ...columns.map((c, i) => {
      const value = row.cells[c.key] ?? "";
      const attrs = { "data-col": c.key, class: c.num ? "num" : null };
      const cell = i === 0 ? h("th", { scope: "row", ...attrs }) : h("td", attrs);
      cell.append(value);
      return cell;
    }),
  );
  return h(
    "div",
    // Focusable, so that a keyboard reaches a table that scrolls sideways on a phone.
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption },
    h(
      "table",
      { "data-table": name },
      h("caption", { text: caption }),
      h("thead", {}, head),
      h("tbody", {}, ...rows.map(line)),
      total ? h("tfoot", {}, line(total)) : null,
    ),
  );
}

/** The cells a group (or the totals) shows, by column key. */
function cellsOf(group) {
  return {
    hours: number(Number(group.hours), 2),
    minutes: number(group.minutes),
    checkin: hoursOf(group.checkin_minutes),
    manual: hoursOf(group.manual_minutes),
    volunteers: number(group.volunteers),
    records: number(group.records),
  };
}

const FIGURE_COLUMNS = () => [
  { key: "hours", label: w("colHours"), num: true },
  { key: "minutes", label: w("colMinutes"), num: true },
  { key: "checkin", label: w("colCheckin"), num: true },
  { key: "manual", label: w("colManual"), num: true },
  { key: "volunteers", label: w("colVolunteers"), num: true },
  { key: "records", label: w("colRecords"), num: true },
];

function figure(name, label, value, note) {
  return h(
    "div",
    { class: "figure", "data-figure": name },
    h("span", { text: label }),
    h("b", { text: value }),
    note ? h("small", { class: "muted", text: note }) : null,
  );
}

function figures(totals) {
  return h(
    "div",
    { class: "figures" },
    figure("hours", w("figHours"), number(Number(totals.hours), 2)),
    figure("volunteers", w("figVolunteers"), number(totals.volunteers), w("figVolunteersNote")),
    figure("checkin", w("figCheckin"), hoursOf(totals.checkin_minutes), w("figCheckinNote")),
    figure("manual", w("figManual"), hoursOf(totals.manual_minutes), w("figManualNote")),
    figure("records", w("figRecords"), number(totals.records)),
    figure("projects", w("figProjects"), number(totals.projects)),
  );
}

/** `reconciled` said plainly: green with both figures, or a red warning with the ledger's
 * credits and reversals. Both groupings cover the same service, so each must agree. */
function reconciliation(...answers) {
  const wrong = answers.find((a) => !a.ledger.reconciled);
  const shown = wrong ?? answers[0];
  const values = {
    records: number(shown.totals.minutes),
    ledger: number(shown.ledger.net_minutes),
    credited: number(shown.ledger.service_credit_minutes),
    reversed: number(shown.ledger.reversed_minutes),
  };
  return h("p", {
    class: wrong ? "bad reconcile" : "ok reconcile",
    "data-reconciled": String(!wrong),
    text: w(wrong ? "notReconciled" : "reconciled", values),
  });
}

function monthCard(echarts, stats) {
  const groups = [...stats.groups].sort((a, b) => a.key.localeCompare(b.key)).slice(-MONTHS_SHOWN);
  const cut = stats.groups.length > groups.length;
  const option = {
    ...baseOption(w("byMonth")),
    legend: { top: 0 },
    grid: { left: 8, right: 8, top: 56, bottom: 8 },
    xAxis: { type: "category", data: groups.map((g) => g.label) },
    yAxis: [
      { type: "value", name: w("axisHours") },
      { type: "value", name: w("axisPeople"), minInterval: 1, splitLine: { show: false } },
    ],
    series: [
      { name: w("seriesCheckin"), type: "bar", stack: "hours", color: CHECKIN_COLOUR,
        data: groups.map((g) => +(g.checkin_minutes / 60).toFixed(2)) },
      { name: w("seriesManual"), type: "bar", stack: "hours", color: MANUAL_COLOUR,
        data: groups.map((g) => +(g.manual_minutes / 60).toFixed(2)) },
      { name: w("seriesVolunteers"), type: "line", yAxisIndex: 1, color: PEOPLE_COLOUR,
        data: groups.map((g) => g.volunteers) },
    ],
  };
  const columns = [{ key: "month", label: w("colMonth") }, ...FIGURE_COLUMNS()];
  const rows = groups.map((g) => ({ key: g.key, cells: { month: g.label, ...cellsOf(g) } }));
  return h(
    "section",
    { class: "card", "aria-labelledby": "overview-by-month" },
    h("h3", { id: "overview-by-month", text: w("byMonth") }),
    groups.length ? chartBox(echarts, "month", option) : h("p", { class: "muted", text: w("noData") }),
    figuresTable("month", w("monthCaption") + (cut ? w("monthsCut", { n: MONTHS_SHOWN }) : ""), columns, rows,
      { key: "total", cells: { month: w("total"), ...cellsOf(stats.totals) } }),
  );
}

function categoryCard(echarts, stats, names) {
  const groups = [...stats.groups].sort((a, b) => b.minutes - a.minutes);
  const nameOf = (g) => names.get(g.key) ?? g.label;
  // Largest on top: a horizontal bar chart lists its categories from the bottom up.
  const drawn = [...groups].reverse();
  const option = {
    ...baseOption(w("byCategory")),
    grid: { left: 8, right: 40, top: 8, bottom: 8 },
    xAxis: { type: "value", name: w("axisHours") },
    yAxis: { type: "category", data: drawn.map(nameOf),
      axisLabel: { width: 96, overflow: "truncate" } },
    series: [{ name: w("seriesHours"), type: "bar", color: CHECKIN_COLOUR,
      label: { show: true, position: "right" },
      data: drawn.map((g) => +(g.minutes / 60).toFixed(2)) }],
  };
  const columns = [{ key: "category", label: w("colCategory") }, ...FIGURE_COLUMNS()];
  const rows = groups.map((g) => ({ key: g.key ?? "", cells: { category: nameOf(g), ...cellsOf(g) } }));
  return h(
    "section",
    { class: "card", "aria-labelledby": "overview-by-category" },
    h("h3", { id: "overview-by-category", text: w("byCategory") }),
    groups.length ? chartBox(echarts, "category", option) : h("p", { class: "muted", text: w("noData") }),
    figuresTable("category", w("categoryCaption"), columns, rows,
      { key: "total", cells: { category: w("total"), ...cellsOf(stats.totals) } }),
  );
}

function needsCard(needs, categories, targets) {
  const body = needs.length
    ? figuresTable(
      "needs",
      w("needsCaption"),
      [
        { key: "urgency", label: w("colUrgency") },
        { key: "category", label: w("colCategory") },
        { key: "target", label: w("colTarget") },
        { key: "description", label: w("colDescription") },
        { key: "created", label: w("colCreated") },
      ],
      needs.map((n) => ({
        key: n.id,
        cells: {
          urgency: h("span", {
            class: n.urgency === "urgent" || n.urgency === "high" ? "badge bad" : "badge",
            "data-urgency": n.urgency,
            text: w(n.urgency),
          }),
          category: categories.get(n.category) ?? n.category,
          target: targets.get(n.target_group) ?? n.target_group,
          description: n.description,
          created: dateTime(n.created_at),
        },
      })),
    )
    : h("p", { class: "muted", text: w("needsNone") });
  return h(
    "section",
    { class: "card", "aria-labelledby": "overview-needs" },
    h("h3", { id: "overview-needs", text: w("needs") }),
    body,
  );
}

// Exchanges and redemptions over time (`GET /v1/stats/exchange`): each month's flows counted
// from the journal, with the journal's exchanges and redemptions reconciled against the
// executed quotes and confirmed redemptions. A failure here leaves the rest of the screen.
async function exchangeStats(ctx) {
  try {
    return { stats: await api("GET", `/v1/stats/exchange?${new URLSearchParams({ book: ctx.book })}`) };
  } catch (error) {
    return { error: said(error) };
  }
}

const FLOW_COLUMNS = () => [
  { key: "exchanges", label: w("colExchanges"), num: true },
  { key: "hoursGiven", label: w("colHoursGiven"), num: true },
  { key: "pointsPaid", label: w("colPointsPaid"), num: true },
  { key: "redemptions", label: w("colRedemptions"), num: true },
  { key: "pointsSpent", label: w("colPointsSpent"), num: true },
  { key: "gifts", label: w("colGifts"), num: true },
  { key: "transfers", label: w("colTransfers"), num: true },
  { key: "expiries", label: w("colExpiries"), num: true },
];

function flowCells(flows) {
  return {
    exchanges: number(flows.exchange.count),
    hoursGiven: hoursOf(flows.exchange.members_gave.HOUR ?? 0),
    pointsPaid: number(flows.exchange.members_received.POINT ?? 0),
    redemptions: number(flows.kiosk_redemption.count),
    pointsSpent: number(flows.kiosk_redemption.members_gave.POINT ?? 0),
    gifts: number(flows.gift.count),
    transfers: number(flows.recognition_out.count + flows.recognition_in.count),
    expiries: number(flows.expiry.count),
  };
}

function flowReconciliation(reconciliation) {
  const { exchanges, kiosk_redemptions: redemptions } = reconciliation;
  const values = {
    exchangesJournal: number(exchanges.journal.count),
    exchangesRecorded: number(exchanges.recorded.count),
    redemptionsJournal: number(redemptions.journal.count),
    redemptionsRecorded: number(redemptions.recorded.count),
  };
  return h("p", {
    class: reconciliation.reconciled ? "ok reconcile" : "bad reconcile",
    "data-reconciled": String(reconciliation.reconciled),
    text: w(reconciliation.reconciled ? "flowsReconciled" : "flowsNotReconciled", values),
  });
}

function exchangeCard(echarts, answer) {
  const card = h(
    "section",
    { class: "card", "aria-labelledby": "overview-exchange", "data-card": "exchange" },
    h("h3", { id: "overview-exchange", text: w("exchange") }),
  );
  if (answer.error !== undefined) {
    card.append(h("p", { class: "error", text: w("exchangeFailed", { reason: answer.error }) }));
    return card;
  }
  const { stats } = answer;
  const periods = stats.periods.slice(-MONTHS_SHOWN);
  card.append(flowReconciliation(stats.reconciliation));
  if (!periods.length) {
    card.append(h("p", { class: "muted", "data-empty": "exchange", text: w("noData") }));
    return card;
  }
  const series = [
    ["seriesExchanges", (f) => f.exchange.count, CHECKIN_COLOUR],
    ["seriesRedemptions", (f) => f.kiosk_redemption.count, MANUAL_COLOUR],
    ["seriesGifts", (f) => f.gift.count, PEOPLE_COLOUR],
    ["seriesTransfers", (f) => f.recognition_out.count + f.recognition_in.count, "#6639ba"],
  ];
  const option = {
    ...baseOption(w("exchange")),
    legend: { top: 0 },
    grid: { left: 8, right: 8, top: 56, bottom: 8 },
    xAxis: { type: "category", data: periods.map((p) => p.period) },
    yAxis: { type: "value", name: w("axisEntries"), minInterval: 1 },
    series: series.map(([name, value, color]) => ({
      name: w(name), type: "bar", color, data: periods.map((p) => value(p.flows)),
    })),
  };
  const columns = [{ key: "month", label: w("colMonth") }, ...FLOW_COLUMNS()];
  const rows = periods.map((p) => ({ key: p.period, cells: { month: p.period, ...flowCells(p.flows) } }));
  card.append(
    chartBox(echarts, "exchange", option),
    figuresTable("exchange", w("exchangeCaption"), columns, rows,
      { key: "total", cells: { month: w("total"), ...flowCells(stats.totals) } }),
  );
  return card;
}

function catalogNames(entries) {
  const key = lang() === "en" ? "name_en" : "name_zh";
  return new Map(entries.map((e) => [e.code, e[key]]));
}

export async function render(el, ctx) {
  const stats = (groupBy) =>
    api("GET", `/v1/stats/service?${new URLSearchParams({ book: ctx.book, group_by: groupBy })}`);
  const unmet = new URLSearchParams({
    book: ctx.book, status: "open", unmet: "true", limit: String(NEEDS_SHOWN),
  });
  const [byMonth, byCategory, catalog, needs, exchange, echarts] = await Promise.all([
    stats("month"),
    stats("category"),
    api("GET", "/v1/service-catalog"),
    api("GET", `/v1/needs?${unmet}`),
    exchangeStats(ctx),
    loadECharts().catch(() => null),
  ]);
  const categories = catalogNames(catalog.categories);
  const targets = catalogNames(catalog.target_groups);

  const scope = ctx.role === "org"
    ? h("p", { class: "muted", "data-scope": "org",
      text: w("orgScope", { name: ctx.session.credential.organisation_name ?? "" }) })
    : null;
  el.classList.add("overview");
  el.append(
    h("h2", { text: `${w("title")} · ${w("book", { book: byMonth.book })}` }),
    h(
      "section",
      { class: "card", "aria-label": w("title") },
      scope,
      h("p", { class: "muted", text: w("period", { tz: byMonth.timezone }) }),
      figures(byMonth.totals),
      reconciliation(byMonth, byCategory),
    ),
    h(
      "div",
      { class: "grid" },
      monthCard(echarts, byMonth),
      categoryCard(echarts, byCategory, categories),
    ),
    h(
      "div",
      { class: "grid" },
      needsCard(needs.items, categories, targets),
      exchangeCard(echarts, exchange),
    ),
  );
}
