// The kiosk's client of the Timebank Ledger API: the bearer token (kept for the browser
// session only), problem+json errors, and Idempotency-Keys that survive a retry.

const TOKEN_KEY = "timebank.kiosk.token";
const TIMEOUT_MS = 15000;

// What the operator reads for the problem types a kiosk meets (docs/errors.md): plain Chinese,
// with the figures the problem document carries; never an id or the service's English detail.
const PROBLEMS = {
  unauthorized: "令牌无效或已吊销",
  forbidden: "本终端无权进行此操作",
  validation: "输入有误",
  "rate-limited": "操作过于频繁，请稍后再试",
  unavailable: "服务暂不可用，请稍后再试",
  "idempotency-in-flight": "上一次请求仍在处理，请稍后重试",
  "insufficient-funds": (p) => Number.isInteger(p.available)
    ? `会员积分不足：可用积分 ${p.available}` : "会员积分不足",
  "member-not-found": "找不到该会员",
  "redeem-code-invalid": "不是有效的兑换码",
  "pairing-code-invalid": "配对码无效、已过期或已使用，请重新获取",
  "redeem-code-expired": "兑换码已过期，请会员刷新后重新出示",
  "redeem-code-used": "兑换码已使用过，请会员刷新后重新出示",
  "redeem-code-other-member": "兑换码不属于该会员",
  "kiosk-item-not-found": "商品不存在",
  "kiosk-item-inactive": "商品已下架",
  "out-of-stock": (p) => Number.isInteger(p.available)
    ? `库存不足：该商品仅剩 ${p.available} 件` : "库存不足",
  "basket-mixed-assets": "一次兑换只能使用同一种积分",
  "redemption-not-found": "找不到这笔兑换",
  "redemption-expired": "兑换已超时，预留已释放",
  "redemption-not-pending": "这笔兑换已处理过",
  "receipt-too-large": "凭条过大，无法生成二维码",
};
const PROBLEM_PREFIX = "urn:timebank:problem:";

/** The service answered with an error (an RFC 9457 problem document). */
export class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem?.detail || problem?.title || `HTTP ${status}`;
    const type = typeof problem?.type === "string" ? problem.type : "";
    const slug = type.startsWith(PROBLEM_PREFIX) ? type.slice(PROBLEM_PREFIX.length) : "";
    const known = Object.hasOwn(PROBLEMS, slug) ? PROBLEMS[slug] : null;
    const said = typeof known === "function" ? known(problem ?? {}) : known;
    super(said ?? `操作未成功（错误 ${status}），请联系管理员`);
    this.status = status;
    this.type = type || null;
    this.slug = slug;
    this.problem = problem ?? {};
    this.detail = detail;
  }

  /** Whether the same request may be sent again with the same Idempotency-Key. */
  get retryable() {
    return this.status >= 500 || this.status === 429
      || this.type === `${PROBLEM_PREFIX}idempotency-in-flight`;
  }
}

/** No answer at all: network down, server unreachable or too slow. */
export class NetworkError extends Error {}

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
};

// Server time minus kiosk time (ms), from the Date header of the last answer, so that countdowns
// to the service's deadlines follow the service's clock. The header has whole seconds (and
// servers cache it for a second), so only a larger skew is corrected.
const SKEW_TOLERANCE_MS = 3000;
let clockOffsetMs = 0;
export const serverNow = () => Date.now() + clockOffsetMs;

async function call(method, path, { body, idempotencyKey } = {}) {
  const headers = { Accept: "application/json, application/problem+json" };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (e) {
    const timedOut = e.name === "TimeoutError";
    throw new NetworkError(timedOut ? "服务器响应超时" : "网络不可用，请检查网络后重试");
  }
  const date = Date.parse(res.headers.get("Date") ?? "");
  if (!Number.isNaN(date)) {
    const skew = date - Date.now();
    clockOffsetMs = Math.abs(skew) > SKEW_TOLERANCE_MS ? skew : 0;
  }
  if (!res.ok) {
    let problem = null;
    try {
      problem = await res.json();
    } catch { /* not JSON: keep the status */ }
    throw new ApiError(res.status, problem);
  }
  return res;
}

const json = async (promise) => (await promise).json();
const seg = encodeURIComponent;

export const api = {
  site: () => json(call("GET", "/v1/kiosk/site")),
  items: (siteId) => json(call("GET", `/v1/kiosk/sites/${seg(siteId)}/items`)),
  checkCode: (code) => json(call("POST", "/v1/kiosk/code-checks", { body: { code } })),
  pair: (code, name) => json(call("POST", "/v1/kiosk/pairings", { body: { code, name } })),
  reserve: (code, items, idempotencyKey) =>
    json(call("POST", "/v1/kiosk/redemptions", { body: { code, items }, idempotencyKey })),
  redemption: (id) => json(call("GET", `/v1/kiosk/redemptions/${seg(id)}`)),
  pending: (siteId) =>
    json(call("GET", `/v1/kiosk/sites/${seg(siteId)}/redemptions?status=pending&limit=1`)),
  confirm: (id, idempotencyKey) =>
    json(call("POST", `/v1/kiosk/redemptions/${seg(id)}/confirm`, { idempotencyKey })),
  cancel: (id, idempotencyKey) =>
    json(call("POST", `/v1/kiosk/redemptions/${seg(id)}/cancel`, { idempotencyKey })),
  receipt: (txId) => json(call("GET", `/v1/transactions/${seg(txId)}/receipt`)),
  proof: async (txId) => (await call("GET", `/v1/transactions/${seg(txId)}/proof`)).text(),
  receiptSvg: async (txId) =>
    (await call("GET", `/v1/transactions/${seg(txId)}/receipt.svg`)).blob(),
};

/** A random (version 4) UUID; crypto.randomUUID exists only in secure contexts (HTTPS). */
function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * One Idempotency-Key per attempt: the same request retried after no answer (or a 5xx, a 429,
 * or the first still in flight) reuses its key, so the service does it at most once; a
 * definitive answer ends the attempt.
 */
export class Attempt {
  #key = null;
  #request = null;

  key(request) {
    const sig = JSON.stringify(request);
    if (this.#key === null || this.#request !== sig) {
      this.#key = newKey();
      this.#request = sig;
    }
    return this.#key;
  }

  /** After the request's outcome: keep the key only if it may be retried. */
  settle(error = null) {
    const retryable = error instanceof NetworkError
      || (error instanceof ApiError && error.retryable);
    if (!retryable) this.#key = this.#request = null;
  }
}

/** What to tell the operator, after a prefix such as "兑换失败：". */
export function explain(error) {
  if (error instanceof ApiError || error instanceof NetworkError) return error.message;
  return `意外错误：${error?.message ?? error}`;
}
