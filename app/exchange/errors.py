"""Refusals of the exchange domain; each rule has its own problem type."""

from __future__ import annotations

from app.errors import TimebankError


class AssetNotFound(TimebankError):
    status, slug, title = 404, "asset-not-found", "Asset not found"


class AssetExists(TimebankError):
    status, slug, title = 409, "asset-exists", "An asset with this code exists"


class MemberNotEligible(TimebankError):
    status, slug, title = 409, "member-not-eligible", "The member cannot take part"


class CapExceeded(TimebankError):
    status, slug, title = 409, "cap-exceeded", "A cap would be exceeded"
