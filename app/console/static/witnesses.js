// Witness policies in the browser, written from the C2SP texts: tlog-policy (the policy file:
// logs, witnesses, groups, the quorum) and tlog-cosignature (cosignature/v1 with Ed25519), with
// our reading of them in docs/witness.md. WebCrypto only. verify.js applies a policy to the
// checkpoint of an export or of a tlog-proof bundle; the kiosk page to a receipt's bundle.
//
// parseWitnessPolicy(text) → Promise<policy>: a Failure (check "witness.policy", the line to
//   blame in both languages) for a file the text does not allow.
// checkWitnesses(policy, text, lines) → Promise<{met, log_signed, quorum, rule,
//   cosigned: [{witness, key_name, timestamp}]}>: `text` a checkpoint note's text (through its
//   final newline), `lines` its signature lines; a Failure ("witness.cosignature") when a line
//   of a key the policy lists does not verify. `log_signed`: no `log` line, or one of them
//   signed. requireQuorum(found) fails ("witness.quorum") unless `met`.

import { fail } from "./verdicts.js";

const encoder = new TextEncoder();
const ALG_NOTE = 0x01; // a log's key (signed-note Ed25519)
const ALG_COSIGNATURE = 0x04; // a witness's key (cosignature/v1)
const MAX_TIMESTAMP = 2n ** 63n - 1n;
const MAX_POLICY = 64 * 1024; // characters: far beyond 32 logs, witnesses and groups
// tlog-policy's character set: tab, newline, 0x20–0x7E and anything past ASCII (as octets).
const BAD_CHARS = /[\u0000-\u0008\u000b-\u001f\u007f]/;
const WORDS = /[ \t]+/;

/** SHA-256 of the parts, concatenated (verify.js uses it too). */
export async function sha256(...parts) {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", all));
}

/** Canonical standard base64 with padding, or null. */
export function b64Decode(text) {
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) return null;
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  return btoa(String.fromCharCode(...bytes)) === text ? bytes : null;
}

const validKeyName = (name) => name.length > 0 && !/[\s+]/u.test(name);

/** The key id of `name` and a 32-byte Ed25519 key of signature type `alg` (signed-note). */
async function keyId(name, alg, raw) {
  const digest = await sha256(encoder.encode(name), Uint8Array.of(0x0a, alg), raw);
  return new DataView(digest.buffer).getUint32(0);
}

/** A vkey `<name>+<8 hex>+<base64(alg || key)>` of type `alg`, or why it is not one. */
async function parseVkey(vkey, alg) {
  const plus = vkey.indexOf("+");
  const second = vkey.indexOf("+", plus + 1);
  if (plus < 0 || second < 0) return { why: ["不是 vkey 格式", "not a vkey"] };
  const [name, hex8, b64] = [vkey.slice(0, plus), vkey.slice(plus + 1, second),
    vkey.slice(second + 1)];
  if (!validKeyName(name)) return { why: ["密钥名不合法", "the key name is not valid"] };
  if (!/^[0-9a-fA-F]{8}$/.test(hex8)) {
    return { why: ["密钥 ID 不是 8 位十六进制", "the key id is not 8 hex digits"] };
  }
  const material = b64Decode(b64);
  if (material?.length !== 33 || material[0] !== alg) {
    const kind = alg === ALG_COSIGNATURE ? "cosignature/v1 Ed25519 (0x04)" : "Ed25519 (0x01)";
    return { why: [`不是 ${kind} 类型的公钥`, `not a key of type ${kind}`] };
  }
  const raw = material.slice(1);
  const id = await keyId(name, alg, raw);
  if (id !== parseInt(hex8, 16)) {
    return { why: ["密钥 ID 与公钥不符", "the key id does not match the key"] };
  }
  const key = await crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"])
    .catch(() => null);
  if (!key) return { why: ["公钥不是有效的 Ed25519 公钥", "not a valid Ed25519 public key"] };
  return { name, id, raw, key, vkey };
}

/** The policy's rule as words: `2 of A, B, C`, nested groups in parentheses. */
function describe(policy, name) {
  if (name === "none") return "none";
  const group = policy.groups.get(name);
  if (!group) return name;
  const k = group.k === group.members.length ? "all" : group.k === 1 ? "any" : `${group.k}`;
  return `${name} = ${k} of (${group.members.map((m) => describe(policy, m)).join(", ")})`;
}

export async function parseWitnessPolicy(text) {
  const bad = (n, zh, en) => fail("witness.policy", null, `见证策略第 ${n} 行：${zh}`,
    `witness policy line ${n}: ${en}`);
  if (typeof text !== "string" || text.length > MAX_POLICY) {
    fail("witness.policy", null, "见证策略不是文本或过长", "the witness policy is not text or too long");
  }
  const policy = { logs: [], witnesses: new Map(), groups: new Map(), quorum: null };
  const members = new Set(); // every name listed in a group (at most once in the file)
  const defined = (name) => policy.witnesses.has(name) || policy.groups.has(name);
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop(); // the last line's newline
  for (const [i, line] of lines.entries()) {
    const n = i + 1;
    if (BAD_CHARS.test(line)) bad(n, "含有不允许的控制字符", "a control character other than tab");
    const words = line.replace(/^[ \t]+|[ \t]+$/g, "").split(WORDS);
    if (words[0] === "" || words[0].startsWith("#")) continue;
    const [keyword, ...args] = words;
    if (keyword === "log") {
      if (args.length < 1 || args.length > 2) {
        bad(n, "应为 log <vkey> [<url>]", "expected log <vkey> [<url>]");
      }
      const log = await parseVkey(args[0], ALG_NOTE);
      if (log.why) bad(n, `日志公钥${log.why[0]}`, `the log key: ${log.why[1]}`);
      if (policy.logs.some((l) => sameBytes(l.raw, log.raw))) bad(n, "日志重复", "a duplicate log key");
      policy.logs.push({ ...log, url: args[1] ?? null });
    } else if (keyword === "witness") {
      if (args.length < 2 || args.length > 3) {
        bad(n, "应为 witness <名称> <vkey> [<url>]", "expected witness <name> <vkey> [<url>]");
      }
      const [name, vkey, url] = args;
      if (name === "none" || defined(name)) bad(n, `名称 ${name} 已有定义`, `the name ${name} is taken`);
      const witness = await parseVkey(vkey, ALG_COSIGNATURE);
      if (witness.why) bad(n, `见证人公钥${witness.why[0]}`, `the witness key: ${witness.why[1]}`);
      if ([...policy.witnesses.values()].some((w) => sameBytes(w.raw, witness.raw))) {
        bad(n, "见证人公钥重复", "a duplicate witness key");
      }
      policy.witnesses.set(name, { witness: name, keyName: witness.name, id: witness.id,
        raw: witness.raw, key: witness.key, vkey, url: url ?? null });
    } else if (keyword === "group") {
      const [name, threshold, ...names] = args;
      if (names.length === 0) {
        bad(n, "应为 group <名称> all|any|<k> <成员>...",
          "expected group <name> all|any|<k> <member>...");
      }
      if (name === "none" || defined(name)) bad(n, `名称 ${name} 已有定义`, `the name ${name} is taken`);
      for (const member of names) {
        if (member === "none" || !defined(member)) {
          bad(n, `成员 ${member} 未在前面定义`, `the member ${member} is not defined on an earlier line`);
        }
        if (members.has(member)) {
          bad(n, `成员 ${member} 已列过一次`, `the member ${member} is listed twice`);
        }
        members.add(member);
      }
      const k = threshold === "all" ? names.length : threshold === "any" ? 1
        : /^[0-9]{1,9}$/.test(threshold) ? Number(threshold) : NaN;
      if (!(k >= 1 && k <= names.length)) {
        bad(n, `门限 ${threshold} 应为 all、any 或 1 到 ${names.length} 的十进制数`,
          `the threshold ${threshold} must be all, any or decimal 1 to ${names.length}`);
      }
      policy.groups.set(name, { k, members: names });
    } else if (keyword === "quorum") {
      if (args.length !== 1) bad(n, "应为 quorum <名称>|none", "expected quorum <name>|none");
      if (policy.quorum !== null) bad(n, "quorum 只能有一行", "a second quorum line");
      if (args[0] !== "none" && !defined(args[0])) {
        bad(n, `${args[0]} 未在前面定义`, `${args[0]} is not defined on an earlier line`);
      }
      policy.quorum = args[0];
    } else {
      bad(n, `未知的关键字 ${keyword}`, `unknown keyword ${keyword}`);
    }
  }
  if (policy.quorum === null) {
    fail("witness.policy", null, "见证策略缺少 quorum 行", "the witness policy has no quorum line");
  }
  policy.rule = describe(policy, policy.quorum);
  return policy;
}

function sameBytes(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Whether `name` (a witness, a group, or none) has witnessed, given who cosigned. */
function witnessed(policy, name, cosigned) {
  if (name === "none") return true;
  const group = policy.groups.get(name);
  if (!group) return cosigned.has(name);
  return group.members.filter((m) => witnessed(policy, m, cosigned)).length >= group.k;
}

/** A cosignature/v1 line's signature (key id stripped) over `text`; its timestamp or null. */
async function cosignatureTime(witness, text, signature) {
  if (signature.length !== 72) return null;
  const time = new DataView(signature.buffer, signature.byteOffset).getBigUint64(0);
  if (time > MAX_TIMESTAMP) return null;
  const message = encoder.encode(`cosignature/v1\ntime ${time}\n${text}`);
  const good = await crypto.subtle.verify({ name: "Ed25519" }, witness.key, signature.slice(8),
    message);
  return good ? time : null;
}

/** Each signature line `— <name> <base64>` as {name, id, signature}; openNote has checked the
 * lines' form. */
function parsedLines(lines) {
  return lines.map((line) => {
    const m = /^\u2014 ([^\s+]+) (\S+)$/u.exec(line);
    const blob = m ? b64Decode(m[2]) : null;
    if (!blob || blob.length < 5) return null;
    return { name: m[1], id: new DataView(blob.buffer).getUint32(0), signature: blob.slice(4) };
  }).filter(Boolean);
}

export async function checkWitnesses(policy, text, lines) {
  const sigs = parsedLines(lines);
  const seen = new Set();
  const cosigned = new Map(); // witness → timestamp
  for (const { name, id, signature } of sigs) {
    const witness = [...policy.witnesses.values()].find((w) => w.keyName === name && w.id === id);
    if (!witness) continue; // unknown keys ignored
    // Every line of a known key is checked, a second one too (signed-note: MUST verify);
    // the first reports the time.
    const time = await cosignatureTime(witness, text, signature);
    if (time === null) {
      fail("witness.cosignature", null, `见证人 ${witness.witness}（${name}）的联署签名不正确`,
        `the cosignature of witness ${witness.witness} (${name}) does not verify`);
    }
    if (seen.has(`${name}+${id}`)) continue;
    seen.add(`${name}+${id}`);
    cosigned.set(witness.witness, time);
  }
  let logSigned = policy.logs.length === 0; // `log` lines are optional (docs/witness.md)
  if (!logSigned) {
    const origin = text.split("\n", 1)[0];
    for (const { name, id, signature } of sigs) {
      const log = policy.logs.find((l) => l.name === name && l.name === origin && l.id === id);
      if (!log) continue;
      const good = signature.length === 64 && await crypto.subtle.verify({ name: "Ed25519" },
        log.key, signature, encoder.encode(text));
      if (!good) {
        fail("witness.cosignature", null, "见证策略所列日志公钥的签名不正确",
          "a signature of a log key the witness policy lists does not verify");
      }
      logSigned = true;
    }
  }
  const list = [...cosigned].map(([witness, time]) => ({
    witness, key_name: policy.witnesses.get(witness).keyName,
    timestamp: time <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(time) : String(time),
  }));
  const quorum = witnessed(policy, policy.quorum, new Set(cosigned.keys()));
  return { met: logSigned && quorum, log_signed: logSigned, quorum: policy.quorum,
    rule: policy.rule, cosigned: list };
}

/** Fails ("witness.quorum") unless `found` (of checkWitnesses) meets the policy. */
export function requireQuorum(found) {
  if (found.met) return;
  if (!found.log_signed) {
    fail("witness.quorum", null, "检查点没有见证策略所列日志的签名",
      "the checkpoint is not signed by a log the witness policy lists");
  }
  const names = found.cosigned.map((c) => c.witness);
  fail("witness.quorum", null,
    `检查点未达到见证法定人数：已联署的见证人为 ${names.length ? names.join("、") : "无"}；要求 ${
      found.rule}`,
    `the checkpoint does not meet the witness policy: cosigned by ${
      names.length ? names.join(", ") : "none"}; the quorum is ${found.rule}`);
}
