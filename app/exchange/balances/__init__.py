"""A member's balances across assets and books, with what lapses when."""
