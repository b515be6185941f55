"""Quotes and exchanges of one asset for another at a published rule's terms."""
