// Work queues: an organisation's daily work (an admin sees the whole book's; the API decides
// what each caller sees): pending service records to approve or reject, one by one or in bulk;
// open disputes to answer; today's projects with their sign-ups and check-ins; the unmet needs
// of its community.
//
// Every figure comes from the API as it answers; names are masked by the API for an
// organisation. Data goes into the page through textContent only.

import { allPages, api } from "../api.js";
import { lang, t } from "../i18n.js";
import { h, said } from "../dom.js";

const WORDS = {
  zh: {
    tableOf: "{name}（表格）",
    title: "待办",
    scopeOrg: "{org}的待办", scopeBook: "账本 {book} 的全部待办",
    pendingTitle: "待审核的服务记录", pendingNone: "没有待审核的服务记录。",
    selectAll: "全选本页记录", all: "全选", select: "选择 {who} 的记录",
    volunteer: "志愿者", project: "项目", when: "服务时间", minutes: "分钟", evidence: "依据",
    actions: "操作", approve: "批准", reject: "拒绝", rejectReason: "拒绝原因",
    rejectConfirm: "确认拒绝", cancel: "取消", bulkApprove: "批准所选（{n}）",
    loaded: "已显示 {n} 条", more: "加载更多",
    checkin: "签到（信用时）", manual: "手工录入（荣誉时）", attested: "证明人：{name}",
    approvedOne: "已批准 {who} 的 {minutes} 分钟", rejectedOne: "已拒绝 {who} 的记录",
    bulkDone: "批量批准：成功 {approved} 条，未批准 {refused} 条。",
    refusedLine: "{who}（{project}）：{reason}",
    disputesTitle: "待答复的异议", disputesNone: "没有待答复的异议。",
    disputeReason: "异议：{reason}", disputeOpened: "提出于 {at}", recordStatus: "记录状态：{status}",
    outcome: "处理结果", upheld: "支持异议（记录有误）", dismissed: "驳回异议（记录无误）",
    answer: "答复", corrected: "更正记录的 ID（可选）", submitAnswer: "提交答复",
    answered: "已答复异议：{outcome}",
    projectsTitle: "今天的项目", projectsNone: "今天（{day}）没有项目。",
    projectsDay: "服务日 {day}（{tz} 时间）", signups: "报名", checkins: "签到中",
    signupsOf: "报名名单", checkinsOf: "正在服务（已签到未签退）", nobody: "暂无",
    checkedInAt: "签到时间", signedUpAt: "报名时间", placeOf: "地点：{place}", minutesOf: "{n} 分钟",
    scanCut: "项目较多，只查看了前 {n} 个。",
    needsTitle: "未满足的需求", needsNone: "没有未满足的需求。",
    needsScopeOwn: "本机构及下属社区登记的需求", needsScopeAll: "本账本的全部需求",
    urgency: "紧急程度", category: "类别", group: "对象", description: "描述",
    community: "社区", registered: "登记时间",
    low: "低", normal: "一般", high: "高", urgent: "紧急",
    open: "进行中", pending: "待审核", approved: "已批准", rejected: "已拒绝", reversed: "已冲正",
    closed: "已结束",
    unknown: "（未知成员）", failed: "无法加载：{reason}",
  },
  en: {
    tableOf: "{name} (table)",
    title: "Work queues",
    scopeOrg: "Work of {org}", scopeBook: "All work in book {book}",
    pendingTitle: "Service records awaiting approval", pendingNone: "No records await approval.",
    selectAll: "Select every record on this page", all: "All", select: "Select the record of {who}",
    volunteer: "Volunteer", project: "Project", when: "Service time", minutes: "Minutes",
    evidence: "Evidence", actions: "Actions", approve: "Approve", reject: "Reject",
    rejectReason: "Reason for rejecting", rejectConfirm: "Reject", cancel: "Cancel",
    bulkApprove: "Approve selected ({n})", loaded: "{n} shown", more: "Load more",
    checkin: "Check-in (信用时)", manual: "Entered by hand (荣誉时)", attested: "Attested by {name}",
    approvedOne: "Approved {minutes} minutes for {who}", rejectedOne: "Rejected the record of {who}",
    bulkDone: "Bulk approval: {approved} approved, {refused} not approved.",
    refusedLine: "{who} ({project}): {reason}",
    disputesTitle: "Disputes to answer", disputesNone: "No disputes to answer.",
    disputeReason: "Dispute: {reason}", disputeOpened: "Opened {at}", recordStatus: "Record: {status}",
    outcome: "Outcome", upheld: "Uphold (the record is wrong)", dismissed: "Dismiss (the record is right)",
    answer: "Answer", corrected: "ID of the correcting record (optional)", submitAnswer: "Send answer",
    answered: "Dispute answered: {outcome}",
    projectsTitle: "Today's projects", projectsNone: "No projects today ({day}).",
    projectsDay: "Service day {day} ({tz} time)", signups: "Sign-ups", checkins: "Checked in",
    signupsOf: "Signed up", checkinsOf: "Serving now (checked in, not out)", nobody: "Nobody yet",
    checkedInAt: "Checked in", signedUpAt: "Signed up", placeOf: "Place: {place}",
    minutesOf: "{n} minutes",
    scanCut: "Many projects: only the first {n} were looked at.",
    needsTitle: "Unmet needs", needsNone: "No unmet needs.",
    needsScopeOwn: "Needs registered by this organisation and its communities",
    needsScopeAll: "Every need of this book",
    urgency: "Urgency", category: "Category", group: "For", description: "Description",
    community: "Community", registered: "Registered",
    low: "low", normal: "normal", high: "high", urgent: "urgent",
    open: "open", pending: "pending", approved: "approved", rejected: "rejected", reversed: "reversed",
    closed: "closed",
    unknown: "(unknown member)", failed: "Could not load: {reason}",
  },
};

const PAGE = 50;
const PROJECT_SCAN_PAGES = 20;
const URGENCY_ORDER = { urgent: 0, high: 1, normal: 2, low: 3 };

// ---------------------------------------------------------------------------------------------
// Small DOM and data helpers.

const w = (key, values) => t(WORDS, key, values);

function problemText(problem) {
  if (!problem) return "";
  const fields = (problem.errors ?? []).map((e) => `${e.field}: ${e.message}`).join("; ");
  const base = problem.detail || problem.title || String(problem.status ?? "");
  return fields ? `${base} (${fields})` : base;
}

/** At most `max` requests at a time. */
function limiter(max) {
  let active = 0;
  const waiting = [];
  const next = () => {
    if (active >= max || waiting.length === 0) return;
    active += 1;
    const { run, resolve, reject } = waiting.shift();
    run().then(resolve, reject).finally(() => { active -= 1; next(); });
  };
  return (run) => new Promise((resolve, reject) => { waiting.push({ run, resolve, reject }); next(); });
}

/** Look-ups shared by the screen's cards, each asked once per render. */
function lookups() {
  const queue = limiter(6);
  const memo = new Map();
  const get = (path) => {
    if (!memo.has(path)) memo.set(path, queue(() => api("GET", path)).catch(() => null));
    return memo.get(path);
  };
  const many = async (prefix, ids) => {
    const unique = [...new Set(ids)];
    const found = await Promise.all(unique.map((id) => get(`${prefix}/${id}`)));
    return new Map(unique.map((id, i) => [id, found[i]]));
  };
  return {
    members: (ids) => many("/v1/members", ids),
    projects: (ids) => many("/v1/projects", ids),
    records: (ids) => many("/v1/service-records", ids),
  };
}

/** Dates and times in the service's time zone (the one service days are counted in). */
function clock(tz) {
  const locale = lang() === "en" ? "en" : "zh-CN";
  let zone = tz;
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
  } catch {
    zone = undefined;
  }
  const make = (options) => new Intl.DateTimeFormat(locale, { timeZone: zone, ...options });
  const day = make({ month: "short", day: "numeric" });
  const time = make({ hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  const full = make({ dateStyle: "medium", timeStyle: "short" });
  const iso = new Intl.DateTimeFormat("en-CA", {
    timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
  });
  const isoDay = (value) => iso.format(new Date(value));
  return {
    zone: zone ?? Intl.DateTimeFormat().resolvedOptions().timeZone,
    isoDay,
    today: () => isoDay(Date.now()),
    at: (value) => (value ? full.format(new Date(value)) : ""),
    span(start, end) {
      if (!start) return "";
      const a = new Date(start);
      if (!end) return `${day.format(a)} ${time.format(a)} –`;
      const b = new Date(end);
      if (isoDay(a) === isoDay(b)) return `${day.format(a)} ${time.format(a)}–${time.format(b)}`;
      return `${day.format(a)} ${time.format(a)} – ${day.format(b)} ${time.format(b)}`;
    },
  };
}

/** A table in a box that scrolls sideways on a narrow screen (a named region a keyboard can
 * reach and scroll). */
function scroller(label, tableNode) {
  return h("div", {
    class: "table-wrap", tabIndex: 0, role: "region", "aria-label": w("tableOf", { name: label }),
  }, tableNode);
}

function who(member, fallbackId) {
  if (!member) return `${w("unknown")} ${fallbackId.slice(0, 8)}`;
  return member.display_name ? `${member.volunteer_number} ${member.display_name}` : member.volunteer_number;
}

function volunteerCell(member, id) {
  if (!member) return h("td", {}, h("span", { class: "muted", text: `${w("unknown")} ${id.slice(0, 8)}` }));
  return h("td", { class: "q-who" },
    h("span", { class: "mono", text: member.volunteer_number }),
    member.display_name ? h("span", { text: ` ${member.display_name}` }) : null);
}

/** A card with its heading and a body redrawn by `load()`; `aria-busy` while loading and
 * `data-loaded` counting the loads (for whoever waits on it). */
function card(id, title) {
  const body = h("div", { class: "q-body" });
  const error = h("p", { class: "error q-card-error", role: "alert" });
  const section = h("section", { class: "card", id, "aria-labelledby": `${id}-title` },
    h("h3", { id: `${id}-title`, text: title }), error, body);
  let loads = 0;
  return {
    section,
    body,
    error,
    async reload(fill) {
      section.setAttribute("aria-busy", "true");
      try {
        body.replaceChildren(...await fill());
      } catch (err) {
        body.replaceChildren(h("p", { class: "error", text: w("failed", { reason: said(err) }) }));
      } finally {
        section.removeAttribute("aria-busy");
        loads += 1;
        section.dataset.loaded = String(loads);
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Pending service records.

function pendingCard(env) {
  const { ctx, look } = env;
  const box = card("q-pending", w("pendingTitle"));
  const state = { items: [], next: null, members: new Map(), projects: new Map(), report: null };
  const checked = new Set();

  async function fetchPage(after) {
    const q = new URLSearchParams({ book: ctx.book, status: "pending", limit: String(PAGE) });
    if (after) q.set("after", after);
    const page = await api("GET", `/v1/service-records?${q}`);
    const [members, projects] = await Promise.all([
      look.members(page.items.map((r) => r.member_id)),
      look.projects(page.items.map((r) => r.project_id)),
    ]);
    for (const [k, v] of members) state.members.set(k, v);
    for (const [k, v] of projects) state.projects.set(k, v);
    return page;
  }

  async function refresh() {
    await box.reload(async () => {
      const page = await fetchPage(null);
      state.items = page.items;
      state.next = page.next_after;
      checked.clear();
      state.items.sort((a, b) => a.started_at.localeCompare(b.started_at));
      return draw();
    });
  }

  async function more() {
    await box.reload(async () => {
      const page = await fetchPage(state.next);
      state.items.push(...page.items);
      state.next = page.next_after;
      return draw();
    });
  }

  /** An action, then the queue read again (whatever happened: a record another person
   * settled meanwhile leaves it too); a refusal is said above the queue. */
  async function act(run) {
    box.error.textContent = "";
    try {
      await run();
    } catch (err) {
      box.error.textContent = said(err);
    }
    await refresh();
  }

  function projectCell(record) {
    const project = state.projects.get(record.project_id);
    const org = env.orgs.get(record.organisation_id);
    return h("td", {},
      project ? project.title : record.project_id.slice(0, 8),
      ctx.role === "admin" && org ? h("div", { class: "muted", text: org.name }) : null);
  }

  function evidenceCell(record) {
    return h("td", {},
      h("span", { class: "badge", text: w(record.evidence) }),
      record.attested_by ? h("div", { class: "muted", text: w("attested", { name: record.attested_by }) }) : null);
  }

  function rejectRow(record, person) {
    const input = h("input", {
      id: `q-reason-${record.id}`, required: true, maxLength: 2000, autocomplete: "off",
    });
    const row = h("tr", { class: "q-reject", "data-reject": record.id });
    const form = h("form", { class: "row" },
      h("div", {}, h("label", { htmlFor: input.id, text: w("rejectReason") }), input),
      h("div", { class: "q-buttons" },
        h("button", { type: "submit", class: "danger", text: w("rejectConfirm") }),
        h("button", { type: "button", class: "secondary", text: w("cancel"), onclick: () => row.remove() })));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      act(async () => {
        await api("POST", `/v1/service-records/${record.id}/reject`, { body: { reason: input.value.trim() } });
        ctx.toast(w("rejectedOne", { who: person }));
      });
    });
    row.append(h("td", { colSpan: 7 }, form));
    return row;
  }

  function recordRow(record, bulkButton) {
    const member = state.members.get(record.member_id);
    const person = who(member, record.member_id);
    const tr = h("tr", { "data-record": record.id });
    const cells = [];
    if (ctx.canWrite) {
      const box_ = h("input", {
        type: "checkbox", checked: checked.has(record.id), "aria-label": w("select", { who: person }),
        onchange: (event) => {
          if (event.target.checked) checked.add(record.id);
          else checked.delete(record.id);
          bulkButton.update();
        },
      });
      cells.push(h("td", { class: "q-pick" }, box_));
    }
    const facts = [
      volunteerCell(member, record.member_id),
      projectCell(record),
      h("td", { text: env.clock.span(record.started_at, record.ended_at) }),
      h("td", { class: "num", text: record.credited_minutes ?? "" }),
      evidenceCell(record),
    ];
    // Each cell names its column too: on a phone the rows are stacked, without the header.
    ["volunteer", "project", "when", "minutes", "evidence"].forEach((k, i) => { facts[i].dataset.label = w(k); });
    cells.push(...facts);
    if (ctx.canWrite) {
      cells.push(h("td", { class: "q-act" }, h("div", { class: "q-buttons" },
        h("button", {
          type: "button", class: "secondary", text: w("approve"), "data-action": "approve",
          onclick: () => act(async () => {
            const done = await api("POST", `/v1/service-records/${record.id}/approve`);
            ctx.toast(w("approvedOne", { who: person, minutes: done.credited_minutes }));
          }),
        }),
        h("button", {
          type: "button", class: "danger", text: w("reject"), "data-action": "reject",
          onclick: () => {
            const open = tr.nextElementSibling;
            if (open?.dataset.reject === record.id) return;
            const row = rejectRow(record, person);
            tr.after(row);
            row.querySelector("input").focus();
          },
        }))));
    }
    tr.append(...cells);
    return tr;
  }

  function reportBox() {
    const report = state.report;
    if (!report) return null;
    const refused = report.results.filter((r) => r.status !== 200);
    return h("div", { class: "q-report", role: "status" },
      h("p", { class: refused.length ? "bad" : "ok", text: w("bulkDone", {
        approved: report.approved, refused: report.refused,
      }) }),
      refused.length ? h("ul", {}, refused.map((r) => {
        const member = r.record ? state.members.get(r.record.member_id) : null;
        const project = r.record ? state.projects.get(r.record.project_id) : null;
        return h("li", { "data-refused": r.record_id, text: w("refusedLine", {
          who: member ? who(member, "") : r.record_id.slice(0, 8),
          project: project?.title ?? "",
          reason: `${r.status} ${problemText(r.problem)}`,
        }) });
      })) : null);
  }

  async function bulk() {
    const ids = [...checked];
    if (ids.length === 0) return;
    await act(async () => {
      const known = new Map(state.items.map((r) => [r.id, r]));
      const report = await api("POST", "/v1/service-records/approve", { body: { record_ids: ids } });
      // A refused record's answer may carry no record: name it from the queue.
      for (const item of report.results) item.record ??= known.get(item.record_id) ?? null;
      state.report = report;
    });
  }

  function draw() {
    const nodes = [reportBox()];
    if (state.items.length === 0) {
      nodes.push(h("p", { class: "muted", text: w("pendingNone") }));
      return nodes.filter(Boolean);
    }
    const bulkButton = h("button", { type: "button", id: "q-bulk", onclick: bulk });
    bulkButton.update = () => {
      bulkButton.textContent = w("bulkApprove", { n: checked.size });
      bulkButton.disabled = checked.size === 0;
    };
    bulkButton.update();
    const head = [];
    if (ctx.canWrite) {
      const all = h("input", {
        type: "checkbox", "aria-label": w("selectAll"),
        onchange: (event) => {
          for (const input of box.body.querySelectorAll("tbody input[type=checkbox]")) {
            input.checked = event.target.checked;
            input.dispatchEvent(new Event("change"));
          }
        },
      });
      head.push(h("th", { scope: "col" }, h("label", { class: "q-all" }, all,
        h("span", { class: "q-all-text", "aria-hidden": "true", text: w("all") }))));
    }
    head.push(...["volunteer", "project", "when"].map((k) => h("th", { scope: "col", text: w(k) })),
      h("th", { scope: "col", class: "num", text: w("minutes") }),
      h("th", { scope: "col", text: w("evidence") }));
    if (ctx.canWrite) head.push(h("th", { scope: "col", text: w("actions") }));
    nodes.push(
      h("div", { class: "row q-toolbar" },
        ctx.canWrite ? bulkButton : null,
        h("span", { class: "muted", text: w("loaded", { n: state.items.length }) })),
      scroller(w("pendingTitle"), h("table", { id: "q-pending-table" },
        h("thead", {}, h("tr", {}, head)),
        h("tbody", {}, state.items.map((r) => recordRow(r, bulkButton))))),
    );
    if (state.next) {
      nodes.push(h("button", { type: "button", class: "secondary", text: w("more"), onclick: more }));
    }
    return nodes.filter(Boolean);
  }

  return { section: box.section, load: refresh };
}

// ---------------------------------------------------------------------------------------------
// Open disputes.

function disputesCard(env) {
  const { ctx, look } = env;
  const box = card("q-disputes", w("disputesTitle"));

  function answerForm(dispute) {
    const prefix = `q-d-${dispute.id}`;
    const text = h("textarea", { id: `${prefix}-answer`, required: true, rows: 2, maxLength: 2000 });
    const corrected = h("input", {
      id: `${prefix}-corrected`, autocomplete: "off", spellcheck: false,
      pattern: "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    });
    const radio = (value) => h("label", { class: "q-choice" },
      h("input", { type: "radio", name: `${prefix}-outcome`, value, required: true }), w(value));
    const error = h("p", { class: "error", role: "alert" });
    const form = h("form", { class: "q-answer" },
      h("fieldset", {}, h("legend", { text: w("outcome") }), radio("upheld"), radio("dismissed")),
      h("label", { htmlFor: text.id, text: w("answer") }), text,
      h("label", { htmlFor: corrected.id, text: w("corrected") }), corrected,
      h("div", { class: "q-buttons" }, h("button", { type: "submit", text: w("submitAnswer") })),
      error);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const outcome = form.querySelector("input[type=radio]:checked")?.value;
      const body = { outcome, answer: text.value.trim() };
      if (corrected.value.trim()) body.corrected_record_id = corrected.value.trim();
      try {
        await api("POST", `/v1/service-disputes/${dispute.id}/answer`, { body });
      } catch (err) {
        error.textContent = said(err);
        return;
      }
      ctx.toast(w("answered", { outcome: w(outcome) }));
      await load();
    });
    return form;
  }

  async function load() {
    await box.reload(async () => {
      const q = new URLSearchParams({ book: ctx.book, status: "open", limit: "100" });
      const { items } = await api("GET", `/v1/service-disputes?${q}`);
      if (items.length === 0) return [h("p", { class: "muted", text: w("disputesNone") })];
      const [members, records] = await Promise.all([
        look.members(items.map((d) => d.member_id)),
        look.records(items.map((d) => d.record_id)),
      ]);
      const projects = await look.projects([...records.values()].filter(Boolean).map((r) => r.project_id));
      return items.map((dispute) => {
        const record = records.get(dispute.record_id);
        const project = record ? projects.get(record.project_id) : null;
        const facts = record ? [
          project?.title ?? record.project_id.slice(0, 8),
          env.clock.span(record.started_at, record.ended_at),
          record.credited_minutes !== null ? w("minutesOf", { n: record.credited_minutes }) : "",
          w("recordStatus", { status: w(record.status) }),
        ].filter(Boolean).join(" · ") : dispute.record_id;
        return h("article", { class: "q-dispute", "data-dispute": dispute.id },
          h("p", {}, h("strong", { text: who(members.get(dispute.member_id), dispute.member_id) })),
          h("p", { class: "muted", text: facts }),
          h("p", { class: "q-reason", text: w("disputeReason", { reason: dispute.reason }) }),
          h("p", { class: "muted", text: w("disputeOpened", { at: env.clock.at(dispute.opened_at) }) }),
          ctx.canWrite ? answerForm(dispute) : null);
      });
    });
  }

  return { section: box.section, load };
}

// ---------------------------------------------------------------------------------------------
// Today's projects, with their sign-ups and check-ins.

function projectsCard(env) {
  const { ctx, look } = env;
  const box = card("q-projects", w("projectsTitle"));

  function people(rows, members, timeKey, timeLabel, label) {
    if (rows.length === 0) return h("p", { class: "muted", text: w("nobody") });
    return scroller(label, h("table", {},
      h("thead", {}, h("tr", {},
        h("th", { scope: "col", text: w("volunteer") }), h("th", { scope: "col", text: timeLabel }))),
      h("tbody", {}, rows.map((row) => h("tr", { "data-member": row.member_id },
        volunteerCell(members.get(row.member_id), row.member_id),
        h("td", { text: env.clock.at(row[timeKey]) }))))));
  }

  function item(project, signups, checkins) {
    const list = h("div", { class: "q-people" });
    const details = h("details", { class: "q-project", "data-project": project.id },
      h("summary", {},
        h("strong", { text: project.title }),
        h("span", { class: "muted", text: ` ${env.clock.span(project.starts_at, project.ends_at)}` }),
        h("span", { class: "q-counts" },
          h("span", { class: "badge", "data-count": "signups", text: `${w("signups")} ${signups.length}/${project.capacity}` }),
          " ",
          h("span", { class: "badge", "data-count": "checkins", text: `${w("checkins")} ${checkins.length}` }),
          project.status === "closed" ? [" ", h("span", { class: "badge", text: w("closed") })] : null)),
      h("p", { class: "muted", text: w("placeOf", { place: project.place }) }),
      list);
    let filled = false;
    details.addEventListener("toggle", async () => {
      if (!details.open || filled) return;
      filled = true;
      const members = await look.members([...signups, ...checkins].map((r) => r.member_id));
      list.replaceChildren(
        h("h4", { text: w("signupsOf") }),
        people(signups, members, "created_at", w("signedUpAt"), `${project.title} ${w("signupsOf")}`),
        h("h4", { text: w("checkinsOf") }),
        people(checkins, members, "started_at", w("checkedInAt"), `${project.title} ${w("checkinsOf")}`));
      details.dataset.filled = "true";
    });
    return details;
  }

  async function load() {
    await box.reload(async () => {
      const params = { book: ctx.book, limit: "500" };
      if (ctx.role === "org") params.organisation_id = ctx.organisationId;
      const { items, cut } = await allPages("/v1/projects", params, PROJECT_SCAN_PAGES);
      const today = env.clock.today();
      // A project is today's when its window touches today (in the service's time zone).
      const mine = items.filter((p) => env.clock.isoDay(p.starts_at) <= today
        && env.clock.isoDay(new Date(p.ends_at).getTime() - 1) >= today)
        .sort((a, b) => a.starts_at.localeCompare(b.starts_at));
      const nodes = [h("p", { class: "muted", text: w("projectsDay", { day: today, tz: env.clock.zone }) })];
      if (cut) nodes.push(h("p", { class: "muted", text: w("scanCut", { n: items.length }) }));
      if (mine.length === 0) {
        nodes.push(h("p", { class: "muted", text: w("projectsNone", { day: today }) }));
        return nodes;
      }
      const loaded = await Promise.all(mine.map(async (project) => {
        const q = new URLSearchParams({ project_id: project.id, status: "open", limit: "500", book: ctx.book });
        const [signups, open] = await Promise.all([
          api("GET", `/v1/projects/${project.id}/signups`),
          api("GET", `/v1/service-records?${q}`),
        ]);
        return item(project, signups.items.filter((s) => s.status === "active"), open.items);
      }));
      nodes.push(...loaded);
      return nodes;
    });
  }

  return { section: box.section, load };
}

// ---------------------------------------------------------------------------------------------
// Unmet needs of the organisation's community.

function needsCard(env) {
  const { ctx } = env;
  const box = card("q-needs", w("needsTitle"));

  /** The organisations whose needs are this organisation's: itself and the organisations
   * under it (a social-work station's communities). A service organisation has no community
   * of its own and sees the book's. */
  function scope() {
    if (ctx.role !== "org") return null;
    const own = env.orgs.get(ctx.organisationId);
    if (!own || !["community", "social_work_station"].includes(own.kind)) return null;
    const ids = new Set([own.id]);
    for (const org of env.orgs.values()) if (org.parent_id === own.id) ids.add(org.id);
    return ids;
  }

  async function load() {
    await box.reload(async () => {
      const { items } = await allPages("/v1/needs", { book: ctx.book, status: "open", limit: "500" }, 4);
      const ids = scope();
      const needs = items
        .filter((n) => !ids || ids.has(n.organisation_id) || (n.community_id && ids.has(n.community_id)))
        .sort((a, b) => (URGENCY_ORDER[a.urgency] ?? 9) - (URGENCY_ORDER[b.urgency] ?? 9)
          || a.created_at.localeCompare(b.created_at));
      const nodes = [h("p", { class: "muted", text: w(ids ? "needsScopeOwn" : "needsScopeAll") })];
      if (needs.length === 0) {
        nodes.push(h("p", { class: "muted", text: w("needsNone") }));
        return nodes;
      }
      const name = (code, table) => {
        const entry = table.get(code);
        return entry ? (lang() === "en" ? entry.name_en : entry.name_zh) : code;
      };
      nodes.push(scroller(w("needsTitle"), h("table", { id: "q-needs-table" },
        h("thead", {}, h("tr", {}, ["urgency", "category", "group", "description", "community", "registered"]
          .map((k) => h("th", { scope: "col", text: w(k) })))),
        h("tbody", {}, needs.map((need) => h("tr", { "data-need": need.id },
          h("td", {}, h("span", { class: `badge q-urgency-${need.urgency}`, text: w(need.urgency) })),
          h("td", { text: name(need.category, env.categories) }),
          h("td", { text: name(need.target_group, env.groups) }),
          h("td", { text: need.description }),
          h("td", { text: env.orgs.get(need.community_id ?? need.organisation_id)?.name ?? "" }),
          h("td", { text: env.clock.at(need.created_at) })))))));
      return nodes;
    });
  }

  return { section: box.section, load };
}

// ---------------------------------------------------------------------------------------------

/** What every card needs: the service's time zone (asked of the statistics route, the one
 * answer that names it), the book's organisations and the service catalogue. */
async function environment(ctx) {
  const today = new Intl.DateTimeFormat("en-CA").format(new Date());
  const [stats, orgs, catalog] = await Promise.all([
    api("GET", `/v1/stats/service?${new URLSearchParams({ book: ctx.book, from: today, to: today })}`)
      .catch(() => null),
    allPages("/v1/organisations", { book: ctx.book, limit: "500" }).catch(() => ({ items: [] })),
    api("GET", "/v1/service-catalog")
      .catch(() => ({ categories: [], target_groups: [] })),
  ]);
  return {
    ctx,
    look: lookups(),
    clock: clock(stats?.timezone),
    orgs: new Map(orgs.items.map((o) => [o.id, o])),
    categories: new Map((catalog.categories ?? []).map((c) => [c.code, c])),
    groups: new Map((catalog.target_groups ?? []).map((g) => [g.code, g])),
  };
}

export async function render(el, ctx) {
  const env = await environment(ctx);
  const own = env.orgs.get(ctx.organisationId);
  el.classList.add("queues");
  el.append(
    h("h2", { text: w("title") }),
    h("p", { class: "muted", text: ctx.role === "org"
      ? w("scopeOrg", { org: own?.name ?? ctx.session.credential.organisation_name ?? "" })
      : w("scopeBook", { book: ctx.book }) }),
  );
  const cards = [pendingCard(env), disputesCard(env), projectsCard(env), needsCard(env)];
  el.append(...cards.map((c) => c.section));
  await Promise.all(cards.map((c) => c.load()));
}
