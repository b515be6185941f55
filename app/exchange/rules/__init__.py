"""Exchange rules: versioned, immutable once published, proved by the journal."""
