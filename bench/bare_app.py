"""The HTTP baseline: a bare FastAPI endpoint shaped like a posting, with no database.

POST /bare parses a body of the same shape as POST /v1/books/{code}/transactions (same field
types, unknown fields refused) and answers 201 with a document shaped like the ledger's posting
answer (entry, hashes, two balances), so request and response sizes match the real route. No
authentication, idempotency, middleware or I/O: what is left is uvicorn + FastAPI + pydantic +
JSON, the floor the ledger's HTTP route stands on.

Served like the ledger: `uvicorn bench.bare_app:app --workers 1 --log-level warning
--no-access-log`.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.responses import JSONResponse

GENESIS = "0" * 64


class BareLeg(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: UUID
    amount: StrictInt


class BareTransfer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}(\.[a-z0-9_]{1,31}){0,3}$")] = (
        "transfer"
    )
    legs: Annotated[list[BareLeg], Field(min_length=2, max_length=64)]
    memo: Annotated[str, Field(max_length=1000)] = ""
    meta: dict[str, Any] = Field(default_factory=dict)


app = FastAPI(title="bench bare baseline")
_seq = itertools.count(1)


@app.post("/bare", status_code=201)
async def bare(data: BareTransfer) -> JSONResponse:
    """Echo the transfer back in the shape of a posting answer."""
    seq = next(_seq)
    tx_id = str(uuid.uuid4())
    legs = [
        {"account_id": str(leg.account_id), "amount": leg.amount, "asset": "HOUR"}
        for leg in data.legs
    ]
    entry = {
        "book": "bench",
        "kind": data.kind,
        "legs": legs,
        "memo": data.memo,
        "meta": data.meta,
        "posted_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "prev_hash": GENESIS,
        "seq": seq,
        "tx_id": tx_id,
    }
    balances = [
        {
            "account_id": str(leg.account_id),
            "asset": "HOUR",
            "posted": seq * leg.amount,
            "pending": 0,
            "pending_debits": 0,
            "pending_credits": 0,
            "available": seq * leg.amount,
        }
        for leg in data.legs
    ]
    body = {
        "id": tx_id,
        "book": "bench",
        "seq": seq,
        "kind": data.kind,
        "status": "posted",
        "entry": entry,
        "entry_hash": GENESIS,
        "balances": balances,
    }
    return JSONResponse(body, status_code=201)
