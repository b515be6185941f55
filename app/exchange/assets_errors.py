"""Refusals about assets. The two problem types are defined in app.exchange.errors (other parts
of exchange name them too) and re-exported here for the assets modules."""

from __future__ import annotations

from app.exchange.errors import AssetExists, AssetNotFound

__all__ = ["AssetExists", "AssetNotFound"]
