"""`timebank demo`: a small book with accounts, credits, a transfer, a hold and a reversal."""

from __future__ import annotations

from typing import Any

from app.config import Settings
from app.ledger import errors, schemas, service
from app.ledger.sequencer import IdempotencyRef, Outcome
from app.runtime import Runtime

DEMO_BOOK = "demo"
DEMO_CREDENTIAL = "00000000-0000-0000-0000-00000000de00"


def _idem(step: str) -> IdempotencyRef:
    return IdempotencyRef(DEMO_CREDENTIAL, f"demo:{step}", step)


def _ok(outcome: Outcome) -> dict[str, Any]:
    if outcome.status_code >= 400:
        raise RuntimeError(f"demo step refused: {outcome.body}")
    return outcome.body


async def seed_demo(app_url: str, settings: Settings) -> dict[str, Any]:
    """Create the demo book once; later runs report what is there."""
    runtime = await Runtime.open(app_url, settings)
    try:
        async with runtime.sessions() as session, session.begin():
            try:
                await service.create_book(
                    session, schemas.BookCreate(code=DEMO_BOOK, name="示范街道 demo")
                )
            except errors.BookExists:
                return {"book": await service.get_book(session, DEMO_BOOK), "created": False}
            accounts = {}
            for name, asset, owner, limit in [
                ("issuance", "HOUR", "system:issuance", 10_000_000),
                ("li", "HOUR", "person:demo-li", 0),
                ("wang", "HOUR", "person:demo-wang", 0),
                ("zhao", "HOUR", "person:demo-zhao", 0),
            ]:
                created = await service.open_account(
                    session,
                    DEMO_BOOK,
                    schemas.AccountCreate(asset=asset, owner=owner, overdraft_limit=limit),
                )
                accounts[name] = created["id"]
        seq = runtime.sequencer
        for person, minutes in (("li", 180), ("wang", 120), ("zhao", 90)):
            data = schemas.TransactionCreate(
                kind="grant",
                legs=[
                    schemas.LegIn(account_id=accounts["issuance"], amount=-minutes),
                    schemas.LegIn(account_id=accounts[person], amount=minutes),
                ],
                memo="社区助老服务",
            )
            _ok(await service.post_transaction(seq, DEMO_BOOK, data, _idem(f"credit-{person}")))
        gift = schemas.TransactionCreate(
            kind="gift",
            legs=[
                schemas.LegIn(account_id=accounts["li"], amount=-60),
                schemas.LegIn(account_id=accounts["zhao"], amount=60),
            ],
            memo="转赠",
        )
        gift_tx = _ok(await service.post_transaction(seq, DEMO_BOOK, gift, _idem("gift")))
        hold = _ok(
            await service.place_hold(
                seq,
                DEMO_BOOK,
                schemas.HoldCreate(
                    from_account_id=accounts["wang"],
                    to_account_id=accounts["issuance"],
                    amount=30,
                    expires_in=600,
                ),
                _idem("hold"),
            )
        )
        _ok(await service.resolve_hold(seq, hold, _idem("post")))
        _ok(await service.reverse_transaction(seq, gift_tx, _idem("reverse")))
        async with runtime.sessions() as session:
            book = await service.get_book(session, DEMO_BOOK)
        return {"book": book, "accounts": {k: str(v) for k, v in accounts.items()}, "created": True}
    finally:
        await runtime.close()
