"""Indexes that keep reads flat as a book grows (issue 23's scale run).

- `journal_entries (book_code, kind, posted_at)`: the service and exchange statistics read the
  entries of their own kinds (service credits, exchanges, gifts, ...); without it they read every
  entry of the book, transfers included (at 1,000,000 entries of which none were theirs, 206 and
  329 ms at the median against 39 and 100 ms at 100,000). With a period, the flows' bounds on
  `posted_at` narrow the same range. (Their legs and accounts are looked up by key:
  `ledger.legs_with_accounts`, docs/performance.md "Growth".)
- `accounts (owner)`: a member's balances and an organisation's pools find accounts by owner
  across books; `accounts_book_owner` leads with the book, so without it each read scanned every
  account (100,000 in the scale run: 9.7 ms at the median for a member's balances).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX journal_entries_kind ON journal_entries (book_code, kind, posted_at)")
    op.execute("CREATE INDEX accounts_owner ON accounts (owner)")


def downgrade() -> None:
    op.execute("DROP INDEX accounts_owner")
    op.execute("DROP INDEX journal_entries_kind")
