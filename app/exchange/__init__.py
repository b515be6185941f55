"""Exchange: assets and their policies, pools and donations, exchange rules, mutual recognition
between books, gifts, the public time pool, expiry, and a member's balances across books
(docs/exchange.md)."""
