"""Assets: the units books count, their issuer and validity period."""
