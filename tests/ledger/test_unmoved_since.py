"""A draft computed from an account's journal posts only if the account has not moved since
(`Draft.unmoved_since`): the expiry job's optimistic check."""

from __future__ import annotations

import uuid

from app.ledger.outcomes import IdempotencyRef
from app.ledger.posting import Draft
from tests.conftest import Api


async def test_a_draft_is_refused_when_its_account_moved_since_it_was_read(api: Api) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 100)
    read_seq = (await api.client.get(f"/v1/accounts/{member}")).json()["last_seq"]
    sequencer = api.app.state.sequencer

    def draft(seq: int) -> Draft:
        legs = [(member, -10), (issuance, 10)]
        return Draft(book, "post", "expiry", legs, "", {}, unmoved_since={member: seq})

    def ref() -> IdempotencyRef:
        return IdempotencyRef(api.credential, f"t:{uuid.uuid4()}", "h")

    moved = await api.transfer(book, member, issuance, 1)
    assert moved.status_code == 201, moved.text
    stale = await sequencer.submit(draft(read_seq), ref())
    assert stale.status_code == 409
    assert stale.body["type"].endswith(":account-moved")
    assert stale.body["account_id"] == member
    assert (await api.client.get(f"/v1/accounts/{member}")).json()["posted"] == 99
    fresh = await sequencer.submit(draft(moved.json()["seq"]), ref())
    assert fresh.status_code == 201, fresh.body
    assert (await api.client.get(f"/v1/accounts/{member}")).json()["posted"] == 89
