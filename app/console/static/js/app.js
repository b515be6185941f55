// The console's shell: sign-in, the menu each role may use, the screens (one module each,
// loaded when first opened), the book a platform credential works in, and the language.
//
// Screens read and write only through the /v1 API, so the API's rules are the console's: a
// screen hides controls its role may never use, and the API refuses them anyway.

import { currentSession, setSession, signIn, signOut } from "./api.js";
import { said } from "./dom.js";
import { SHELL, lang, onLangChange, setLang, t } from "./i18n.js";

// Each screen: its hash, the roles that see it in the menu, its title, and its module.
export const SCREENS = [
  { id: "overview", roles: ["admin", "org", "auditor"], zh: "概览", en: "Overview" },
  { id: "queues", roles: ["admin", "org"], zh: "待办", en: "Work queues" },
  { id: "members", roles: ["admin", "org"], zh: "成员与机构", en: "Members & organisations" },
  { id: "exchange", roles: ["admin"], zh: "兑换与区域", en: "Exchange & regions" },
  { id: "kiosk", roles: ["admin", "org"], zh: "爱心超市", en: "Kiosk sites" },
  { id: "integrity", roles: ["admin", "org", "auditor"], zh: "完整性", en: "Integrity" },
];
const BOOK_KEY = "timebank.console.book";
const $ = (selector) => document.querySelector(selector);
let session = null;
let rendering = 0;

export function toast(message) {
  const box = $("#toast");
  box.textContent = message;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.textContent = ""; }, 6000);
}

function words() {
  for (const element of document.querySelectorAll("[data-i18n]")) {
    element.textContent = t(SHELL, element.dataset.i18n);
  }
  document.title = t(SHELL, "title");
  $("#nav").setAttribute("aria-label", t(SHELL, "nav"));
  const other = lang() === "en" ? "zh" : "en";
  $("#lang").textContent = other === "en" ? "EN" : "中文";
  $("#lang").lang = other === "en" ? "en" : "zh-CN";
}

function book() {
  return session?.credential.book ?? (localStorage.getItem(BOOK_KEY) || null);
}

function screensOf(role) {
  return SCREENS.filter((screen) => screen.roles.includes(role));
}

function currentId() {
  const wanted = location.hash.replace(/^#\/?/, "");
  const mine = screensOf(session.credential.role);
  return mine.some((s) => s.id === wanted) ? wanted : mine[0].id;
}

function renderNav() {
  const nav = $("#nav");
  const id = currentId();
  nav.replaceChildren(...screensOf(session.credential.role).map((screen) => {
    const link = document.createElement("a");
    link.href = `#/${screen.id}`;
    link.textContent = screen[lang()];
    link.dataset.screen = screen.id;
    if (screen.id === id) link.setAttribute("aria-current", "page");
    return link;
  }));
}

function renderWho() {
  const c = session.credential;
  const roles = { admin: "roleAdmin", org: "roleOrg", auditor: "roleAuditor" };
  const where = c.organisation_name ?? (c.book ?? t(SHELL, "platform"));
  $("#who-name").textContent = `${t(SHELL, roles[c.role])} · ${c.name || where}`;
  $("#who").hidden = false;
  $("#book-pick").hidden = c.book !== null;
  $("#book-code").value = book() ?? "";
}

/** The context a screen renders with. */
function context() {
  const role = session.credential.role;
  return {
    session,
    role,
    book: book(),
    organisationId: session.credential.organisation_id,
    // Whether the role may ever change anything; the API decides each action anyway.
    canWrite: role !== "auditor",
    toast,
    rerender: render,
  };
}

async function render() {
  if (!session) return;
  const ticket = ++rendering;
  delete $("#screen").dataset.ready;
  // Each screen starts by asking whether the session still lives (revoked, rotated, expired
  // or signed out elsewhere): a 401 brings the sign-in back (api.js).
  try {
    session = await currentSession();
  } catch {
    return;
  }
  if (ticket !== rendering) return;
  renderNav();
  renderWho();
  const id = currentId();
  const screen = $("#screen");
  screen.dataset.screen = id;
  screen.setAttribute("aria-busy", "true");
  screen.replaceChildren(Object.assign(document.createElement("p"), {
    className: "muted", textContent: t(SHELL, "loading"),
  }));
  try {
    const module = await import(`./screens/${id}.js`);
    if (ticket !== rendering) return;
    if (!context().book) {
      screen.replaceChildren(Object.assign(document.createElement("p"), {
        className: "error", textContent: t(SHELL, "needBook"),
      }));
      return;
    }
    const view = document.createElement("div");
    view.className = "screen";
    await module.render(view, context());
    if (ticket === rendering) screen.replaceChildren(view);
  } catch (error) {
    if (ticket !== rendering) return;
    const reason = said(error);
    screen.replaceChildren(Object.assign(document.createElement("p"), {
      className: "error", role: "alert", textContent: t(SHELL, "failed", { reason }),
    }));
  } finally {
    if (ticket === rendering) {
      screen.removeAttribute("aria-busy");
      screen.dataset.ready = id;
    }
  }
}

function showSignIn(message = "") {
  session = null;
  setSession(null);
  $("#who").hidden = true;
  $("#nav").hidden = true;
  $("#screen").replaceChildren();
  delete $("#screen").dataset.ready;
  $("#sign-in").hidden = false;
  $("#sign-in-error").textContent = message;
  $("#token").focus();
}

function start(found) {
  session = found;
  $("#sign-in-error").textContent = "";
  $("#sign-in").hidden = true;
  $("#nav").hidden = false;
  render();
}

async function boot() {
  words();
  setSession(null, () => showSignIn(t(SHELL, "ended")));
  onLangChange(() => { words(); render(); });
  $("#lang").addEventListener("click", () => setLang(lang() === "en" ? "zh" : "en"));
  $("#sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("#token");
    try {
      const opened = await signIn(input.value.trim());
      input.value = "";
      start(opened);
    } catch (error) {
      input.value = "";
      $("#sign-in-error").textContent = said(error);
    }
  });
  $("#sign-out").addEventListener("click", async () => {
    try {
      await signOut();
    } finally {
      showSignIn();
    }
  });
  $("#book-code").addEventListener("change", (event) => {
    localStorage.setItem(BOOK_KEY, event.target.value.trim());
    render();
  });
  window.addEventListener("hashchange", render);
  // An idle page notices the session's end too, within a minute.
  setInterval(() => { if (session) currentSession().catch(() => {}); }, 60_000);
  try {
    start(await currentSession());
  } catch {
    showSignIn();
  }
}

boot();
