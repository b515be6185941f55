"""Identity: organisations, members and their personal data, credentials' reach, action keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from alembic import context, op
from sqlalchemy.util import await_only

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = r"""
CREATE TABLE organisations (
    id uuid PRIMARY KEY,
    book_code text NOT NULL REFERENCES books (code),
    kind text NOT NULL CHECK (kind IN ('community', 'social_org', 'social_work_station',
                                       'volunteer_team', 'charity', 'kiosk_site')),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    parent_id uuid REFERENCES organisations (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (parent_id IS DISTINCT FROM id)
);
CREATE INDEX organisations_book ON organisations (book_code, created_at, id);
CREATE INDEX organisations_parent ON organisations (parent_id);

-- Personal data lives only here, encrypted (AES-GCM) with keyed hashes for lookups; erasure
-- scrubs the row and keeps the id, so accounts and journal entries stay intact.
CREATE SEQUENCE volunteer_number_seq;
CREATE TABLE members (
    id uuid PRIMARY KEY,
    book_code text NOT NULL REFERENCES books (code),
    volunteer_number text NOT NULL UNIQUE,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'erased')),
    display_name_enc bytea,
    phone_enc bytea,
    phone_hash text,
    resident_id_enc bytea,
    resident_id_hash text,
    birth_date_enc bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    erased_at timestamptz,
    CHECK (status = 'active' OR (display_name_enc IS NULL AND phone_enc IS NULL
        AND phone_hash IS NULL AND resident_id_enc IS NULL AND resident_id_hash IS NULL
        AND birth_date_enc IS NULL))
);
CREATE UNIQUE INDEX members_resident_id_key ON members (resident_id_hash)
    WHERE resident_id_hash IS NOT NULL;
CREATE INDEX members_book ON members (book_code, created_at, id);

-- External identities (e.g. a WeChat openid) are personal data too: only keyed hashes.
CREATE TABLE member_identities (
    provider text NOT NULL CHECK (provider ~ '^[a-z][a-z0-9_]{0,31}$'),
    subject_hash text NOT NULL CHECK (subject_hash ~ '^[0-9a-f]{64}$'),
    union_id_hash text CHECK (union_id_hash ~ '^[0-9a-f]{64}$'),
    member_id uuid NOT NULL REFERENCES members (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, subject_hash)
);
CREATE INDEX member_identities_member ON member_identities (member_id);

CREATE TABLE organisation_members (
    organisation_id uuid NOT NULL REFERENCES organisations (id),
    member_id uuid NOT NULL REFERENCES members (id),
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organisation_id, member_id)
);
CREATE INDEX organisation_members_member ON organisation_members (member_id);

ALTER TABLE credentials
    ADD COLUMN organisation_id uuid REFERENCES organisations (id),
    ADD COLUMN rate_limit_per_s double precision CHECK (rate_limit_per_s >= 0),
    ADD COLUMN created_by uuid,
    ADD COLUMN rotated_at timestamptz,
    ADD CONSTRAINT credentials_reach CHECK (
        CASE role
            WHEN 'org' THEN organisation_id IS NOT NULL AND book_code IS NOT NULL
            WHEN 'kiosk' THEN organisation_id IS NOT NULL AND book_code IS NOT NULL
            ELSE organisation_id IS NULL
        END);
CREATE INDEX credentials_book ON credentials (book_code, created_at, id);

-- Answers to idempotent requests that are not postings (creating an organisation or a
-- credential, revoking, rotating); a token is never stored here.
CREATE TABLE action_outcomes (
    credential_id uuid NOT NULL,
    key text NOT NULL,
    request_hash text NOT NULL,
    status_code integer NOT NULL,
    response jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (credential_id, key)
);
CREATE INDEX action_outcomes_created ON action_outcomes USING brin (created_at);
"""


def execute_script(sql: str) -> None:
    """Run several statements at once (simple protocol) in the migration's transaction."""
    await_only(op.get_bind().connection.driver_connection.execute(sql))


def upgrade() -> None:
    app_role = context.config.attributes["app_role"]
    execute_script(SCHEMA)
    for table in ("organisations", "members", "organisation_members"):
        op.execute(f'GRANT SELECT, INSERT, UPDATE ON {table} TO "{app_role}"')
    # Identities are deleted when a member is erased: the openid is personal data.
    op.execute(f'GRANT SELECT, INSERT, DELETE ON member_identities TO "{app_role}"')
    op.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON action_outcomes TO "{app_role}"')
    op.execute(f'GRANT USAGE ON SEQUENCE volunteer_number_seq TO "{app_role}"')


def downgrade() -> None:
    op.execute("DROP TABLE action_outcomes, organisation_members, member_identities, members")
    op.execute("DROP SEQUENCE volunteer_number_seq")
    op.execute(
        "ALTER TABLE credentials DROP CONSTRAINT credentials_reach, "
        "DROP COLUMN organisation_id, DROP COLUMN rate_limit_per_s, DROP COLUMN created_by, "
        "DROP COLUMN rotated_at"
    )
    op.execute("DROP TABLE organisations")
