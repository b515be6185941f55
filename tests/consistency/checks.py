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
    """Each record's status against its `service_credit` and `reversal` entries, both ways."""
    problems = []
    credits = {e["tx_id"]: e for e in await _entries(conn, "service_credit")}
    reversals = {e["reverses"]: e for e in await _entries(conn, "reversal") if e["reverses"]}
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


# --- administrative actions and their notices (app/identity/actions.py) ---
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


async def all_problems(conn: asyncpg.Connection) -> list[str]:
    """Every check's disagreements."""
    return [*await service_records(conn), *await action_notices(conn)]
