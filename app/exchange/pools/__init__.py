"""Organisations' pools and the donations that fund them."""
