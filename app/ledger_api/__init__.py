"""The ledger's HTTP routes: books, accounts, transfers, holds and entries."""
