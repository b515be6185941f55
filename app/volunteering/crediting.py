"""What a service record's credit and its corrections share (no HTTP): the HOUR accounts a
credit moves, their idempotency keys, and the problem of a refused posting."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.http.caller import SYSTEM_CREDENTIAL
from app.identity.authorization import member_owner, org_owner
from app.kit.problems import TimebankError
from app.ledger.outcomes import IdempotencyRef, Outcome, refusal
from app.volunteering import errors


async def hour_accounts(
    session: AsyncSession, book: str, organisation_id: uuid.UUID, member_id: uuid.UUID
) -> tuple[str, str]:
    """The organisation's HOUR issuance account and the member's HOUR account."""
    rows = await session.execute(
        text(
            "SELECT id::text AS id, owner, meta ->> 'purpose' AS purpose FROM accounts "
            "WHERE book_code = :b AND asset = 'HOUR' AND owner IN (:org, :member) "
            "ORDER BY created_at, id"
        ),
        {"b": book, "org": org_owner(str(organisation_id)), "member": member_owner(str(member_id))},
    )
    issuance = member = None
    for row in rows:
        if row.owner.startswith("org:") and row.purpose == "issuance" and issuance is None:
            issuance = row.id
        elif row.owner.startswith("member:") and member is None:
            member = row.id
    if issuance is None:
        raise errors.NoIssuanceAccount(
            f"organisation {organisation_id} has no HOUR account with purpose 'issuance' to "
            "credit service from"
        )
    if member is None:
        raise errors.ServiceCreditRefused(f"member {member_id} has no HOUR account")
    return issuance, member


def refused(outcome: Outcome) -> TimebankError:
    """The problem of a credit (or its correction) the ledger refused."""
    problem = refusal(outcome)
    return errors.ServiceCreditRefused(
        f"the ledger refused the credit: {problem.detail}", ledger_problem=problem.problem()
    )


def credit_ref(record_id: uuid.UUID) -> IdempotencyRef:
    """The idempotency key of a record's one service credit."""
    return IdempotencyRef(SYSTEM_CREDENTIAL, f"service_credit:{record_id}", str(record_id))


def reversal_ref(record_id: uuid.UUID) -> IdempotencyRef:
    """The idempotency key of a record's one reversal or correction."""
    return IdempotencyRef(SYSTEM_CREDENTIAL, f"service_reversal:{record_id}", str(record_id))
