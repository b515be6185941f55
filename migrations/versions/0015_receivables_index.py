"""What members owe organisations after corrections (docs/volunteering.md §6.1), found by an
index: every approval looks for the member's receivables while it holds the book's head, and
without this index that read every account of the book (68 ms at 200,000 accounts).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX accounts_receivables ON accounts (book_code, (meta ->> 'purpose')) "
        "WHERE meta ->> 'purpose' LIKE 'receivable:%'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX accounts_receivables")
