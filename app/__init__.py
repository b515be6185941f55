"""Timebank Ledger: the system of record for volunteer hours and charity points."""
