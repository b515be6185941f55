// The console's client of the /v1 API: the session cookie (sent by the browser, HttpOnly),
// the session's CSRF token on every write, Idempotency-Keys, and problem+json errors.

import { lang } from "./i18n.js";

const TIMEOUT_MS = 20000;
const PROBLEM_PREFIX = "urn:timebank:problem:";
let csrfToken = null;
let onEnded = () => {};

/** The service answered with an error (an RFC 9457 problem document). */
export class ApiError extends Error {
  constructor(status, problem) {
    const type = typeof problem?.type === "string" ? problem.type : "";
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.type = type;
    this.slug = type.startsWith(PROBLEM_PREFIX) ? type.slice(PROBLEM_PREFIX.length) : "";
    this.problem = problem ?? {};
  }

  /** What a person reads: the problem's own words (the service writes them in English), with
   * the field errors, prefixed in Chinese with the kind of failure. */
  get said() {
    const fields = (this.problem.errors ?? []).map((e) => `${e.field}: ${e.message}`).join("; ");
    const base = fields ? `${this.message} (${fields})` : this.message;
    if (lang() === "en") return base;
    const kinds = { 401: "未登录", 403: "无权操作", 404: "找不到", 409: "冲突", 422: "输入有误" };
    return `${kinds[this.status] ?? `错误 ${this.status}`}：${base}`;
  }
}

export function setSession(session, ended) {
  csrfToken = session?.csrf_token ?? null;
  if (ended) onEnded = ended;
}

export function newKey() {
  return crypto.randomUUID();
}

/** One request. `body` is sent as JSON; a write gets `key` (or a fresh one) as its
 * Idempotency-Key and the session's CSRF token. Resolves to the parsed JSON, or to the
 * Response itself when `raw` is set. */
export async function api(method, path, { body, key, raw = false, headers = {} } = {}) {
  const sent = { ...headers };
  if (method !== "GET") {
    sent["Idempotency-Key"] = key ?? newKey();
    if (csrfToken) sent["X-CSRF-Token"] = csrfToken;
  }
  if (body !== undefined) sent["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers: sent,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  if (!response.ok) {
    let problem = null;
    try {
      problem = await response.json();
    } catch {
      problem = null;
    }
    const error = new ApiError(response.status, problem);
    if (response.status === 401 && !path.startsWith("/v1/console/sessions")) onEnded(error);
    throw error;
  }
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

/** Sign in: the token is sent once and forgotten; the session is the cookie. */
export async function signIn(token) {
  const session = await api("POST", "/v1/console/sessions", { body: { token } });
  setSession(session);
  return session;
}

export async function currentSession() {
  const session = await api("GET", "/v1/console/session");
  setSession(session);
  return session;
}

export async function signOut() {
  await api("DELETE", "/v1/console/session");
  setSession(null);
}

/** Every page of a list route that pages with `after`/`next_after`, at most `maxPages`:
 * `{items, cut}`, `cut` when pages were left unread. */
export async function allPages(path, params, maxPages = 100) {
  const items = [];
  let after = null;
  for (let i = 0; i < maxPages; i += 1) {
    const query = new URLSearchParams(params);
    if (after) query.set("after", after);
    const page = await api("GET", `${path}?${query}`);
    items.push(...page.items);
    after = page.next_after;
    if (!after) return { items, cut: false };
  }
  return { items, cut: true };
}
