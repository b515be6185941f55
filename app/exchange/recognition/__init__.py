"""Mutual recognition between books (通存通兑): agreements, transfers, reconciliation."""
