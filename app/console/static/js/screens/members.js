// Members and organisations: find a member (by volunteer number or name) or open one by id;
// a member's details (masked as the role requires), balances in every book, history and
// service proof; enrolment by the member's consent code; the organisations and, for an admin,
// their credentials (issue, rotate, revoke, the new token shown once) and kiosk pairing codes.
//
// Data goes into the page through textContent only.

import { allPages, api, ApiError } from "../api.js";
import { hours, lang, number, t } from "../i18n.js";
import { h, said } from "../dom.js";

const WORDS = {
  zh: {
    tableOf: "{name}（表格）",
    title: "成员与机构",
    searchTitle: "查找成员", query: "志愿者编号或姓名", searchOrg: "机构（可选）", anyOrg: "全部机构",
    search: "搜索", searchUnavailable: "搜索暂不可用：服务尚未提供成员搜索。可以粘贴成员 ID 直接打开。",
    searchNone: "没有找到成员。", searchTruncated: "只查找了部分成员（按姓名搜索有数量上限），请输入更完整的姓名或志愿者编号。",
    more: "加载更多", open: "打开", openById: "按成员 ID 打开", memberId: "成员 ID",
    number: "志愿者编号", name: "姓名", phone: "电话", residentId: "身份证号", birthDate: "出生日期",
    status: "状态", organisations: "所属机构", masked: "个人信息已按权限遮蔽", active: "正常", erased: "已删除",
    memberTitle: "成员 {number}", balances: "余额", book: "账本", asset: "资产", posted: "已入账",
    pendingAmount: "冻结中", available: "可用", expiries: "即将到期", lapses: "{day} 失效 {amount}",
    history: "明细", historyBook: "账本", seq: "序号", at: "时间", about: "说明", amount: "变动",
    after: "变动后可用", older: "更早的明细", noHistory: "没有明细。",
    proof: "开具服务时长证明（新窗口打开；每次打开开具一份新编号的证明）",
    minutesOf: "{minutes} 分钟（{hours} 小时）", pointsOf: "{n} 积分",
    enrolTitle: "凭同意码加入机构", enrolHelp: "成员在小程序中生成同意码（10 位，10 分钟内有效，只能用一次）并交给机构。",
    enrolOrg: "加入的机构", code: "同意码", numberCheck: "志愿者编号（可选，用于核对）", enrol: "加入",
    enrolled: "已加入：志愿者编号 {number}（{org}）",
    orgsTitle: "机构", kind: "类型", parent: "上级机构", inCharge: "负责人", makerChecker: "录入与审批分离",
    yes: "是", no: "否", pairing: "生成收银台配对码", pairingCode: "{site} 的收银台配对码",
    pairingHelp: "在爱心超市收银台页面输入此码即可配对；只能使用一次，{at} 前有效。",
    credsTitle: "凭据", issueTitle: "签发凭据", role: "角色", credName: "名称", organisation: "机构",
    issue: "签发", prefix: "令牌前缀", created: "签发时间", lastUsed: "最近使用", never: "从未",
    revoke: "吊销", rotate: "更换令牌", confirmRevoke: "确认吊销「{name}」？吊销后立即失效。",
    confirmRotate: "确认更换「{name}」的令牌？旧令牌立即失效。", confirm: "确认", cancel: "取消",
    revoked: "已吊销", current: "当前登录", rotated: "已更换令牌：{name}", revokedToast: "已吊销：{name}",
    tokenWarning: "请立即复制并妥善保存：此令牌只显示这一次，离开或关闭后无法再次查看。",
    tokenOf: "「{name}」的新令牌", copy: "复制", copied: "已复制", copyFailed: "无法自动复制，请手动选中复制。",
    saved: "我已保存，关闭",
    role_admin: "管理员", role_org: "机构", role_miniprogram: "小程序", role_kiosk: "爱心超市收银台",
    role_auditor: "审计员", kind_social_work_station: "社工站", kind_community: "社区",
    kind_volunteer_team: "志愿服务队", kind_social_org: "社会组织", kind_charity: "慈善组织",
    kind_kiosk_site: "爱心超市", unknownOrg: "（未知机构）", choose: "请选择",
    actions: "操作",
  },
  en: {
    tableOf: "{name} (table)",
    title: "Members & organisations",
    searchTitle: "Find a member", query: "Volunteer number or name", searchOrg: "Organisation (optional)",
    anyOrg: "Every organisation", search: "Search",
    searchUnavailable: "Search is not available yet: the service has no member search. Paste a member ID to open one.",
    searchNone: "No member found.", searchTruncated: "Only part of the members were searched (a name search is bounded): type more of the name or the volunteer number.",
    more: "Load more", open: "Open", openById: "Open by member ID", memberId: "Member ID",
    number: "Volunteer number", name: "Name", phone: "Phone", residentId: "Resident ID",
    birthDate: "Birth date", status: "Status", organisations: "Organisations",
    masked: "Personal data masked for your role", active: "active", erased: "erased",
    memberTitle: "Member {number}", balances: "Balances", book: "Book", asset: "Asset", posted: "Posted",
    pendingAmount: "Held", available: "Available", expiries: "Lapsing", lapses: "{amount} lapse on {day}",
    history: "History", historyBook: "Book", seq: "Seq", at: "Time", about: "What", amount: "Change",
    after: "Available after", older: "Older lines", noHistory: "No history.",
    proof: "Issue a proof of service hours (opens a new window; each opening issues a new numbered proof)",
    minutesOf: "{minutes} minutes ({hours} h)", pointsOf: "{n} points",
    enrolTitle: "Enrol a member by consent code",
    enrolHelp: "The member makes a consent code in the mini-program (10 characters, valid 10 minutes, once) and gives it to the organisation.",
    enrolOrg: "Organisation to join", code: "Consent code", numberCheck: "Volunteer number (optional, to check)",
    enrol: "Enrol", enrolled: "Enrolled: volunteer {number} ({org})",
    orgsTitle: "Organisations", kind: "Kind", parent: "Parent", inCharge: "Person in charge",
    makerChecker: "Maker-checker", yes: "yes", no: "no", pairing: "Kiosk pairing code",
    pairingCode: "Kiosk pairing code of {site}",
    pairingHelp: "Type this code on the kiosk's page to pair it; it works once, until {at}.",
    credsTitle: "Credentials", issueTitle: "Issue a credential", role: "Role", credName: "Name",
    organisation: "Organisation", issue: "Issue", prefix: "Token prefix", created: "Issued",
    lastUsed: "Last used", never: "never", revoke: "Revoke", rotate: "New token",
    confirmRevoke: "Revoke “{name}”? It stops working at once.",
    confirmRotate: "Give “{name}” a new token? The old one stops working at once.",
    confirm: "Confirm", cancel: "Cancel", revoked: "revoked", current: "signed in",
    rotated: "New token for {name}", revokedToast: "Revoked: {name}",
    tokenWarning: "Copy and keep it now: this token is shown only this once and cannot be shown again.",
    tokenOf: "New token of “{name}”", copy: "Copy", copied: "Copied",
    copyFailed: "Could not copy: select the token and copy it by hand.", saved: "I have saved it: close",
    role_admin: "admin", role_org: "organisation", role_miniprogram: "mini-program",
    role_kiosk: "kiosk", role_auditor: "auditor", kind_social_work_station: "social-work station",
    kind_community: "community", kind_volunteer_team: "volunteer team", kind_social_org: "social organisation",
    kind_charity: "charity", kind_kiosk_site: "charity supermarket", unknownOrg: "(unknown organisation)",
    choose: "Choose", actions: "Actions",
  },
};

const ROLES = ["org", "kiosk", "auditor", "miniprogram", "admin"];
const HISTORY_PAGE = 20;
// The member open on this screen, kept across re-renders (a language switch) for one credential.
let opened = { credential: null, member: null };

// ---------------------------------------------------------------------------------------------
// Small helpers.

const w = (key, values) => t(WORDS, key, values);

function when(value) {
  if (!value) return "";
  return new Intl.DateTimeFormat(lang() === "en" ? "en" : "zh-CN", {
    dateStyle: "medium", timeStyle: "short",
  }).format(new Date(value));
}

function amountText(asset, amount, signed = false) {
  const sign = signed && amount > 0 ? "+" : "";
  if (asset === "HOUR") {
    return `${sign}${w("minutesOf", { minutes: number(amount), hours: hours(amount) })}`;
  }
  if (asset === "POINT") return `${sign}${w("pointsOf", { n: number(amount) })}`;
  return `${sign}${number(amount)} ${asset}`;
}

function field(labelText, control) {
  control.id ||= `m-${Math.random().toString(36).slice(2)}`;
  return h("div", {}, h("label", { htmlFor: control.id, text: labelText }), control);
}

/** A table in a box that scrolls sideways on a narrow screen (a named region a keyboard can
 * reach and scroll). */
function table(id, headers, rows, label) {
  return h("div", {
    class: "table-wrap", tabIndex: 0, role: "region", "aria-label": w("tableOf", { name: label }),
  }, h("table", { id },
    h("thead", {}, h("tr", {}, headers.map(([text, cls]) => h("th", { scope: "col", class: cls, text })))),
    h("tbody", {}, rows)));
}

function section(id, title, ...children) {
  return h("section", { class: "card", id, "aria-labelledby": `${id}-title` },
    h("h3", { id: `${id}-title`, text: title }), ...children);
}

function orgName(env, id) {
  return env.orgs.get(id)?.name ?? w("unknownOrg");
}

function orgOptions(env, filter, placeholder) {
  const options = [...env.orgs.values()].filter(filter)
    .sort((a, b) => a.name.localeCompare(b.name, "zh-CN"))
    .map((o) => h("option", { value: o.id, text: o.name }));
  return [h("option", { value: "", text: placeholder }), ...options];
}

// ---------------------------------------------------------------------------------------------
// Search, and opening a member.

function searchCard(env, showMember) {
  const { ctx } = env;
  const results = h("div", { id: "m-results", "aria-live": "polite" });
  const query = h("input", { id: "m-q", required: true, maxLength: 100, autocomplete: "off" });
  const org = ctx.role === "admin"
    ? h("select", { id: "m-search-org" }, orgOptions(env, () => true, w("anyOrg"))) : null;
  let last = null;

  function resultRows(items) {
    return items.map((m) => h("tr", { "data-member": m.id },
      h("td", { class: "mono", text: m.volunteer_number }),
      h("td", { text: m.display_name ?? "" }),
      h("td", { text: w(m.status) }),
      h("td", { text: (m.organisations ?? []).map((id) => orgName(env, id)).join("、") }),
      h("td", {}, h("button", {
        type: "button", class: "secondary", text: w("open"), onclick: () => showMember(m.id),
      }))));
  }

  async function run(cursor) {
    const q = new URLSearchParams({ book: ctx.book, q: query.value.trim(), limit: "20" });
    if (org?.value) q.set("organisation_id", org.value);
    if (cursor) q.set("cursor", cursor);
    results.setAttribute("aria-busy", "true");
    try {
      const page = await api("GET", `/v1/members?${q}`);
      const rows = cursor && last ? [...last.rows, ...page.items] : page.items;
      last = { rows };
      const nodes = [];
      if (page.scan_truncated) nodes.push(h("p", { class: "muted", text: w("searchTruncated") }));
      if (rows.length === 0) nodes.push(h("p", { class: "muted", text: w("searchNone") }));
      else {
        nodes.push(table("m-results-table", [
          [w("number")], [w("name")], [w("status")], [w("organisations")], [w("open")],
        ], resultRows(rows), w("searchTitle")));
      }
      if (page.next_cursor) {
        nodes.push(h("button", {
          type: "button", class: "secondary", text: w("more"), onclick: () => run(page.next_cursor),
        }));
      }
      results.replaceChildren(...nodes);
    } catch (error) {
      // The search route is being added: until it is served, the path answers 405 (only
      // POST /v1/members exists) or 404 (no route).
      const missing = error instanceof ApiError
        && ((error.status === 405 && error.slug === "method-not-allowed")
          || (error.status === 404 && error.slug === "not-found"));
      results.replaceChildren(h("p", {
        class: missing ? "muted" : "error", "data-unavailable": missing ? "true" : null,
        text: missing ? w("searchUnavailable") : said(error),
      }));
    } finally {
      results.removeAttribute("aria-busy");
      results.dataset.searched = String(Number(results.dataset.searched ?? 0) + 1);
    }
  }

  const form = h("form", { id: "m-search-form", class: "row", role: "search" },
    field(w("query"), query), org ? field(w("searchOrg"), org) : null,
    h("div", {}, h("button", { type: "submit", text: w("search") })));
  form.addEventListener("submit", (event) => { event.preventDefault(); run(null); });

  const id = h("input", {
    id: "m-id", required: true, autocomplete: "off", spellcheck: false,
    pattern: "\\s*[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\\s*",
  });
  const openForm = h("form", { id: "m-open-form", class: "row" },
    field(w("memberId"), id), h("div", {}, h("button", { type: "submit", text: w("openById") })));
  openForm.addEventListener("submit", (event) => { event.preventDefault(); showMember(id.value.trim()); });

  return section("m-search", w("searchTitle"), form, results, openForm);
}

// A member: details, balances, history, proof.

async function memberView(env, memberId, box) {
  const { ctx } = env;
  const [member, balances] = await Promise.all([
    api("GET", `/v1/members/${memberId}`),
    api("GET", `/v1/members/${memberId}/balances`),
  ]);
  const facts = [
    [w("number"), member.volunteer_number],
    [w("name"), member.display_name],
    [w("phone"), member.phone],
    [w("residentId"), member.resident_id],
    [w("birthDate"), member.birth_date],
    [w("status"), w(member.status)],
    [w("organisations"), member.organisations.map((id) => orgName(env, id)).join("、")],
  ].filter(([, value]) => value);
  const books = [...new Set(balances.balances.map((b) => b.book))];
  if (!books.includes(member.book)) books.unshift(member.book);
  const history = h("div", { id: "m-history" });
  const bookPick = books.length > 1
    ? h("select", { id: "m-history-book" }, books.map((b) => h("option", { value: b, text: b })))
    : null;
  const proof = new URLSearchParams({ format: "html" });
  if (ctx.role === "org") proof.set("organisation_id", ctx.organisationId);

  box.replaceChildren(...[
    h("h3", { id: "m-member-title", tabIndex: -1, text: w("memberTitle", { number: member.volunteer_number }) }),
    member.masked ? h("p", {}, h("span", { class: "badge", text: w("masked") })) : null,
    h("dl", { class: "m-facts" }, facts.map(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })])),
    h("h4", { text: w("balances") }),
    table("m-balances", [
      [w("book")], [w("asset")], [w("posted"), "num"], [w("pendingAmount"), "num"],
      [w("available"), "num"], [w("expiries")],
    ], balances.balances.map((b) => h("tr", { "data-account": b.account_id, "data-asset": b.asset },
      h("td", { text: b.book }),
      h("td", { text: b.asset }),
      h("td", { class: "num", text: amountText(b.asset, b.posted) }),
      h("td", { class: "num", text: amountText(b.asset, b.pending) }),
      h("td", { class: "num", "data-available": b.available, text: amountText(b.asset, b.available) }),
      h("td", { text: b.expiries.map((e) => w("lapses", { day: e.lapses_on, amount: amountText(b.asset, e.amount) })).join("；") }))),
    w("balances")),
    h("h4", { text: w("history") }),
    bookPick ? field(w("historyBook"), bookPick) : null,
    history,
    h("p", {}, h("a", {
      id: "m-proof", href: `/v1/members/${member.id}/service-proof?${proof}`, target: "_blank",
      rel: "noopener", text: w("proof"),
    })),
  ].filter(Boolean));

  const lines = [];
  async function page(before) {
    const q = new URLSearchParams({ book: bookPick?.value ?? member.book, limit: String(HISTORY_PAGE) });
    if (before !== null) q.set("before_seq", String(before));
    history.setAttribute("aria-busy", "true");
    try {
      const answer = await api("GET", `/v1/members/${member.id}/entries?${q}`);
      lines.push(...answer.items);
      const nodes = lines.length === 0 ? [h("p", { class: "muted", text: w("noHistory") })] : [
        table("m-history-table", [
          [w("seq"), "num"], [w("at")], [w("about")], [w("amount"), "num"], [w("after"), "num"],
        ], lines.map((line) => h("tr", { "data-seq": line.seq, "data-leg": line.leg_index },
          h("td", { class: "num", text: line.seq }),
          h("td", { text: when(line.posted_at) }),
          h("td", { class: "m-label", text: line.about?.label ?? line.kind }),
          h("td", { class: `num ${line.amount < 0 ? "bad" : "ok"}`, text: amountText(line.asset, line.amount, true) }),
          h("td", { class: "num", text: amountText(line.asset, line.available_after) }))),
        w("history")),
      ];
      if (answer.next_before_seq !== null) {
        nodes.push(h("button", {
          type: "button", class: "secondary", id: "m-older", text: w("older"),
          onclick: () => page(answer.next_before_seq),
        }));
      }
      history.replaceChildren(...nodes);
    } catch (error) {
      history.replaceChildren(h("p", { class: "error", role: "alert", text: said(error) }));
    } finally {
      history.removeAttribute("aria-busy");
    }
  }
  bookPick?.addEventListener("change", () => { lines.length = 0; page(null); });
  await page(null);
}

// ---------------------------------------------------------------------------------------------
// Enrolment by consent code.

function enrolCard(env) {
  const { ctx } = env;
  const code = h("input", { id: "m-code", required: true, maxLength: 20, autocomplete: "off", spellcheck: false });
  const number_ = h("input", { id: "m-number", maxLength: 40, autocomplete: "off", spellcheck: false });
  const org = ctx.role === "admin"
    ? h("select", { id: "m-enrol-org", required: true },
      orgOptions(env, (o) => o.kind !== "kiosk_site", w("choose")))
    : null;
  const result = h("p", { id: "m-enrol-result", role: "status" });
  const form = h("form", { id: "m-enrol-form", class: "row" },
    org ? field(w("enrolOrg"), org) : null,
    field(w("code"), code), field(w("numberCheck"), number_),
    h("div", {}, h("button", { type: "submit", text: w("enrol") })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const target = org ? org.value : ctx.organisationId;
    const body = { enrolment_code: code.value.trim().toUpperCase() };
    if (number_.value.trim()) body.volunteer_number = number_.value.trim();
    result.className = "";
    try {
      const done = await api("POST", `/v1/organisations/${target}/members`, { body });
      result.className = "ok";
      result.textContent = w("enrolled", { number: done.volunteer_number, org: orgName(env, target) });
      result.dataset.member = done.member_id;
      code.value = "";
      number_.value = "";
    } catch (error) {
      result.className = "error";
      result.textContent = said(error);
    }
  });
  return section("m-enrol", w("enrolTitle"),
    h("p", { class: "muted", text: w("enrolHelp") }),
    ctx.role === "org" ? h("p", { text: `${w("enrolOrg")}：${orgName(env, ctx.organisationId)}` }) : null,
    form, result);
}

// ---------------------------------------------------------------------------------------------
// Organisations and kiosk pairing codes.

function orgsCard(env) {
  const { ctx } = env;
  const pairing = h("div", { id: "m-pairing", "aria-live": "polite" });
  const mayPair = (o) => o.kind === "kiosk_site" && ctx.canWrite
    && (ctx.role === "admin" || ctx.organisationId === o.id);

  async function pair(site) {
    try {
      const code = await api("POST", `/v1/kiosk/sites/${site.id}/pairing-codes`);
      pairing.replaceChildren(h("div", { class: "m-secret", "data-site": site.id },
        h("p", {}, h("strong", { text: w("pairingCode", { site: site.name }) })),
        h("p", { class: "m-pairing-code mono", id: "m-pairing-code", text: code.code }),
        h("p", { class: "muted", text: w("pairingHelp", { at: when(code.expires_at) }) })));
    } catch (error) {
      pairing.replaceChildren(h("p", { class: "error", role: "alert", text: said(error) }));
    }
  }

  const shown = ctx.role === "admin" ? [...env.orgs.values()]
    : [...env.orgs.values()].filter((o) => o.id === ctx.organisationId);
  shown.sort((a, b) => (a.parent_id ? 1 : 0) - (b.parent_id ? 1 : 0) || a.name.localeCompare(b.name, "zh-CN"));
  return section("m-orgs", w("orgsTitle"),
    table("m-orgs-table", [[w("name")], [w("kind")], [w("parent")], [w("inCharge")], [w("makerChecker")], [w("actions")]],
      shown.map((o) => h("tr", { "data-organisation": o.id },
        h("td", { text: o.name }),
        h("td", { text: w(`kind_${o.kind}`) === `kind_${o.kind}` ? o.kind : w(`kind_${o.kind}`) }),
        h("td", { text: o.parent_id ? orgName(env, o.parent_id) : "" }),
        h("td", { text: o.person_in_charge ?? "" }),
        h("td", { text: o.maker_checker ? w("yes") : w("no") }),
        h("td", {}, mayPair(o) ? h("button", {
          type: "button", class: "secondary", "data-action": "pair", text: w("pairing"),
          onclick: () => pair(o),
        }) : null))), w("orgsTitle")),
    pairing);
}

// ---------------------------------------------------------------------------------------------
// Credentials (admins).

function tokenBox(name, token) {
  const value = h("input", { id: "m-token-value", readOnly: true, value: token, class: "mono", spellcheck: false });
  const said = h("p", { role: "status", class: "muted" });
  const box = h("div", { class: "m-secret", id: "m-token", role: "alert" },
    h("p", { class: "bad" }, h("strong", { text: w("tokenWarning") })),
    h("label", { htmlFor: value.id, text: w("tokenOf", { name }) }), value,
    h("div", { class: "m-buttons" },
      h("button", {
        type: "button", text: w("copy"),
        onclick: async () => {
          try {
            await navigator.clipboard.writeText(token);
            said.textContent = w("copied");
          } catch {
            value.select();
            said.textContent = document.execCommand("copy") ? w("copied") : w("copyFailed");
          }
        },
      }),
      h("button", { type: "button", class: "secondary", text: w("saved"), onclick: () => box.remove() })),
    said);
  return box;
}

function credentialsCard(env) {
  const { ctx } = env;
  const secret = h("div", { id: "m-secret-slot" });
  const list = h("div", { id: "m-creds-list" });
  const error = h("p", { class: "error", role: "alert" });
  const section_ = section("m-creds", w("credsTitle"));

  const role = h("select", { id: "m-issue-role" }, ROLES.map((r) => h("option", { value: r, text: w(`role_${r}`) })));
  const org = h("select", { id: "m-issue-org" });
  const name = h("input", { id: "m-issue-name", required: true, maxLength: 100, autocomplete: "off" });
  const orgField = field(w("organisation"), org);
  const fitOrgs = () => {
    const needs = role.value === "org" || role.value === "kiosk";
    orgField.hidden = !needs;
    org.required = needs;
    org.replaceChildren(...orgOptions(env, (o) => role.value !== "kiosk" || o.kind === "kiosk_site", w("choose")));
  };
  role.addEventListener("change", fitOrgs);
  fitOrgs();
  const issueForm = h("form", { id: "m-issue-form", class: "row" },
    field(w("role"), role), orgField, field(w("credName"), name),
    h("div", {}, h("button", { type: "submit", text: w("issue") })));
  issueForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { role: role.value, book: ctx.book, name: name.value.trim() };
    if (!orgField.hidden) body.organisation_id = org.value;
    error.textContent = "";
    try {
      const created = await api("POST", "/v1/credentials", { body });
      secret.replaceChildren(tokenBox(created.name, created.token));
      name.value = "";
    } catch (err) {
      error.textContent = said(err);
      return;
    }
    await load();
    secret.querySelector("input")?.focus();
  });

  function confirmInline(cell, question, run) {
    const original = [...cell.childNodes];
    const restore = () => cell.replaceChildren(...original);
    cell.replaceChildren(h("span", { class: "m-confirm" },
      h("span", { text: question }),
      h("button", { type: "button", class: "danger", "data-action": "confirm", text: w("confirm"), onclick: run }),
      h("button", { type: "button", class: "secondary", text: w("cancel"), onclick: restore })));
    cell.querySelector("button.secondary").focus();
  }

  async function act(path, credential, done) {
    error.textContent = "";
    try {
      const answer = await api("POST", path);
      done(answer);
    } catch (err) {
      error.textContent = said(err);
    }
    await load();
  }

  function row(c) {
    const mine = c.id === ctx.session.credential.id;
    const actions = h("div", { class: "m-buttons" });
    if (c.status === "active" && !mine) {
      actions.append(
        h("button", {
          type: "button", class: "secondary", "data-action": "rotate", text: w("rotate"),
          onclick: () => confirmInline(actions, w("confirmRotate", { name: c.name }), () => act(
            `/v1/credentials/${c.id}/rotate`, c, (answer) => {
              secret.replaceChildren(tokenBox(answer.name, answer.token));
              ctx.toast(w("rotated", { name: c.name }));
            })),
        }),
        h("button", {
          type: "button", class: "danger", "data-action": "revoke", text: w("revoke"),
          onclick: () => confirmInline(actions, w("confirmRevoke", { name: c.name }), () => act(
            `/v1/credentials/${c.id}/revoke`, c, () => ctx.toast(w("revokedToast", { name: c.name })))),
        }));
    }
    return h("tr", { "data-credential": c.id, "data-status": c.status },
      h("td", {}, c.name, mine ? h("span", { class: "badge", text: ` ${w("current")}` }) : null),
      h("td", { text: w(`role_${c.role}`) }),
      h("td", { text: c.organisation_id ? orgName(env, c.organisation_id) : "" }),
      h("td", { class: "mono m-prefix", text: c.token_prefix }),
      h("td", {}, c.status === "active" ? w("active")
        : h("span", { class: "bad", text: `${w("revoked")} ${when(c.revoked_at)}` })),
      h("td", { text: when(c.created_at) }),
      h("td", { text: c.last_used_at ? when(c.last_used_at) : w("never") }),
      h("td", {}, actions));
  }

  async function load() {
    list.setAttribute("aria-busy", "true");
    try {
      const { items } = await allPages("/v1/credentials", { book: ctx.book, limit: "500" }, 10);
      items.sort((a, b) => b.created_at.localeCompare(a.created_at));
      list.replaceChildren(table("m-creds-table", [
        [w("credName")], [w("role")], [w("organisation")], [w("prefix")], [w("status")],
        [w("created")], [w("lastUsed")], [w("actions")],
      ], items.map(row), w("credsTitle")));
    } catch (err) {
      list.replaceChildren(h("p", { class: "error", text: said(err) }));
    } finally {
      list.removeAttribute("aria-busy");
      list.dataset.loaded = String(Number(list.dataset.loaded ?? 0) + 1);
    }
  }

  section_.append(h("h4", { text: w("issueTitle") }), issueForm, error, secret, list);
  return { section: section_, load };
}

// ---------------------------------------------------------------------------------------------

export async function render(el, ctx) {
  el.classList.add("members");
  if (opened.credential !== ctx.session.credential.id) opened = { credential: ctx.session.credential.id, member: null };
  // An organisation that may not list the book's organisations reads its own.
  const orgs = await allPages("/v1/organisations", { book: ctx.book, limit: "500" }, 10)
    .then((r) => r.items)
    .catch(async (error) => {
      if (ctx.role === "admin") throw error;
      return [await api("GET", `/v1/organisations/${ctx.organisationId}`)];
    });
  const env = { ctx, orgs: new Map(orgs.map((o) => [o.id, o])) };

  const memberBox = h("div", { id: "m-member-body" });
  const memberSection = h("section", {
    class: "card", id: "m-member", "aria-labelledby": "m-member-title", hidden: true,
  }, memberBox);

  async function showMember(id, focus = true) {
    memberSection.hidden = false;
    memberBox.setAttribute("aria-busy", "true");
    delete memberBox.dataset.member;
    try {
      await memberView(env, id, memberBox);
      memberBox.dataset.member = id;
      opened.member = id;
      if (focus) memberBox.querySelector("#m-member-title")?.focus();
    } catch (error) {
      memberBox.replaceChildren(h("p", { class: "error", role: "alert", text: said(error) }));
    } finally {
      memberBox.removeAttribute("aria-busy");
    }
  }

  el.append(h("h2", { text: w("title") }), searchCard(env, showMember), memberSection);
  if (ctx.canWrite) el.append(enrolCard(env));
  el.append(orgsCard(env));
  const waits = [];
  if (ctx.role === "admin") {
    const creds = credentialsCard(env);
    el.append(creds.section);
    waits.push(creds.load());
  }
  if (opened.member) waits.push(showMember(opened.member, false));
  await Promise.all(waits);
}
