"""Refusals of the public time pool.

Besides this one, donations and grants answer with existing types: `member-not-found`,
`member-erased`, `asset-not-found`, `account-not-open`, `insufficient-funds`,
`personal-data-in-text` (a grant's reason) and `book-not-found`.
"""

from __future__ import annotations

from app.kit.problems import TimebankError


class PublicPoolEmpty(TimebankError):
    status, slug, title = (
        409,
        "public-pool-empty",
        "The public time pool does not hold the amount asked",
    )
