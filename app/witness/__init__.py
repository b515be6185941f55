"""A C2SP tlog-witness run by another party: cosigns a log's checkpoints that extend what it saw."""
