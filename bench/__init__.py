"""Benchmarks of the ledger against baselines measured in the same run (see scripts/bench)."""
