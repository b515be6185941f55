// A volunteer service proof (docs/service-proof.md), checked in the browser: §5 steps 1–6, and
// the totals recomputed from the records (§4). Step 7, comparing with the paper, is a person's.

import { ReceiptError, b64urlDecode, canonicalJson, findKey, strictJson } from "/kiosk/receipt.js";
import { exactly, fail, isInt, parse, refuse, verdict } from "./verdicts.js";

const encoder = new TextEncoder();
const LAST_SECOND = 253402300799; // 9999-12-31T23:59:59Z: the last instant `issued_at` can write
const PROOF_TYP = "timebank-service-proof+jws";
const PROOF = ["typ", "version", "proof_id", "number", "issued_at", "iat", "book", "volunteer",
  "issuer", "person_in_charge", "handler", "period", "records", "totals", "verify_url"];

/** docs/service-proof.md §5 steps 1–3: the header, the one key, the signature. */
async function openProofToken(token, jwks) {
  const parts = typeof token === "string" ? token.split(".") : [];
  if (parts.length !== 3) throw new ReceiptError("不是 JWS 紧凑格式（应有两个点）");
  const decode = (part, what) => {
    const bytes = b64urlDecode(part, what);
    try {
      return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
    } catch {
      throw new ReceiptError(`${what}不是 UTF-8 文本`);
    }
  };
  const header = strictJson(decode(parts[0], "头部"), "头部");
  if (!exactly(header, ["alg", "kid", "typ"]) || header.alg !== "Ed25519"
    || header.typ !== PROOF_TYP || typeof header.kid !== "string") {
    throw new ReceiptError(`头部必须恰好是 alg=Ed25519、kid、typ=${PROOF_TYP}`);
  }
  const signature = b64urlDecode(parts[2], "签名");
  const key = await findKey(jwks, header.kid);
  const good = signature.length === 64 && await crypto.subtle.verify({ name: "Ed25519" },
    key.key, signature, encoder.encode(`${parts[0]}.${parts[1]}`));
  if (!good) throw new ReceiptError("签名不正确（证明被改动或不是本服务签发）");
  return { kid: header.kid, key, payload: decode(parts[1], "载荷") };
}

/** `minutes / 60` with two places, rounded half up (§4). */
function hours(minutes) {
  const hundredths = Math.floor((minutes * 100 + 30) / 60);
  return `${Math.floor(hundredths / 100)}.${String(hundredths % 100).padStart(2, "0")}`;
}

const isoSeconds = (iat) => new Date(iat * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");

/** Resolves to `{ok, document, kid, failure, checks}` (verdicts.js); `text` is the token or the
 * JSON answer that holds it (§2, §7), `jwks` a JWK Set the caller trusts. */
export function verifyServiceProof(text, jwks) {
  return verdict(async (passed) => {
    let token = typeof text === "string" ? text.trim() : "";
    if (token.startsWith("{")) { // the JSON answer of §2 or §7
      token = refuse("proof.document", null, "not the JSON of a proof",
        () => parse(token, "证明")).token;
    }
    const { kid, key, payload } = await refuse("proof.signature", null,
      "the proof's signature does not verify", () => openProofToken(token, jwks));
    passed("proof.signature");
    const doc = refuse("proof.document", null, "the proof's document is not strict JSON",
      () => parse(payload, "证明内容"));
    const ok = exactly(doc, PROOF) && canonicalJson(doc) === payload
      && doc.typ === "timebank.service-proof" && doc.version === 1
      && isInt(doc.iat, 0) && doc.iat <= LAST_SECOND && doc.issued_at === isoSeconds(doc.iat)
      && (key.start === null || key.start <= doc.iat) && (key.end === null || doc.iat < key.end);
    if (!ok) {
      fail("proof.document", null, "证明内容不合规（成员、规范形式、typ、version、iat 或密钥有效期）",
        "the document is not a valid proof (members, JCS form, typ, version, iat, key period)");
    }
    passed("proof.document");
    const records = Array.isArray(doc.records) ? doc.records : [];
    const sum = (kind) => records.filter((r) => kind === null || r?.evidence === kind)
      .reduce((total, r) => total + (isInt(r?.minutes, 0) ? r.minutes : NaN), 0);
    const minutes = sum(null);
    const totals = { records: records.length, minutes, checkin_minutes: sum("checkin"),
      manual_minutes: sum("manual"), hours: Number.isSafeInteger(minutes) ? hours(minutes) : "" };
    if (!Array.isArray(doc.records) || canonicalJson(doc.totals) !== canonicalJson(totals)) {
      fail("proof.totals", null, "合计与服务记录不符", "the totals do not add up from the records");
    }
    passed("proof.totals");
    return { document: doc, kid };
  });
}
