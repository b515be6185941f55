"""What must agree between the journal and the features' own rows, checked straight in the
database after a failure between an action's steps (docs/consistency.md).

Each check returns the disagreements it finds as readable strings; an empty list means the
journal and the rows agree.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

# Every journal entry with its meta, for the checks below.
ENTRIES = """
SELECT e.book_code, e.seq, e.tx_id::text AS tx_id, e.kind, e.reverses::text AS reverses,
       convert_from(e.body, 'UTF8')::jsonb -> 'meta' AS meta
  FROM journal_entries e WHERE e.kind = ANY($1::text[])
"""


async def _entries(conn: asyncpg.Connection, *kinds: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(ENTRIES, list(kinds))
    return [{**dict(r), "meta": json.loads(r["meta"]) if r["meta"] else {}} for r in rows]


async def service_records(conn: asyncpg.Connection) -> list[str]:
    """Each record's status against its `service_credit` and `reversal` (or
    `service_correction`) entries, both ways."""
    problems = []
    credits = {e["tx_id"]: e for e in await _entries(conn, "service_credit")}
    reversals = {e["reverses"]: e for e in await _entries(conn, "reversal") if e["reverses"]}
    # A correction (docs/volunteering.md §6.1) undoes its credit as a reversal does.
    for entry in await _entries(conn, "service_correction"):
        credit = entry["meta"].get("credit")
        if credit in reversals:
            problems.append(f"credit {credit} is reversed and corrected")
        reversals[credit] = entry
    records = await conn.fetch(
        "SELECT id::text AS id, status, tx_id::text AS tx_id, "
        "reversal_tx_id::text AS reversal_tx_id FROM service_records"
    )
    credited = {r["tx_id"]: r for r in records if r["tx_id"]}
    for tx_id, entry in credits.items():
        record = credited.get(tx_id)
        if record is None or record["id"] != entry["meta"].get("record"):
            problems.append(f"service_credit {tx_id} names record {entry['meta'].get('record')}")
            continue
        if record["status"] not in ("approved", "reversed"):
            problems.append(f"record {record['id']} is {record['status']} with credit {tx_id}")
    for record in records:
        if record["status"] in ("approved", "reversed") and record["tx_id"] not in credits:
            problems.append(f"record {record['id']} is {record['status']} with no credit")
        reversal = reversals.get(record["tx_id"]) if record["tx_id"] else None
        if record["status"] == "reversed" and (
            reversal is None or reversal["tx_id"] != record["reversal_tx_id"]
        ):
            problems.append(f"record {record['id']} is reversed with no reversal entry")
        if reversal is not None and record["status"] != "reversed":
            problems.append(f"record {record['id']} is {record['status']}, its credit reversed")
    return problems


# --- administrative actions and their notices (app/http/actions.py) ---
UNNOTED_ACTIONS = """
SELECT o.credential_id::text AS credential_id, o.key FROM action_outcomes o
 WHERE o.status_code > 0 AND o.response -> 'notice' IS NOT NULL
   AND o.response -> 'notice' <> 'null'::jsonb
   AND NOT EXISTS (SELECT 1 FROM idempotency_keys k
                    WHERE k.key = 'notice:' || o.credential_id::text || ':' || o.key
                      AND k.tx_id IS NOT NULL)
"""
# A notice's key names the action's credential and key (a suffix `#n` for further notices).
ORPHAN_NOTICES = """
SELECT k.key FROM idempotency_keys k
 WHERE k.key LIKE 'notice:%' AND k.tx_id IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM action_outcomes o
                    WHERE regexp_replace(k.key, '#[0-9]+$', '')
                          = 'notice:' || o.credential_id::text || ':' || o.key
                      AND o.status_code > 0)
"""


async def action_notices(conn: asyncpg.Connection) -> list[str]:
    """Each answered action with a notice has its notice entry, and each notice entry its
    answered action."""
    problems = [
        f"action {r['credential_id']}:{r['key']} has no notice entry"
        for r in await conn.fetch(UNNOTED_ACTIONS)
    ]
    problems += [f"notice {r['key']} has no action" for r in await conn.fetch(ORPHAN_NOTICES)]
    return problems


# --- Kiosk redemptions (docs/kiosk.md §3): redemptions against their hold entries, codes,
# --- stock against its moves and reservations.


async def kiosk_redemptions(conn: asyncpg.Connection) -> list[str]:
    """Each redemption's status against its `hold` entry and what resolved it, both ways: every
    `hold` naming a redemption has its row, and every hold.post or hold.void of such a hold is
    the redemption's settlement."""
    problems = []
    holds = {e["tx_id"]: e for e in await _entries(conn, "hold") if "redemption" in e["meta"]}
    resolutions: dict[str, list[dict[str, Any]]] = {}
    for entry in await _entries(conn, "hold.post", "hold.void"):
        if entry["meta"].get("hold") in holds:
            resolutions.setdefault(entry["meta"]["hold"], []).append(entry)
    amounts = {
        r["tx_id"]: r["amount"]
        for r in await conn.fetch(
            "SELECT e.tx_id::text AS tx_id, l.amount FROM journal_legs l JOIN journal_entries e "
            "ON e.book_code = l.book_code AND e.seq = l.seq "
            "WHERE e.kind = 'hold' AND l.amount > 0"
        )
    }
    rows = await conn.fetch(
        "SELECT id::text AS id, book_code, status, total, hold_id::text AS hold_id, "
        "tx_id::text AS tx_id FROM kiosk_redemptions"
    )
    by_hold = {r["hold_id"]: r for r in rows}
    for tx_id, entry in holds.items():
        named = entry["meta"]["redemption"]
        row = by_hold.get(tx_id)
        if row is None or row["id"] != named:
            problems.append(f"hold {tx_id} names redemption {named}, which does not hold it")
    for row in rows:
        hold = holds.get(row["hold_id"])
        name = f"redemption {row['id']} ({row['status']})"
        if hold is None:
            problems.append(f"{name} has no hold entry naming it")
            continue
        if (hold["book_code"], amounts.get(row["hold_id"])) != (row["book_code"], row["total"]):
            problems.append(f"{name} totals {row['total']}, its hold {amounts.get(row['hold_id'])}")
        resolved = resolutions.get(row["hold_id"], [])
        kinds = {e["tx_id"]: e["kind"] for e in resolved}
        if row["status"] == "pending":
            if resolved:
                problems.append(f"{name}: its hold was resolved by {sorted(kinds.values())}")
        elif row["status"] == "confirmed":
            if kinds.get(row["tx_id"]) != "hold.post" or len(kinds) != 1:
                problems.append(f"{name}: tx {row['tx_id']}, its hold resolved by {kinds}")
        elif row["tx_id"] is not None:
            if kinds.get(row["tx_id"]) != "hold.void" or len(kinds) != 1:
                problems.append(f"{name}: tx {row['tx_id']}, its hold resolved by {kinds}")
        elif list(kinds.values()) != ["hold.void"]:
            # Settled with no tx: the ledger had voided the hold already (at its own expiry).
            problems.append(f"{name} with no tx, its hold resolved by {kinds}")
    return problems


async def kiosk_codes(conn: asyncpg.Connection) -> list[str]:
    """Every redemption used its code, and every used code started a redemption."""
    rows = await conn.fetch(
        "SELECT c.id::text AS code, c.used_at IS NOT NULL AS used, "
        "c.redemption_id::text AS named, r.id::text AS redemption "
        "FROM redeem_codes c FULL JOIN kiosk_redemptions r ON r.code_id = c.id"
    )
    return [
        f"code {r['code']} (used: {r['used']}, names {r['named']}) of redemption {r['redemption']}"
        for r in rows
        if r["used"] != (r["redemption"] is not None) or r["named"] != r["redemption"]
    ]


async def kiosk_stock(conn: asyncpg.Connection) -> list[str]:
    """Each item's stock against its moves, its `reserved` against the pending redemptions'
    lines, and each redemption's `redemption` moves against its lines (only if confirmed)."""
    problems = []
    items = await conn.fetch(
        "SELECT i.id::text AS id, i.stock, i.reserved, "
        "(SELECT coalesce(sum(m.delta), 0) FROM kiosk_stock_moves m WHERE m.item_id = i.id) "
        "AS moved FROM kiosk_items i"
    )
    lines = await conn.fetch(
        "SELECT r.id::text AS redemption, r.status, l ->> 'item_id' AS item, "
        "(l ->> 'quantity')::bigint AS quantity "
        "FROM kiosk_redemptions r, jsonb_array_elements(r.lines) l"
    )
    moves = await conn.fetch(
        "SELECT redemption_id::text AS redemption, item_id::text AS item, sum(-delta) AS taken "
        "FROM kiosk_stock_moves WHERE kind = 'redemption' GROUP BY 1, 2"
    )
    held: dict[str, int] = {}
    for line in lines:
        if line["status"] == "pending":
            held[line["item"]] = held.get(line["item"], 0) + line["quantity"]
    for item in items:
        if item["stock"] is not None and item["moved"] != item["stock"]:
            problems.append(f"item {item['id']}: {item['stock']} on hand, moves {item['moved']}")
        reserved = held.get(item["id"], 0) if item["stock"] is not None else 0
        if item["reserved"] != reserved:
            problems.append(f"item {item['id']}: {item['reserved']} reserved, {reserved} pending")
    taken = {(m["redemption"], m["item"]): m["taken"] for m in moves}
    for line in lines:
        wanted = line["quantity"] if line["status"] == "confirmed" else 0
        got = taken.pop((line["redemption"], line["item"]), 0)
        if got != wanted:
            problems.append(
                f"redemption {line['redemption']} ({line['status']}): item {line['item']} "
                f"{got} taken from stock, {wanted} redeemed"
            )
    problems.extend(f"{n} taken for {key}, which redeemed none" for key, n in taken.items())
    return problems


# --- end of kiosk redemptions

# --- exchange: exchanges, gifts, pool donations, the public time pool, recognition, expiry ---
# Each feature row (or stored answer) that names a transaction against its journal entry, both
# ways: an entry of the feature's kind has its row, and a row in a posted state has its entry.


async def exchanges(conn: asyncpg.Connection) -> list[str]:
    """Each `exchange` entry against the quote it names, and each executed quote's entry."""
    problems = []
    entries = {e["tx_id"]: e for e in await _entries(conn, "exchange")}
    quotes = {
        r["id"]: r
        for r in await conn.fetch(
            "SELECT id::text AS id, tx_id::text AS tx_id, executed_at FROM exchange_quotes"
        )
    }
    for tx_id, entry in entries.items():
        quote = quotes.get(entry["meta"].get("quote"))
        if quote is None or quote["tx_id"] != tx_id:
            problems.append(f"exchange {tx_id} names quote {entry['meta'].get('quote')}")
    for quote in quotes.values():
        entry = entries.get(quote["tx_id"]) if quote["tx_id"] else None
        if quote["tx_id"] is not None and (
            entry is None or entry["meta"].get("quote") != quote["id"]
        ):
            problems.append(f"quote {quote['id']} is executed with no exchange entry")
    return problems


# The ledger key `<kind>:<id>` of each posting an exchange action made, by tx id.
LEDGER_KEYS = """
SELECT tx_id::text AS tx_id, substr(key, length($1) + 2) AS id FROM idempotency_keys
 WHERE credential_id = '00000000-0000-0000-0000-000000000000' AND key LIKE $1 || ':%'
   AND tx_id IS NOT NULL
"""

# The answers (201) kept under Idempotency-Keys whose entry is of a kind.
ANSWERS = """
SELECT response -> 'body' AS body FROM action_outcomes
 WHERE status_code = 201 AND response #>> '{body,entry,kind}' = $1
"""


async def answered(conn: asyncpg.Connection, kind: str, name: str) -> list[str]:
    """Entries of an action that keeps no row of its own but its answer (`{name: {id, …},
    entry: {tx_id, …}}` under the request's Idempotency-Key) against those answers, both ways:
    an entry of `kind` has its answer, and an answer names an entry of `kind` posted under the
    ledger key `<kind>:<id>` of the id it shows. (Answers are kept for the idempotency
    retention, a day by default: enough for a test.)"""
    problems = []
    entries = {e["tx_id"]: e for e in await _entries(conn, kind)}
    keys = {r["tx_id"]: r["id"] for r in await conn.fetch(LEDGER_KEYS, kind)}
    answers = {}
    for row in await conn.fetch(ANSWERS, kind):
        body = json.loads(row["body"])
        answers[body["entry"]["tx_id"]] = str(body[name]["id"])
    for tx_id in entries:
        if answers.get(tx_id) is None or answers[tx_id] != keys.get(tx_id):
            problems.append(f"{kind} {tx_id} ({name} {keys.get(tx_id)}) has no answer")
    for tx_id, answer_id in answers.items():
        if tx_id not in entries or keys.get(tx_id) != answer_id:
            problems.append(f"{name} {answer_id} answered with no {kind} entry {tx_id}")
    return problems


async def gifts(conn: asyncpg.Connection) -> list[str]:
    """Each `gift` entry against its answer, both ways, and against the id in its meta."""
    problems = await answered(conn, "gift", "gift")
    keys = {r["tx_id"]: r["id"] for r in await conn.fetch(LEDGER_KEYS, "gift")}
    for entry in await _entries(conn, "gift"):
        if entry["meta"].get("gift") != keys.get(entry["tx_id"]):
            problems.append(f"gift {entry['tx_id']} names gift {entry['meta'].get('gift')}")
    return problems


async def donations(conn: asyncpg.Connection) -> list[str]:
    """Each `donation` entry (into an organisation's pool) against its `donations` row, both
    ways: the row names the entry, the entry names the row, the same pool and amount."""
    problems = []
    entries = {e["tx_id"]: e for e in await _entries(conn, "donation")}
    legs = {
        r["tx_id"]: (r["account"], r["amount"])
        for r in await conn.fetch(
            "SELECT e.tx_id::text AS tx_id, l.account_id::text AS account, l.amount "
            "FROM journal_entries e JOIN journal_legs l ON l.book_code = e.book_code "
            "AND l.seq = e.seq WHERE e.kind = 'donation' AND l.amount > 0"
        )
    }
    rows = {
        r["id"]: r
        for r in await conn.fetch(
            "SELECT id::text AS id, tx_id::text AS tx_id, pool_account_id::text AS pool, "
            "amount FROM donations"
        )
    }
    for tx_id, entry in entries.items():
        row = rows.get(entry["meta"].get("donation"))
        if row is None or row["tx_id"] != tx_id:
            problems.append(f"donation {tx_id} names donation {entry['meta'].get('donation')}")
    for row in rows.values():
        entry = entries.get(row["tx_id"])
        if entry is None or entry["meta"].get("donation") != row["id"]:
            problems.append(f"donation {row['id']} has no donation entry")
        elif legs.get(row["tx_id"]) != (row["pool"], row["amount"]):
            problems.append(f"donation {row['id']} and its entry differ in pool or amount")
    return problems


async def recognition_transfers(conn: asyncpg.Connection) -> list[str]:
    """Each `recognition.out` / `recognition.in` entry against its transfer's row, both ways:
    the row names both entries, each entry names the row, and the two name each other."""
    problems = []
    halves = {e["tx_id"]: e for e in await _entries(conn, "recognition.out", "recognition.in")}
    rows = {
        r["id"]: r
        for r in await conn.fetch(
            "SELECT id::text AS id, from_tx::text AS from_tx, to_tx::text AS to_tx "
            "FROM recognition_transfers"
        )
    }
    for tx_id, entry in halves.items():
        row = rows.get(entry["meta"].get("transfer"))
        side = "from_tx" if entry["kind"] == "recognition.out" else "to_tx"
        if row is None or row[side] != tx_id:
            problems.append(
                f"{entry['kind']} {tx_id} names transfer {entry['meta'].get('transfer')}"
            )
        elif (entry["meta"].get("counterpart") or {}).get("tx_id") != row[
            "to_tx" if side == "from_tx" else "from_tx"
        ]:
            problems.append(f"{entry['kind']} {tx_id} does not name its other half")
    for row in rows.values():
        for side, kind in (("from_tx", "recognition.out"), ("to_tx", "recognition.in")):
            entry = halves.get(row[side])
            if entry is None or entry["kind"] != kind or entry["meta"].get("transfer") != row["id"]:
                problems.append(f"transfer {row['id']} has no {kind} entry")
    return problems


EXPIRY_LEGS = """
SELECT e.tx_id::text AS tx_id, l.account_id::text AS account, l.amount,
       a.owner = 'book:' || e.book_code AND a.meta ->> 'purpose' = 'expired' AS expired
  FROM journal_entries e
  JOIN journal_legs l ON l.book_code = e.book_code AND l.seq = e.seq
  JOIN accounts a ON a.id = l.account_id
 WHERE e.kind = 'expiry' ORDER BY e.tx_id, l.leg_index
"""


async def expiries(conn: asyncpg.Connection) -> list[str]:
    """Each `expiry` entry against its ledger key `expiry:<account>:<as_of>:<read_seq>…`, both
    ways, and whole: the key's account gives what `meta.lapsed` sums to, to the book's
    `expired` account (a run keeps no other row)."""
    problems = []
    entries = {e["tx_id"]: e for e in await _entries(conn, "expiry")}
    keys = {r["tx_id"]: r["id"] for r in await conn.fetch(LEDGER_KEYS, "expiry")}
    legs: dict[str, list[Any]] = {}
    for leg in await conn.fetch(EXPIRY_LEGS):
        legs.setdefault(leg["tx_id"], []).append(leg)
    for tx_id, entry in entries.items():
        key = keys.get(tx_id)
        meta = entry["meta"]
        if key is None:
            problems.append(f"expiry {tx_id} has no ledger key")
            continue
        account, as_of, read_seq = key.split(":")[:3]
        lapsed = sum(part["amount"] for part in meta.get("lapsed", []))
        shape = [(leg["account"], leg["amount"], leg["expired"]) for leg in legs.get(tx_id, [])]
        if (meta.get("as_of"), str(meta.get("read_seq"))) != (as_of, read_seq) or shape != [
            (account, -lapsed, False),
            (shape[-1][0] if shape else None, lapsed, True),
        ]:
            problems.append(f"expiry {tx_id} is not the whole expiry its key {key} names")
    for tx_id, key in keys.items():
        if tx_id not in entries:
            problems.append(f"ledger key expiry:{key} names no expiry entry {tx_id}")
    return problems


async def exchange_problems(conn: asyncpg.Connection) -> list[str]:
    """Every exchange check's disagreements."""
    return [
        *await exchanges(conn),
        *await gifts(conn),
        *await donations(conn),
        *await answered(conn, "public_pool.donation", "donation"),
        *await answered(conn, "public_pool.grant", "grant"),
        *await recognition_transfers(conn),
        *await expiries(conn),
    ]


# --- end of exchange ---


async def all_problems(conn: asyncpg.Connection) -> list[str]:
    """Every check's disagreements."""
    return [
        *await service_records(conn),
        *await action_notices(conn),
        *await kiosk_redemptions(conn),
        *await kiosk_codes(conn),
        *await kiosk_stock(conn),
        *await exchange_problems(conn),
    ]
