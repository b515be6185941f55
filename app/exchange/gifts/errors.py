"""Refusals of gifts; each rule has its own problem type.

Besides these, gifts answer with existing types: `member-not-found`, `member-erased`,
`asset-not-found`, `account-not-open` and `insufficient-funds`.
"""

from __future__ import annotations

from app.kit.problems import TimebankError


class GiftToSelf(TimebankError):
    status, slug, title = 422, "gift-to-self", "A member cannot give to themselves"


class GiftRelationshipRequired(TimebankError):
    status, slug, title = (
        422,
        "gift-relationship-required",
        "The book's policy requires a gift to name the relationship",
    )


class GiftRelationshipNotAllowed(TimebankError):
    status, slug, title = (
        422,
        "gift-relationship-not-allowed",
        "The book's policy does not allow gifts for this relationship",
    )


class GiftYearlyCapExceeded(TimebankError):
    status, slug, title = (
        409,
        "gift-yearly-cap-exceeded",
        "The giver's gifts this year would exceed the yearly cap",
    )
