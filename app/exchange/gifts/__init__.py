"""Gifts (转赠) of a member's units to another member of the same book."""
