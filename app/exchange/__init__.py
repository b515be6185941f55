"""Exchange: assets and their policies, pools and donations, exchange rules, mutual recognition
between books, gifts, the public time pool and expiry (docs/exchange.md)."""
