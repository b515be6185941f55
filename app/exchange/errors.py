"""Refusals of the exchange domain; each rule has its own problem type."""

from __future__ import annotations

from app.kit.problems import TimebankError


class AssetNotFound(TimebankError):
    status, slug, title = 404, "asset-not-found", "Asset not found"


class AssetExists(TimebankError):
    status, slug, title = 409, "asset-exists", "An asset with this code exists"


class MemberNotEligible(TimebankError):
    status, slug, title = 409, "member-not-eligible", "The member cannot take part"


class PoolNotFound(TimebankError):
    status, slug, title = 404, "pool-not-found", "The organisation has no pool for this asset"


class DonationNotFound(TimebankError):
    status, slug, title = 404, "donation-not-found", "Donation not found"


class DonationRefused(TimebankError):
    status, slug, title = 409, "donation-refused", "The ledger refused the donation"


class RuleNotFound(TimebankError):
    status, slug, title = 404, "exchange-rule-not-found", "Exchange rule not found"


class InvalidRule(TimebankError):
    status, slug, title = 422, "invalid-exchange-rule", "The exchange rule cannot be published"


class RuleRetired(TimebankError):
    status, slug, title = 409, "exchange-rule-retired", "The exchange rule is retired"


class RuleNotInForce(TimebankError):
    status, slug, title = 409, "exchange-rule-not-in-force", "The rule is outside its validity"


class RuleNotApplicable(TimebankError):
    status, slug, title = 409, "exchange-rule-not-applicable", "The rule does not apply here"


class ExchangeAmountInvalid(TimebankError):
    status, slug, title = 422, "exchange-amount-invalid", "The amount is outside the rule's terms"


class ConditionNotMet(TimebankError):
    status, slug, title = 409, "exchange-condition-not-met", "The member does not meet a condition"


class QuoteNotFound(TimebankError):
    status, slug, title = 404, "quote-not-found", "Quote not found"


class QuoteExpired(TimebankError):
    status, slug, title = 409, "quote-expired", "The quote has expired"


class QuoteUsed(TimebankError):
    status, slug, title = 409, "quote-used", "The quote was executed by another request"


class ExchangeCapExceeded(TimebankError):
    status, slug, title = 409, "exchange-cap-exceeded", "The member's exchange cap is reached"


class PoolEmpty(TimebankError):
    status, slug, title = 409, "pool-empty", "The paying pool cannot cover the exchange"


class ExchangeRefused(TimebankError):
    status, slug, title = 409, "exchange-refused", "The ledger refused the exchange"
