// The console's verifier of what the service hands out, run in the browser and written from the
// documents alone: docs/audit-format.md §1–§4, §6–§7, §8.2 and §8.5 ("Verifying an export"),
// docs/ledger-format.md §2–§4, and (service-proof.js) docs/service-proof.md §3–§5. Plain ES
// modules, no build step, no dependency but the kiosk's receipt check (/kiosk/receipt.js) and
// the witness policies of witnesses.js; SHA-256 and Ed25519 are WebCrypto's. The ledger rules
// of docs/ledger-format.md §9 steps 7–10 (balances, holds) are not checked here.
//
// verifyExport(text, {jwks, checkpoint, witnessPolicy, onProgress}) → Promise<{ok, book,
//     fromSeq, toSeq, entries, receipts, treeSize, root, head,
//     checkpoint: {origin, treeSize, root}, trusted_keys, kids, witnesses,
//     failure: null | {seq, check, message_zh, message_en}, checks: [{check, ok}]}>
//   `text`: the export (GET /v1/books/{code}/export), a string or its bytes. `jwks`: a JWK Set
//   the caller trusts; without it the file's own `jwks` is used and `trusted_keys` is false:
//   the file is then only shown to be self-consistent. `checkpoint`: a checkpoint of the book
//   kept from elsewhere, its signed note or its JSON (§8.5 step 6). `onProgress(done, total)`:
//   called after each chunk of entries.
//   `treeSize` and `checkpoint.root` are the signed checkpoint's; `root` is the root of the
//   first `toSeq` leaves, computed from the file; `head` the last entry's entry_hash;
//   `receipts` how many entry lines carried a receipt, each checked: an export made with
//   `receipts=false` has none (every line or none: §8.5), and the checks passed then leave
//   out receipt.signature and receipt.claims.
//   A bad file is `ok: false` with its FIRST failure and the `seq` §8.5 blames (null when no
//   entry is to blame); `checks` holds each check passed over the whole file, then the one
//   that failed. It throws only for a programming error or a browser without WebCrypto.
//   `witnessPolicy` (the text of a C2SP tlog-policy, docs/witness.md): the signed checkpoint
//   must also meet it, checked before the entries (witnesses.js); `witnesses` then names
//   the witnesses that cosigned, with their timestamps ({met, quorum, rule, cosigned}).
// verifyReceiptToken(token, jwks, {entry, proof, witnessPolicy}) → Promise<{ok, claims, kid,
//     checkpoint, witnesses, failure, checks}>: a receipt (§6.4); with `entry` (an entry
//   object) also against it; with `proof` (a tlog-proof bundle, §5) also its inclusion in that
//   bundle's checkpoint, and with `witnessPolicy` that checkpoint's cosignatures.
// readWitnessPolicy(text) → Promise<{ok, witnesses, logs, quorum, rule, failure, checks}>.
// verifyServiceProof(text, jwks) → Promise<{ok, document, kid, failure, checks}>: a service
//   proof (its token, or the JSON answer that holds it): §5 steps 1–6, and its totals (§4).
// CHECKS: every check code with its names, [Chinese, English].

import {
  ReceiptError, b64urlDecode, canonicalJson, findKey, verifyReceipt,
} from "/kiosk/receipt.js";
import {
  Failure, exactly, fail, isInt, isObject, matches, parse, refuse, verdict,
} from "./verdicts.js";
import {
  b64Decode, checkWitnesses, parseWitnessPolicy, requireQuorum, sha256,
} from "./witnesses.js";

export { CHECKS } from "./verdicts.js";
export { verifyServiceProof } from "./service-proof.js";
export { parseWitnessPolicy } from "./witnesses.js";

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const ZERO_HASH = "0".repeat(64);
const HEX64 = /^[0-9a-f]{64}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const BOOK = /^[a-z][a-z0-9_-]{0,31}$/;
const KIND = /^[a-z][a-z0-9_]{0,31}(\.[a-z0-9_]{1,31}){0,3}$/;
const ASSET = /^[A-Z][A-Z0-9_]{0,15}$/;
const TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.\d{6}Z$/;
const ENTRY = ["book", "seq", "tx_id", "kind", "posted_at", "legs", "memo", "meta", "prev_hash"];
const LINE = ["entry", "entry_hash", "receipt"];
const BARE_LINE = ["entry", "entry_hash"]; // exported with receipts=false
const TRAILER = ["checkpoint", "from_seq", "to_seq", "prefix", "consistency", "jwks"];
const CLAIMS = ["book", "seq", "tx_id", "kind", "posted_at", "legs", "entry_hash", "leaf_hash",
  "prev_hash"];
const CHUNK = 512; // entries whose hashes and signatures are started together
const MAX_SIGNATURES = 100; // §4.2

const encoder = new TextEncoder();
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const fromHex = (text) => Uint8Array.from(text.match(/../g) ?? [], (h) => parseInt(h, 16));
const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

// --- the Merkle tree (§1–§3) -----------------------------------------------------------------


const LEAF = Uint8Array.of(0);
const NODE = Uint8Array.of(1);
const nodeHash = (left, right) => sha256(NODE, left, right);
const half = (n) => Math.floor(n / 2);

/** The loop RFC 9162 §2.1.3.2 and §2.1.4.2 share (§2 step 3, §3 step 6): `path` folded into
 * [fr, sr] from `first`; null when the path does not fit the sizes. */
async function walk(fn, sn, first, path) {
  let [fr, sr] = [first, first];
  for (const c of path) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      [fr, sr] = [await nodeHash(c, fr), await nodeHash(c, sr)];
      while (fn % 2 === 0 && fn !== 0) [fn, sn] = [half(fn), half(sn)];
    } else {
      sr = await nodeHash(sr, c);
    }
    [fn, sn] = [half(fn), half(sn)];
  }
  return sn === 0 ? [fr, sr] : null;
}

/** §3: the tree of `size1` leaves with `root1` is a prefix of the tree `size2`, `root2`. */
async function verifyConsistency(size1, size2, proof, root1, root2) {
  if (size1 > size2) return false;
  if (size1 === size2) return proof.length === 0 && same(root1, root2);
  if (size1 === 0) return proof.length === 0;
  if (proof.length === 0 || proof.some((p) => p.length !== 32)) return false;
  let odd = size1;
  while (odd % 2 === 0) odd /= 2;
  const path = odd === 1 ? [root1, ...proof] : proof; // size1 a power of two
  let [fn, sn] = [size1 - 1, size2 - 1];
  while (fn % 2 === 1) [fn, sn] = [half(fn), half(sn)];
  const roots = await walk(fn, sn, path[0], path.slice(1));
  return roots !== null && same(roots[0], root1) && same(roots[1], root2);
}

/** §2: `leaf` is leaf `index` of the tree of `size` leaves with `root`. */
async function verifyInclusion(leaf, index, size, proof, root) {
  if (index >= size || proof.some((p) => p.length !== 32)) return false;
  const roots = await walk(index, size - 1, leaf, proof);
  return roots !== null && same(roots[1], root);
}

/** The complete subtrees `[level, index]` of the tree of `size` leaves, largest first (§1.1). */
function peaks(size) {
  const out = [];
  let start = 0;
  for (let level = Math.floor(Math.log2(size || 1)) + 1; level >= 0; level--) {
    const width = 2 ** level;
    if (Math.floor(size / width) % 2 === 1) {
      out.push([level, start / width]);
      start += width;
    }
  }
  return out;
}

/** §8.5's stack: the tree of the `prefix` subtrees grown leaf by leaf, O(log n) hashes held. */
class CompactTree {
  constructor(size, prefix) {
    this.size = size;
    this.stack = peaks(size).map(([level, index], i) => [level, index, prefix[i]]);
  }

  async push(leaf) {
    let [level, index, hash] = [0, this.size, leaf];
    for (let top = this.stack.at(-1); index % 2 === 1 && top?.[0] === level
      && top[1] === index - 1; top = this.stack.at(-1)) {
      this.stack.pop();
      [level, index, hash] = [level + 1, (index - 1) / 2, await nodeHash(top[2], hash)];
    }
    this.stack.push([level, index, hash]);
    this.size += 1;
  }

  async root() {
    if (this.stack.length === 0) return sha256(new Uint8Array(0));
    let hash = this.stack.at(-1)[2];
    for (let i = this.stack.length - 2; i >= 0; i--) hash = await nodeHash(this.stack[i][2], hash);
    return hash;
  }
}

// --- signed notes and checkpoints (§4, §8.2) -------------------------------------------------

/** The note keys of a JWKS under `name` (§8.2): each key of the set that §7 accepts, with its
 * signed-note key id (§4.2). A key the set describes wrongly is not a trusted key. */
async function noteKeys(jwks, name) {
  const out = [];
  for (const jwk of Array.isArray(jwks?.keys) ? jwks.keys : []) {
    const found = await findKey(jwks, jwk?.kid).catch((e) => {
      if (e instanceof ReceiptError) return null;
      throw e;
    });
    if (!found) continue;
    const digest = await sha256(encoder.encode(name), Uint8Array.of(0x0a, 0x01),
      b64urlDecode(jwk.x, "x"));
    out.push({ id: new DataView(digest.buffer).getUint32(0), key: found.key });
  }
  return out;
}

/** §4.2: the text of `note` and its signature lines, opened with the trusted keys named
 * `name`. */
async function openNote(note, name, jwks) {
  const malformed = (why) => fail("checkpoint.signature", null, `签名文本格式不对：${why}`,
    `the signed note is malformed: ${why}`);
  if (!note.isWellFormed() || /[\u0000-\u0009\u000b-\u001f]/.test(note)) {
    malformed("not UTF-8 text without control characters");
  }
  const split = note.lastIndexOf("\n\n");
  if (split < 0) malformed("no blank line before the signatures");
  const text = note.slice(0, split + 1);
  const block = note.slice(split + 2);
  if (!block.endsWith("\n")) malformed("the signatures do not end in a newline");
  const lines = block.slice(0, -1).split("\n");
  if (lines.length > MAX_SIGNATURES) malformed("too many signatures");
  const trusted = await noteKeys(jwks, name);
  const seen = new Set();
  for (const line of lines) {
    const m = /^\u2014 ([^\s+]+) (\S+)$/u.exec(line);
    const blob = m ? b64Decode(m[2]) : null;
    if (!blob || blob.length < 5) malformed(`bad signature line ${JSON.stringify(line)}`);
    const id = new DataView(blob.buffer).getUint32(0);
    const key = m[1] === name ? trusted.find((k) => k.id === id) : undefined;
    if (!key || seen.has(id)) continue; // unknown keys are ignored; a key counts once
    seen.add(id);
    const signature = blob.slice(4);
    const good = signature.length === 64
      && await crypto.subtle.verify({ name: "Ed25519" }, key.key, signature, encoder.encode(text));
    if (!good) {
      fail("checkpoint.signature", null, "检查点签名不正确",
        "a signature of a trusted key does not verify");
    }
  }
  if (seen.size === 0) {
    fail("checkpoint.signature", null, "检查点没有可信密钥的签名",
      `no trusted key signed the checkpoint (${trusted.length} keys named ${name})`);
  }
  return { text, lines };
}

/** A signed checkpoint of `book` (§4.1, §8.2): {origin, size, root}. */
async function openCheckpoint(note, book, jwks) {
  const origin = note.split("\n", 1)[0];
  if (origin.split("/").pop() !== book) {
    fail("checkpoint.book", null, `检查点的来源 ${origin} 不属于账簿 ${book}`,
      `the checkpoint's origin ${origin} is not of book ${book}`);
  }
  const opened = await openNote(note, origin, jwks);
  const lines = opened.text.slice(0, -1).split("\n");
  const root = b64Decode(lines[2] ?? "");
  const ok = lines.length >= 3 && /^(0|[1-9]\d{0,15})$/.test(lines[1]) && root?.length === 32
    && Number.isSafeInteger(Number(lines[1])) && lines.every((l) => l !== "");
  if (!ok) fail("checkpoint.signature", null, "检查点文本格式不对", "the checkpoint text is malformed");
  return { origin, size: Number(lines[1]), root, text: opened.text, signatures: opened.lines };
}

// --- entries and receipts (docs/ledger-format.md §2, §6.2) -----------------------------------

function validTime(text) {
  const m = typeof text === "string" ? TIMESTAMP.exec(text) : null;
  if (!m) return false;
  const [y, mo, d, h, mi, s] = m.slice(1).map(Number);
  const date = new Date(Date.UTC(2000, mo - 1, d, h, mi, s));
  date.setUTCFullYear(y); // (Date.UTC reads years below 100 as 19xx)
  return date.getUTCFullYear() === y && date.getUTCMonth() === mo - 1 && date.getUTCDate() === d
    && date.getUTCHours() === h && date.getUTCMinutes() === mi && date.getUTCSeconds() === s;
}

/** Why `entry` is not an entry object of §2, or null. */
function entryShape(entry) {
  if (!exactly(entry, ENTRY)) return "not exactly the nine members";
  const bad = [
    ["book", matches(entry.book, BOOK)],
    ["seq", isInt(entry.seq, 1)],
    ["tx_id", matches(entry.tx_id, UUID)],
    ["kind", matches(entry.kind, KIND)],
    ["posted_at", validTime(entry.posted_at)],
    ["legs", Array.isArray(entry.legs)],
    ["memo", typeof entry.memo === "string"],
    ["meta", isObject(entry.meta)],
    ["prev_hash", matches(entry.prev_hash, HEX64)],
  ].find(([, ok]) => !ok);
  if (bad) return `bad ${bad[0]}`;
  const leg = entry.legs.findIndex((l) => !exactly(l, ["account_id", "asset", "amount"])
    || !matches(l.account_id, UUID) || !matches(l.asset, ASSET) || !isInt(l.amount, -MAX_SAFE)
    || l.amount === 0);
  return leg < 0 ? null : `bad leg ${leg}`;
}

/** The members of the receipt's claims that differ from what `entry` implies (§6.2), `iat`
 * aside. Plain comparisons: verifyReceipt has checked the claims' types. */
function differing(claims, entry, entryHash, leafHash) {
  const implied = { ...entry, entry_hash: entryHash, leaf_hash: leafHash };
  const sameLegs = (a, b) => a.length === b.length && a.every((leg, i) => leg.amount === b[i].amount
    && leg.account_id === b[i].account_id && leg.asset === b[i].asset);
  return CLAIMS.filter((name) => (name === "legs" ? !sameLegs(claims.legs, entry.legs)
    : claims[name] !== implied[name]));
}

function checkClaims(claims, seq, entry, entryHash, leafHash) {
  const diff = differing(claims, entry, entryHash, leafHash);
  if (diff.length) {
    fail("receipt.claims", seq, `凭条与条目不符：${diff.join(", ")}`,
      `the receipt differs from the entry in ${diff.join(", ")}`);
  }
}

// --- the export (§8.5) -----------------------------------------------------------------------

function splitLines(input) {
  let text = input;
  if (input instanceof ArrayBuffer || ArrayBuffer.isView(input)) {
    try {
      text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(input);
    } catch {
      fail("file", null, "文件不是 UTF-8 文本", "the file is not UTF-8 text");
    }
  }
  if (typeof text !== "string") throw new TypeError("verifyExport takes a string or bytes");
  if (!text.endsWith("\n")) {
    fail("file", null, "文件为空或最后一行没有换行", "the file is empty or its last line has no newline");
  }
  const lines = text.slice(0, -1).split("\n");
  const blank = lines.indexOf("");
  if (blank >= 0) fail("file", null, `第 ${blank + 1} 行是空行`, `line ${blank + 1} is blank`);
  return lines;
}

/** Steps 1–2: the checkpoint line, its signed checkpoint, the prefix. */
async function readTrailer(line, trustedJwks) {
  const bad = (why) => fail("checkpoint.line", null, `最后一行（检查点行）不对：${why}`,
    `the last line (the checkpoint line) is wrong: ${why}`);
  const t = refuse("checkpoint.line", null, "the last line (the checkpoint line) is not JSON",
    () => parse(line, "检查点行"));
  if (!exactly(t, TRAILER)) bad(`its members are ${TRAILER.join(", ")}`);
  const cp = t.checkpoint;
  if (!isObject(cp) || !matches(cp.book, BOOK) || typeof cp.note !== "string") {
    bad("checkpoint has no book or note");
  }
  const [from, to] = [t.from_seq, t.to_seq];
  if (!isInt(from, 1) || !isInt(to, 0) || (to < from && !(from === 1 && to === 0))) {
    bad("bad from_seq, to_seq");
  }
  for (const name of ["prefix", "consistency"]) {
    if (!Array.isArray(t[name]) || !t[name].every((h) => matches(h, HEX64))) {
      bad(`${name} is not a list of 64-hex hashes`);
    }
  }
  const jwks = trustedJwks ?? t.jwks;
  if (!isObject(jwks) || !Array.isArray(jwks.keys)) {
    fail("keys", null, "验证密钥不是 JWK Set", "the verification keys are not a JWK Set");
  }
  const checkpoint = await openCheckpoint(cp.note, cp.book, jwks);
  if (checkpoint.size < to) {
    fail("checkpoint.size", null, `检查点只有 ${checkpoint.size} 条，少于 to_seq ${to}`,
      `the checkpoint's size ${checkpoint.size} is below to_seq ${to}`);
  }
  const count = peaks(from - 1).length;
  if (t.prefix.length !== count) {
    fail("prefix", null, `prefix 应有 ${count} 个哈希`,
      `prefix must hold ${count} hashes (one per 1-bit of from_seq − 1)`);
  }
  return { t, jwks, book: cp.book, checkpoint, from, to };
}

/** Steps 3.1–3.2 for the line of entry `n`; `state.signed` is whether the first entry line
 * had a receipt (every other must be alike). */
function readLine(line, n, book, to, state) {
  const read = refuse("line.json", n, "the entry line is not strict JSON",
    () => parse(line, `第 ${n} 条`));
  const signed = exactly(read, LINE);
  if (!(signed || exactly(read, BARE_LINE)) || (signed && typeof read.receipt !== "string")
    || !matches(read.entry_hash, HEX64)) {
    fail("line.members", n, "条目行必须恰好是 entry、entry_hash（64 位十六进制），可另有 receipt",
      "an entry line is exactly entry, entry_hash (64 hex) and, or not, receipt");
  }
  state.signed ??= signed;
  if (signed !== state.signed) {
    fail("line.members", n, `凭条有无不一致：第一条分录行${state.signed ? "带" : "不带"}凭条，本行不同`,
      `receipts are mixed: the first entry line ${state.signed ? "has a receipt" : "has none"
      }, this not`);
  }
  const { entry } = read;
  const why = entryShape(entry);
  if (why) fail("entry.shape", n, `条目格式不对：${why}`, `the entry's shape: ${why}`);
  if (entry.seq !== n || n > to) {
    const [zh, en] = n > to ? [`超出 to_seq ${to}`, `past to_seq ${to}`]
      : entry.seq > n ? ["缺少条目", "entries missing"]
        : ["条目重复或顺序错乱", "repeated or out of order"];
    fail("entry.seq", n, `应为第 ${n} 条，实为第 ${entry.seq} 条（${zh}）`,
      `expected seq ${n}, found seq ${entry.seq} (${en})`);
  }
  if (entry.book !== book) {
    fail("entry.book", n, `条目属于账簿 ${entry.book}，不是 ${book}`,
      `the entry is of book ${entry.book}, not ${book}`);
  }
  const bytes = encoder.encode(canonicalJson(entry));
  return { seq: n, entry, entryHash: read.entry_hash, receipt: signed ? read.receipt : null,
    bytes };
}

/** Each item's hashes and receipt verdict, started together; the checks then run in order
 * (checkItem), so that the first failure is the one reported. */
function hashAndVerify(items, jwks, keys) {
  return Promise.all(items.map(async (item) => {
    const [entryHash, leaf] = await Promise.all([sha256(item.bytes), sha256(LEAF, item.bytes)]);
    const receipt = item.receipt === null ? null
      : await verifyReceipt(item.receipt, jwks, { keys }).catch((e) => {
        if (e instanceof ReceiptError) return { error: e.message };
        throw e;
      });
    return { ...item, computed: hex(entryHash), leaf, receipt };
  }));
}

/** Steps 3.3–3.5 and 3.7 for one entry. */
async function checkItem(item, state) {
  const { seq, entry, receipt } = item;
  if (item.computed !== item.entryHash) {
    fail("entry.hash", seq, `entry_hash 与条目内容不符（应为 ${item.computed}）`,
      `entry_hash is not SHA-256(JCS(entry)) (that is ${item.computed})`);
  }
  if (receipt?.error) {
    fail("receipt.signature", seq, `凭条无效：${receipt.error}`,
      "the receipt does not verify with the keys");
  }
  if (receipt) checkClaims(receipt.claims, seq, entry, item.computed, hex(item.leaf));
  if (seq === 1 && entry.prev_hash !== ZERO_HASH) {
    fail("chain.prev_hash", 1, "第 1 条的 prev_hash 不是 64 个 0", "entry 1's prev_hash is not 64 zeros");
  }
  if (state.previous !== undefined && entry.prev_hash !== state.previous) {
    fail("chain.prev_hash", seq - 1, `第 ${seq} 条的 prev_hash 不是第 ${seq - 1} 条的 entry_hash`,
      `entry ${seq}'s prev_hash is not the entry_hash of entry ${seq - 1}`);
  }
  state.previous = item.entryHash;
  if (receipt) {
    state.kids.add(receipt.kid);
    state.receipts += 1;
  }
  await state.tree.push(item.leaf);
  if (state.tree.size === state.trustedSize) state.trustedRoot = await state.tree.root();
}

const ENTRY_CHECKS = ["line.json", "line.members", "entry.shape", "entry.seq", "entry.book",
  "entry.hash", "receipt.signature", "receipt.claims", "chain.prev_hash", "entries.missing"];
const RECEIPT_CHECKS = ["receipt.signature", "receipt.claims"];

/** Step 3 over every entry line, in chunks. */
async function readEntries(lines, { from, to, book, jwks }, state, onProgress) {
  let n = from;
  for (let start = 0; start < lines.length; start += CHUNK) {
    const items = [];
    let stop = null;
    for (const line of lines.slice(start, start + CHUNK)) {
      try {
        items.push(readLine(line, n, book, to, state));
      } catch (e) {
        if (!(e instanceof Failure)) throw e;
        stop = e; // reported once the lines before it are checked
        break;
      }
      n += 1;
    }
    for (const item of await hashAndVerify(items, jwks, state.keys)) await checkItem(item, state);
    if (stop) throw stop;
    onProgress?.(n - from, lines.length);
  }
  if (n - 1 !== to) {
    fail("entries.missing", n, `文件在第 ${n - 1} 条结束，范围应到第 ${to} 条`,
      `entries missing: the file ends at ${n - 1}, the range at ${to}`);
  }
}

/** Step 1 for a checkpoint kept from elsewhere (a signed note, or the JSON of §8.3). */
async function openTrusted(checkpoint, { book, jwks }) {
  const note = typeof checkpoint?.note === "string" ? checkpoint.note : checkpoint;
  if (typeof note !== "string") {
    fail("checkpoint.trusted", null, "可信检查点不是签名文本", "the trusted checkpoint is not a signed note");
  }
  return openCheckpoint(note, book, jwks).catch((e) => {
    if (!(e instanceof Failure)) throw e;
    return fail("checkpoint.trusted", null, `可信检查点：${e.zh}`, `the trusted checkpoint: ${e.en}`);
  });
}

/** Step 6: the file against the trusted checkpoint. */
function checkTrusted(trusted, read, state) {
  const mine = trusted.size === read.checkpoint.size ? read.checkpoint.root : state.trustedRoot;
  if (!mine || !same(mine, trusted.root)) {
    fail("checkpoint.trusted", null, `文件与可信检查点（${trusted.size} 条）不一致或无法比对`,
      `the file does not match (or cannot be related to) the trusted checkpoint of size ${
        trusted.size}`);
  }
}

/** The witness policy's text read (a Failure "witness.policy" if the text does not allow it);
 * null without one. */
async function readPolicy(text, passed) {
  if (text === null || text === undefined) return null;
  const policy = await parseWitnessPolicy(text);
  passed("witness.policy");
  return policy;
}

/** The checkpoint `cp` (of openCheckpoint) against `policy`: who cosigned goes in `out`
 * before the verdict on the quorum. */
async function checkQuorum(policy, cp, out, passed) {
  const found = await checkWitnesses(policy, cp.text, cp.signatures);
  passed("witness.cosignature");
  out.witnesses = found;
  requireQuorum(found);
  passed("witness.quorum");
}

export async function verifyExport(input, {
  jwks = null, checkpoint = null, witnessPolicy = null, onProgress,
} = {}) {
  if (!globalThis.crypto?.subtle) throw new Error("WebCrypto is unavailable (an insecure origin?)");
  const result = { book: null, fromSeq: null, toSeq: null, entries: 0, receipts: 0,
    treeSize: null, root: null, head: null, checkpoint: null, trusted_keys: jwks !== null,
    kids: [], witnesses: null };
  return verdict(async (passed, out) => {
    const policy = await readPolicy(witnessPolicy, passed);
    const lines = splitLines(input);
    passed("file");
    const read = await readTrailer(lines.pop(), jwks);
    const { t, book, checkpoint: cp, from, to } = read;
    Object.assign(out, { book, fromSeq: from, toSeq: to, treeSize: cp.size,
      checkpoint: { origin: cp.origin, treeSize: cp.size, root: hex(cp.root) } });
    passed("checkpoint.line", "keys", "checkpoint.book", "checkpoint.signature",
      "checkpoint.size", "prefix");
    // Before the entries: a checkpoint the witnesses did not vouch for is refused at once.
    if (policy) await checkQuorum(policy, cp, out, passed);
    const trusted = checkpoint === null ? null : await openTrusted(checkpoint, read);
    const tree = new CompactTree(from - 1, t.prefix.map(fromHex));
    // The root at the trusted checkpoint's size, if it falls within the range (step 6).
    const state = { kids: new Set(), keys: new Map(), tree, trustedSize: trusted?.size,
      signed: null, receipts: 0 };
    if (trusted?.size === from - 1) state.trustedRoot = await tree.root();
    await readEntries(lines, read, state, (done, total) => {
      out.entries = done;
      onProgress?.(done, total);
    });
    out.receipts = state.receipts;
    passed(...ENTRY_CHECKS.filter((c) => state.signed || !RECEIPT_CHECKS.includes(c)));
    const root = await tree.root();
    if (!await verifyConsistency(to, cp.size, t.consistency.map(fromHex), root, cp.root)) {
      fail("merkle.consistency", to || null,
        `第 1..${to} 条的 Merkle 根不是已签名检查点（${cp.size} 条）的前缀`,
        `the Merkle root of seq 1..${to} is not a prefix of the signed checkpoint (${cp.size})`);
    }
    passed("merkle.consistency");
    if (trusted) {
      checkTrusted(trusted, read, state);
      passed("checkpoint.trusted");
    }
    return { root: hex(root), head: state.previous ?? null, kids: [...state.kids].sort() };
  }, result);
}

// --- one receipt, one service proof ----------------------------------------------------------

/** §5: the checkpoint of a tlog-proof bundle that includes `leafHash` at `index`. */
async function checkBundle(bundle, leafHash, index, book, jwks) {
  const bad = (why) => fail("proof.inclusion", index + 1, `包含证明格式不对：${why}`,
    `the inclusion proof is malformed: ${why}`);
  const split = typeof bundle === "string" ? bundle.indexOf("\n\n") : -1;
  if (split < 0) bad("not a tlog-proof bundle");
  const head = bundle.slice(0, split).split("\n");
  if (head[0] !== "c2sp.org/tlog-proof@v1") bad("not c2sp.org/tlog-proof@v1");
  const at = head[1]?.startsWith("extra ") ? 2 : 1; // opaque, never trusted
  const m = /^index (0|[1-9]\d{0,15})$/.exec(head[at] ?? "");
  if (!m) bad("no index line");
  const path = head.slice(at + 1).map(b64Decode);
  if (path.some((p) => p?.length !== 32)) bad("a hash is not 32 bytes of base64");
  const cp = await openCheckpoint(bundle.slice(split + 2), book, jwks);
  if (Number(m[1]) !== index
    || !await verifyInclusion(fromHex(leafHash), index, cp.size, path, cp.root)) {
    fail("proof.inclusion", index + 1, `条目不在检查点（${cp.size} 条）中`,
      `the entry is not included in the checkpoint of size ${cp.size}`);
  }
  return cp;
}

export function verifyReceiptToken(token, jwks, {
  entry = null, proof = null, witnessPolicy = null,
} = {}) {
  return verdict(async (passed, out) => {
    const policy = await readPolicy(witnessPolicy, passed);
    if (policy && proof === null) {
      // As the Python verifier: a policy speaks of a checkpoint, and only a bundle has one;
      // a receipt alone would pass it unchecked.
      fail("witness.policy", null, "见证策略需要凭条的包含证明（检查点）",
        "a witness policy needs the receipt's proof bundle (its checkpoint)");
    }
    const { claims, kid } = await refuse("receipt.signature", null, "the receipt does not verify",
      () => verifyReceipt(typeof token === "string" ? token.trim() : token, jwks));
    passed("receipt.signature");
    if (entry !== null) {
      const why = entryShape(entry);
      if (why) fail("entry.shape", claims.seq, `条目格式不对：${why}`, `the entry's shape: ${why}`);
      const bytes = encoder.encode(canonicalJson(entry));
      const [entryHash, leaf] = await Promise.all([sha256(bytes), sha256(LEAF, bytes)]);
      checkClaims(claims, claims.seq, entry, hex(entryHash), hex(leaf));
      passed("receipt.claims");
    }
    Object.assign(out, { claims, kid });
    const cp = proof === null ? null
      : await checkBundle(proof, claims.leaf_hash, claims.seq - 1, claims.book, jwks);
    if (cp) passed("checkpoint.signature", "proof.inclusion");
    if (cp && policy) await checkQuorum(policy, cp, out, passed);
    const checkpoint = cp && { origin: cp.origin, treeSize: cp.size, root: hex(cp.root) };
    return { claims, kid, checkpoint };
  }, { claims: null, kid: null, checkpoint: null, witnesses: null });
}

/** A witness policy's text read as verifyExport would: a verdict with, when it is ok,
 * `witnesses` (each {witness, key_name, url}), `logs` (their key names), `quorum` and `rule`. */
export function readWitnessPolicy(text) {
  return verdict(async (passed) => {
    const policy = await readPolicy(text, passed);
    return {
      witnesses: [...policy.witnesses.values()].map((w) => ({ witness: w.witness,
        key_name: w.keyName, url: w.url })),
      logs: policy.logs.map((l) => l.name), quorum: policy.quorum, rule: policy.rule,
    };
  });
}
