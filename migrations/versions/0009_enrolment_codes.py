"""Enrolment codes: a member's consent, single-use and short-lived, to join an organisation.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from alembic import context, op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The code itself is never stored: only its keyed hash (HMAC-SHA256 under the lookup key).
SCHEMA = """
CREATE TABLE enrolment_codes (
    code_hash text PRIMARY KEY,
    member_id uuid NOT NULL REFERENCES members (id),
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    organisation_id uuid REFERENCES organisations (id),
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT enrolment_codes_used CHECK ((used_at IS NULL) = (organisation_id IS NULL))
)
"""


def upgrade() -> None:
    app_role = context.config.attributes["app_role"]
    op.execute(SCHEMA)
    # DELETE: codes expired for longer than the idempotency retention are purged.
    op.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON enrolment_codes TO "{app_role}"')


def downgrade() -> None:
    op.execute("DROP TABLE enrolment_codes")
