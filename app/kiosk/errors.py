"""Refusals of kiosk redemption; each rule has its own problem type.

Besides these, the kiosk answers with existing types: `member-not-found`,
`organisation-not-found`, `insufficient-funds` (the member's points, from the ledger),
`account-not-open` and `asset-not-found`.
"""

from __future__ import annotations

from app.kit.problems import NotFound, TimebankError


class NotAKioskSite(TimebankError):
    status, slug, title = 422, "not-a-kiosk-site", "The organisation is not a kiosk site"


class ItemNotFound(NotFound):
    slug, title = "kiosk-item-not-found", "The item does not exist at this site"


class ItemInactive(TimebankError):
    status, slug, title = 409, "kiosk-item-inactive", "The item is not offered now"


class OutOfStock(TimebankError):
    status, slug, title = 409, "out-of-stock", "Not enough of the item in stock"


class StockBelowZero(TimebankError):
    status, slug, title = 409, "stock-below-zero", "The stock change would leave less than none"


class MixedAssets(TimebankError):
    status, slug, title = 422, "basket-mixed-assets", "A basket must be priced in one asset"


class PairingCodeInvalid(TimebankError):
    status, slug, title = 422, "pairing-code-invalid", "Not a usable pairing code"


class RedeemCodeInvalid(TimebankError):
    status, slug, title = 422, "redeem-code-invalid", "This is not a redeem code of this service"


class RedeemCodeExpired(TimebankError):
    status, slug, title = 409, "redeem-code-expired", "The redeem code has expired"


class RedeemCodeUsed(TimebankError):
    status, slug, title = 409, "redeem-code-used", "The redeem code was already used"


class RedeemCodeOtherMember(TimebankError):
    status, slug, title = (
        409,
        "redeem-code-other-member",
        "The redeem code was issued for another member",
    )


class RedemptionNotFound(NotFound):
    slug, title = "redemption-not-found", "The redemption does not exist"


class RedemptionExpired(TimebankError):
    status, slug, title = (
        409,
        "redemption-expired",
        "The redemption expired before it was confirmed",
    )


class RedemptionNotPending(TimebankError):
    status, slug, title = 409, "redemption-not-pending", "The redemption was already settled"
