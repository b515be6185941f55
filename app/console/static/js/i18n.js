// The console's two languages: Simplified Chinese first, English on request (kept in
// localStorage). Each screen keeps its own words beside its code; `t(words, key, values)`
// picks the current language and fills {name} placeholders.

const LANG_KEY = "timebank.console.lang";
const listeners = new Set();

export function lang() {
  return localStorage.getItem(LANG_KEY) === "en" ? "en" : "zh";
}

export function setLang(value) {
  localStorage.setItem(LANG_KEY, value === "en" ? "en" : "zh");
  document.documentElement.lang = value === "en" ? "en" : "zh-CN";
  for (const listener of listeners) listener();
}

/** Call `listener` whenever the language changes (the app re-renders the screen). */
export function onLangChange(listener) {
  listeners.add(listener);
}

export function t(words, key, values = {}) {
  const table = words[lang()] ?? words.zh;
  let text = table[key] ?? words.zh[key] ?? key;
  for (const [name, value] of Object.entries(values)) {
    text = text.replaceAll(`{${name}}`, String(value));
  }
  return text;
}

/** Numbers and dates as the current language writes them. */
export function number(value, digits = 0) {
  return new Intl.NumberFormat(lang() === "en" ? "en" : "zh-CN", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  }).format(value);
}

export function hours(minutes) {
  return number(minutes / 60, 1);
}

export function dateTime(value) {
  if (!value) return "";
  return new Intl.DateTimeFormat(lang() === "en" ? "en" : "zh-CN", {
    dateStyle: "medium",
    timeStyle: "short",
  }).format(new Date(value));
}

// The shell's own words.
export const SHELL = {
  zh: {
    title: "时间银行管理台", skip: "跳到内容", book: "账本", signOut: "退出", signInTitle: "登录",
    signInHelp: "输入管理员、机构或审计员凭据的令牌。令牌只在登录时使用一次，之后由会话代替，页面不保存令牌。",
    token: "令牌", signIn: "登录", ended: "会话已结束，请重新登录", nav: "主菜单",
    roleAdmin: "管理员", roleOrg: "机构", roleAuditor: "审计员", platform: "全平台",
    needBook: "请先在右上角填写账本代码", loading: "加载中…", failed: "加载失败：{reason}",
  },
  en: {
    title: "Time Bank Console", skip: "Skip to content", book: "Book", signOut: "Sign out",
    signInTitle: "Sign in",
    signInHelp: "Enter the token of an admin, organisation or auditor credential. It is used once, to open a session; the page never keeps it.",
    token: "Token", signIn: "Sign in", ended: "Your session has ended; please sign in again",
    nav: "Main menu", roleAdmin: "Admin", roleOrg: "Organisation", roleAuditor: "Auditor",
    platform: "all books", needBook: "Enter a book code at the top right first",
    loading: "Loading…", failed: "Could not load: {reason}",
  },
};
