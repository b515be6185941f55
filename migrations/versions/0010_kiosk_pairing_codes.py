"""Kiosk pairing codes: a short code an admin or the site's organisation gives a kiosk, which
the kiosk trades once for a credential of its own (no token typed at the kiosk).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from alembic import context, op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The code itself is never stored: only its keyed hash (HMAC-SHA256 under the lookup key).
SCHEMA = """
CREATE TABLE kiosk_pairing_codes (
    code_hash text PRIMARY KEY,
    site_id uuid NOT NULL REFERENCES organisations (id),
    expires_at timestamptz NOT NULL,
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at timestamptz,
    credential_id uuid,
    CONSTRAINT kiosk_pairing_codes_used CHECK ((used_at IS NULL) = (credential_id IS NULL))
)
"""


def upgrade() -> None:
    app_role = context.config.attributes["app_role"]
    op.execute(SCHEMA)
    op.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON kiosk_pairing_codes TO "{app_role}"')


def downgrade() -> None:
    op.execute("DROP TABLE kiosk_pairing_codes")
