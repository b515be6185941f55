// What the console's verifiers (verify.js, service-proof.js) report: a verdict with the first
// failure, its check code and its reason in Chinese and English, and the checks passed before
// it; and the strict JSON they read.

import { ReceiptError, strictJson } from "/kiosk/receipt.js";

/** Every check code with its names, [Chinese, English]. The codes are stable. */
export const CHECKS = Object.freeze({
  "file": ["文件格式", "file format"],
  "checkpoint.line": ["检查点行", "checkpoint line"],
  "keys": ["验证密钥", "verification keys"],
  "checkpoint.book": ["检查点所属账簿", "checkpoint's book"],
  "checkpoint.signature": ["检查点签名", "checkpoint signature"],
  "checkpoint.size": ["检查点大小", "checkpoint size"],
  "prefix": ["前缀子树", "prefix subtrees"],
  "line.json": ["条目行 JSON", "entry line JSON"],
  "line.members": ["条目行成员", "entry line members"],
  "entry.shape": ["条目格式", "entry shape"],
  "entry.seq": ["条目序号连续", "gapless seq"],
  "entry.book": ["条目所属账簿", "entry's book"],
  "entry.hash": ["条目哈希", "entry hash"],
  "receipt.signature": ["凭条签名", "receipt signature"],
  "receipt.claims": ["凭条与条目一致", "receipt matches entry"],
  "chain.prev_hash": ["哈希链", "hash chain"],
  "entries.missing": ["条目完整", "entries complete"],
  "merkle.consistency": ["Merkle 一致性证明", "Merkle consistency proof"],
  "checkpoint.trusted": ["与可信检查点一致", "trusted checkpoint"],
  "witness.policy": ["见证策略", "witness policy"],
  "witness.cosignature": ["见证人联署签名", "witness cosignatures"],
  "witness.quorum": ["见证法定人数", "witness quorum"],
  "proof.inclusion": ["包含证明", "inclusion proof"],
  "proof.signature": ["证明签名", "proof signature"],
  "proof.document": ["证明内容", "proof document"],
  "proof.totals": ["证明合计", "proof totals"],
});

/** The first thing wrong: which check, the entry to blame (`seq`), why in both languages. */
export class Failure extends Error {
  constructor(check, seq, zh, en) {
    super(en);
    Object.assign(this, { check, seq, zh, en });
  }
}

export const fail = (check, seq, zh, en) => {
  throw new Failure(check, seq, zh, en);
};

/** `run()`, with receipt.js's refusals (a ReceiptError, its reason in Chinese) as failures of
 * `check`; any other error is a programming error and propagates. */
export function refuse(check, seq, en, run) {
  const convert = (e) => {
    if (e instanceof ReceiptError) fail(check, seq, e.message, en);
    throw e;
  };
  try {
    const out = run();
    return out instanceof Promise ? out.catch(convert) : out;
  } catch (e) {
    return convert(e);
  }
}

/** Resolves to `{...out, ...what run resolves to, ok, failure, checks}`: `run(passed, out)`
 * names the checks it passed and may fill `out` as it goes; a Failure it throws is the verdict's
 * `failure` (`{seq, check, message_zh, message_en}`), anything else propagates. */
export async function verdict(run, out = {}) {
  Object.assign(out, { ok: false, failure: null, checks: [] });
  const passed = (...names) => out.checks.push(...names.map((check) => ({ check, ok: true })));
  try {
    Object.assign(out, await run(passed, out), { ok: true });
  } catch (e) {
    if (!(e instanceof Failure)) throw e;
    out.failure = { seq: e.seq, check: e.check, message_zh: e.zh, message_en: e.en };
    out.checks.push({ check: e.check, ok: false });
  }
  return out;
}

export const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
export const isInt = (v, low) => Number.isSafeInteger(v) && v >= low;
export const matches = (v, pattern) => typeof v === "string" && pattern.test(v);
export const exactly = (obj, names) => isObject(obj) && Object.keys(obj).length === names.length
  && names.every((n) => Object.hasOwn(obj, n));

/** JSON numbers as the ledger reads them: an integer literal must be exact (±(2^53−1)); a
 * literal with a fraction or exponent that happens to be whole is kept boxed, so that no field
 * typed integer takes it (docs/ledger-format.md §2), while JCS still writes its value. */
function ledgerNumber(literal) {
  const value = Number(literal);
  if (!Number.isFinite(value)) throw new ReceiptError(`数值超出范围：${literal}`);
  if (/^-?\d+$/.test(literal)) {
    if (!Number.isSafeInteger(value)) throw new ReceiptError(`整数超出 ±(2^53−1)：${literal}`);
    return value;
  }
  return Number.isInteger(value) ? new Number(value) : value;
}

/** Strict JSON (receipt.js's: no duplicate member, no NaN) with the ledger's numbers. */
export const parse = (text, what) => strictJson(text, what, { number: ledgerNumber });
