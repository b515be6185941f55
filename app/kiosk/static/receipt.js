// Receipt verification in the browser: the checks of docs/audit-format.md §6.4 that need no
// entry (header, key, validity period, signature, claims), with WebCrypto Ed25519, against the
// service's JWKS, which is cached in localStorage so that verification works offline.
// The Python reference is app.audit.receipts.verify_receipt.

const ALG = "Ed25519";
const TYP = "timebank-receipt+jwt";
const CLAIMS = ["book", "seq", "tx_id", "kind", "posted_at", "legs", "entry_hash", "leaf_hash",
  "prev_hash", "iat"];
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const MAX_TOKEN = 16384;
const HEX64 = /^[0-9a-f]{64}$/;
const B64URL = /^[A-Za-z0-9_-]+$/;
const TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z$/;
export const JWKS_URL = "/.well-known/jwks.json";
const JWKS_CACHE = "timebank.jwks";
const FETCH_TIMEOUT_MS = 5000;

/** A receipt that cannot be accepted; `message` says why, in Chinese. */
export class ReceiptError extends Error {}

function fail(reason) {
  throw new ReceiptError(reason);
}

// --- encodings -------------------------------------------------------------------------------

const B64URL_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

export function b64urlEncode(bytes) {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Canonical unpadded base64url only (no padding, no stray bits, no other characters). */
export function b64urlDecode(segment, what) {
  if (!B64URL.test(segment) || segment.length % 4 === 1) fail(`${what}不是合法的 base64url`);
  // With the alphabet and the length right, only the last digit's unused bits can differ from
  // the canonical form (an export verifier decodes thousands: no re-encoding to compare).
  const rest = segment.length % 4;
  const last = B64URL_DIGITS.indexOf(segment[segment.length - 1]);
  if (rest && (last & (rest === 2 ? 0x0f : 0x03)) !== 0) fail(`${what}不是规范的 base64url`);
  const padding = "==".slice(0, (4 - rest) % 4);
  const bin = atob(segment.replace(/-/g, "+").replace(/_/g, "/") + padding);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

function utf8(bytes, what) {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return fail(`${what}不是 UTF-8 文本`);
  }
}

// --- strict JSON: no duplicate member, nothing JSON.parse would quietly let through ----------

// One token after optional whitespace: [1] punctuation, [2] a string, [3] a number, [4] a literal.
const TOKEN = new RegExp([
  String.raw`[ \t\n\r]*(?:([{}[\]:,])`,
  String.raw`("(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*")`,
  String.raw`(-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)`,
  String.raw`(true|false|null))`,
].join("|"), "y");

/** `number(literal)` reads each number (JSON.parse by default): the console's export verifier
 * keeps `1.0` apart from `1`, which the ledger's integer fields tell apart. */
export function strictJson(text, what, { number = JSON.parse } = {}) {
  // An explicit stack of the open arrays and objects, not recursion: any depth a token can
  // hold is read (or refused for what it is) without exhausting the call stack.
  let pos = 0;
  const bad = (why) => fail(`${what}不是合法的 JSON：${why}`);
  const next = () => {
    TOKEN.lastIndex = pos;
    const m = TOKEN.exec(text);
    if (!m) bad(`第 ${pos} 个字符处无法解析`);
    pos = TOKEN.lastIndex;
    return m;
  };
  const scalar = (m) => {
    if (m[1] !== undefined) bad(`意外的 ${m[1]}`);
    const v = m[3] === undefined ? JSON.parse(m[0]) : number(m[3]);
    if (typeof v === "string" && !v.isWellFormed()) bad("字符串含有不成对的代理字符");
    return v;
  };
  const memberName = (t, out) => {
    if (t[2] === undefined) bad("成员名必须是字符串");
    const name = scalar(t);
    if (Object.hasOwn(out, name)) bad(`成员 ${name} 重复`);
    if (next()[1] !== ":") bad("缺少冒号");
    return name;
  };
  const stack = []; // {out, name?}: an array (no name) or an object and its member being read
  let t = next();
  for (;;) {
    let value;
    if (t[1] === "[" || t[1] === "{") {
      const isArray = t[1] === "[";
      const out = isArray ? [] : {};
      t = next();
      if (t[1] === (isArray ? "]" : "}")) {
        value = out;
      } else {
        stack.push(isArray ? { out } : { out, name: memberName(t, out) });
        if (!isArray) t = next();
        continue;
      }
    } else {
      value = scalar(t);
    }
    // `value` is complete: add it to the containers it completes.
    for (;;) {
      if (stack.length === 0) {
        if (!/^[ \t\n\r]*$/.test(text.slice(pos))) bad("末尾有多余内容");
        return value;
      }
      const top = stack[stack.length - 1];
      const isArray = top.name === undefined;
      if (isArray) {
        top.out.push(value);
      } else {
        Object.defineProperty(top.out, top.name, {
          value, enumerable: true, writable: true, configurable: true,
        });
      }
      t = next();
      if (t[1] === ",") {
        t = next();
        if (!isArray) {
          top.name = memberName(t, top.out);
          t = next();
        }
        break;
      }
      if (t[1] !== (isArray ? "]" : "}")) bad(isArray ? "数组中缺少逗号" : "对象中缺少逗号");
      stack.pop();
      value = top.out;
    }
  }
}

/** RFC 8785 (JCS): members sorted by UTF-16 code units, ECMAScript number and string forms;
 * written with an explicit stack, at any depth. A boxed Number (what a `number` reader of
 * strictJson may return) is written as its value. */
export function canonicalJson(v) {
  const out = [];
  const stack = [{ value: v }];
  while (stack.length) {
    const item = stack.pop();
    if (item.text !== undefined) {
      out.push(item.text);
    } else if (Array.isArray(item.value)) {
      const a = item.value;
      out.push("[");
      stack.push({ text: "]" });
      for (let i = a.length - 1; i >= 0; i--) {
        stack.push({ value: a[i] });
        if (i) stack.push({ text: "," });
      }
    } else if (item.value instanceof Number) {
      out.push(JSON.stringify(item.value.valueOf()));
    } else if (item.value !== null && typeof item.value === "object") {
      const o = item.value;
      const names = Object.keys(o).sort();
      out.push("{");
      stack.push({ text: "}" });
      for (let i = names.length - 1; i >= 0; i--) {
        stack.push({ value: o[names[i]] });
        stack.push({ text: `${i ? "," : ""}${JSON.stringify(names[i])}:` });
      }
    } else {
      out.push(JSON.stringify(item.value));
    }
  }
  return out.join("");
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isInt = (v, low) => Number.isSafeInteger(v) && v >= low && v <= MAX_SAFE;
const sameMembers = (obj, names) => {
  const keys = Object.keys(obj);
  return keys.length === names.length && names.every((n) => Object.hasOwn(obj, n));
};

// --- keys ------------------------------------------------------------------------------------

/** `YYYY-MM-DDTHH:MM:SSZ` (and only it) in seconds since 1970, or a failure. */
function parseTime(text, what) {
  const m = typeof text === "string" ? TIME.exec(text) : null;
  if (!m) fail(`密钥的 ${what} 不是 RFC 3339 整秒 UTC 时间`);
  const [y, mo, d, h, mi, s] = m.slice(1).map(Number);
  const date = new Date(0);
  date.setUTCFullYear(y, mo - 1, d);
  date.setUTCHours(h, mi, s, 0);
  const ok = y >= 1 && date.getUTCFullYear() === y && date.getUTCMonth() === mo - 1
    && date.getUTCDate() === d && date.getUTCHours() === h && date.getUTCMinutes() === mi
    && date.getUTCSeconds() === s;
  if (!ok) fail(`密钥的 ${what} 不是有效的时间：${text}`);
  return date.getTime() / 1000;
}

async function sha256(text) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

/** The one JWK named `kid`, checked as §7 says: an Ed25519 OKP public key whose RFC 7638
 * thumbprint is its kid, with a well-formed validity period. */
export async function findKey(jwks, kid) {
  if (!isObject(jwks) || !Array.isArray(jwks.keys)) fail("密钥集（JWKS）没有 keys 数组");
  const found = jwks.keys.filter((k) => isObject(k) && k.kid === kid);
  if (found.length !== 1) fail(`密钥集中没有唯一的密钥 ${kid}`);
  const jwk = found[0];
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519") fail(`密钥 ${kid} 不是 Ed25519 OKP 密钥`);
  if (Object.hasOwn(jwk, "d")) fail(`密钥 ${kid} 含有私钥，不可信`);
  if (typeof jwk.x !== "string" || !/^[A-Za-z0-9_-]{43}$/.test(jwk.x)) {
    fail(`密钥 ${kid} 的 x 不是 43 个 base64url 字符`);
  }
  b64urlDecode(jwk.x, "密钥的 x ");
  const thumbprint = b64urlEncode(await sha256(`{"crv":"Ed25519","kty":"OKP","x":"${jwk.x}"}`));
  if (thumbprint !== kid) fail("密钥的 kid 不是其 RFC 7638 指纹");
  const start = jwk.valid_from === undefined ? null : parseTime(jwk.valid_from, "valid_from");
  const end = jwk.valid_until === undefined ? null : parseTime(jwk.valid_until, "valid_until");
  let key;
  try {
    key = await crypto.subtle.importKey("jwk", { kty: "OKP", crv: "Ed25519", x: jwk.x },
      { name: "Ed25519" }, false, ["verify"]);
  } catch (e) {
    fail(`密钥 ${kid} 无法使用：${e.message}`);
  }
  return { key, start, end };
}

// --- the receipt -----------------------------------------------------------------------------

function checkClaims(c) {
  if (!sameMembers(c, CLAIMS)) fail(`声明必须恰好是 ${CLAIMS.join(", ")}`);
  for (const name of ["book", "tx_id", "kind", "posted_at"]) {
    if (typeof c[name] !== "string") fail(`${name} 必须是字符串`);
  }
  if (!isInt(c.seq, 1) || !isInt(c.iat, 0)) fail("seq 和 iat 必须是整数（seq ≥ 1，iat ≥ 0）");
  for (const name of ["entry_hash", "leaf_hash", "prev_hash"]) {
    if (typeof c[name] !== "string" || !HEX64.test(c[name])) fail(`${name} 必须是 64 位小写十六进制`);
  }
  if (!Array.isArray(c.legs)) fail("legs 必须是数组");
  for (const leg of c.legs) {
    const ok = isObject(leg) && sameMembers(leg, ["account_id", "asset", "amount"])
      && typeof leg.account_id === "string" && typeof leg.asset === "string"
      && isInt(leg.amount, -MAX_SAFE);
    if (!ok) fail("每条分录必须是 {account_id, asset, amount}");
  }
}

/**
 * Verify a receipt token with a JWK Set. Resolves to `{claims, kid}`; rejects with a
 * ReceiptError whose message is the reason, in the order of app.audit.receipts. `keys`: a Map
 * the caller keeps for one JWK Set, so that many receipts check and import each key once.
 */
export async function verifyReceipt(token, jwks, { keys = null } = {}) {
  if (!crypto?.subtle) fail("此浏览器环境不能验证签名（需要 HTTPS 或本机地址）");
  if (typeof token !== "string" || token.length > MAX_TOKEN) fail("凭条为空或过长");
  const parts = token.split(".");
  if (parts.length !== 3) fail("不是 JWS 紧凑格式（应有两个点）");
  const [headerB64, payloadB64, signatureB64] = parts;
  const header = strictJson(utf8(b64urlDecode(headerB64, "头部"), "头部"), "头部");
  if (!isObject(header) || !sameMembers(header, ["alg", "kid", "typ"])) {
    fail("头部必须恰好是 alg、kid、typ");
  }
  if (header.alg !== ALG) fail(`算法必须是 ${ALG}，而不是 ${JSON.stringify(header.alg)}`);
  if (header.typ !== TYP || typeof header.kid !== "string") fail(`typ 必须是 ${TYP}，kid 必须是字符串`);
  const signature = b64urlDecode(signatureB64, "签名");
  if (keys && !keys.has(header.kid)) keys.set(header.kid, findKey(jwks, header.kid));
  const { key, start, end } = await (keys ? keys.get(header.kid) : findKey(jwks, header.kid));
  const signed = new TextEncoder().encode(`${headerB64}.${payloadB64}`);
  const good = signature.length === 64
    && await crypto.subtle.verify({ name: "Ed25519" }, key, signature, signed);
  if (!good) fail("签名不正确（凭条被改动或不是本服务签发）");
  const payload = utf8(b64urlDecode(payloadB64, "载荷"), "载荷");
  const claims = strictJson(payload, "载荷");
  if (!isObject(claims)) fail("载荷必须是 JSON 对象");
  checkClaims(claims);
  if (canonicalJson(claims) !== payload) fail("载荷不是 RFC 8785 规范形式");
  if ((start !== null && claims.iat < start) || (end !== null && claims.iat >= end)) {
    fail("签发时间 iat 不在签名密钥的有效期内");
  }
  return { claims, kid: header.kid };
}

// --- the key set, online or from the cache ---------------------------------------------------

function readCache() {
  try {
    const cached = JSON.parse(localStorage.getItem(JWKS_CACHE) ?? "null");
    return isObject(cached) && isObject(cached.jwks) ? cached : null;
  } catch {
    return null;
  }
}

/**
 * The service's JWK Set: fetched now (and cached) when the network allows, else the copy cached
 * when it was last fetched. Resolves to `{jwks, source: "network"|"cache", fetchedAt, error}`.
 */
export async function loadJwks() {
  let error;
  try {
    const res = await fetch(JWKS_URL, {
      cache: "no-store", signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const jwks = await res.json();
    if (!isObject(jwks) || !Array.isArray(jwks.keys)) throw new Error("不是 JWK Set");
    const fetchedAt = new Date().toISOString();
    try {
      localStorage.setItem(JWKS_CACHE, JSON.stringify({ jwks, fetchedAt }));
    } catch { /* storage full or disabled: verification still works online */ }
    return { jwks, source: "network", fetchedAt, error: null };
  } catch (e) {
    error = e instanceof TypeError ? "网络不可用" : (e.name === "TimeoutError" ? "连接超时" : e.message);
  }
  const cached = readCache();
  if (!cached) throw new ReceiptError(`无法获取验证密钥（${error}），本机也没有缓存的密钥`);
  return { jwks: cached.jwks, source: "cache", fetchedAt: cached.fetchedAt, error };
}

/**
 * Load the keys and verify; never rejects. Resolves to
 * `{valid, reason, claims, kid, keys: {source, fetchedAt, error} | null}`.
 */
export async function checkReceipt(token) {
  let keys = null;
  try {
    keys = await loadJwks();
    const { claims, kid } = await verifyReceipt(token.trim(), keys.jwks);
    return { valid: true, reason: null, claims, kid, keys };
  } catch (e) {
    const reason = e instanceof ReceiptError ? e.message : `验证出错：${e.message}`;
    return { valid: false, reason, claims: null, kid: null, keys };
  }
}
