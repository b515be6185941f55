"""The ledger's write guard: a batch read without locks commits only if nothing it read moved.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from alembic import context, op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Raises serialization_failure (40001) unless `ok`: the sequencer's optimistic batch writes
# with it (app/ledger/store.py), and on this error redoes the batch under row locks.
GUARD = """
CREATE FUNCTION ledger_expect(ok boolean, what text) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION 'ledger: % moved since the batch read it', what
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN 1;
END $$
"""


def upgrade() -> None:
    app_role = context.config.attributes["app_role"]
    op.execute(GUARD)
    op.execute("REVOKE ALL ON FUNCTION ledger_expect(boolean, text) FROM PUBLIC")
    op.execute(f'GRANT EXECUTE ON FUNCTION ledger_expect(boolean, text) TO "{app_role}"')


def downgrade() -> None:
    op.execute("DROP FUNCTION ledger_expect(boolean, text)")
