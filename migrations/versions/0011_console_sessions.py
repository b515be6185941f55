"""Console sessions: a credential's token, entered once in the console, traded for a
short-lived session held in an HttpOnly cookie (the page never keeps the token).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from alembic import context, op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Only the session secret's hash is stored. `credential_token_hash` is the credential's token
# hash at sign-in: rotating the credential's token ends its sessions, as revoking it does.
SCHEMA = """
CREATE TABLE console_sessions (
    id uuid PRIMARY KEY,
    session_hash text NOT NULL UNIQUE,
    credential_id uuid NOT NULL REFERENCES credentials (id),
    credential_token_hash text NOT NULL,
    csrf_token text NOT NULL CHECK (length(csrf_token) BETWEEN 32 AND 64),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL CHECK (expires_at > created_at),
    ended_at timestamptz
)
"""


def upgrade() -> None:
    app_role = context.config.attributes["app_role"]
    op.execute(SCHEMA)
    op.execute("CREATE INDEX console_sessions_expires ON console_sessions (expires_at)")
    op.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON console_sessions TO "{app_role}"')


def downgrade() -> None:
    op.execute("DROP TABLE console_sessions")
