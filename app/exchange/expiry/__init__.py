"""Expiry of units with a validity period: lots derived from the journal, and expiry runs."""
