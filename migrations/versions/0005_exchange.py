"""Exchange: assets and their policies, pools and donations, exchange rules and quotes, mutual
recognition between books.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from alembic import context, op
from sqlalchemy.util import await_only

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# A published rule is immutable: its text and its pools are facts the journal's notice hashed.
APPEND_ONLY = ("exchange_rules", "exchange_rule_pools", "exchange_rule_retirements")

SCHEMA = r"""
ALTER TABLE assets
    ADD COLUMN issuer_organisation_id uuid REFERENCES organisations (id),
    -- Units earned in calendar year Y lapse at the start of year Y + n + 1 (service time
    -- zone); NULL: they never lapse.
    ADD COLUMN expires_after_years smallint CHECK (expires_after_years BETWEEN 0 AND 50),
    ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();

-- Per book and asset: how much a member may hold, and what a member may give away.
CREATE TABLE book_asset_policies (
    book_code text NOT NULL REFERENCES books (code),
    asset text NOT NULL REFERENCES assets (code),
    storage_cap bigint CHECK (storage_cap BETWEEN 1 AND 9007199254740991),
    gift_yearly_cap bigint CHECK (gift_yearly_cap BETWEEN 0 AND 9007199254740991),
    -- NULL: any relationship (or none); else a gift must name one of these labels.
    gift_relations text[],
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (book_code, asset)
);

-- A book's own accounts (public time pool, expired units, donations received, clearing with
-- another book) and a member's account in a book exist once each, so they can be opened on
-- first use by concurrent requests.
CREATE UNIQUE INDEX accounts_book_purpose
    ON accounts (book_code, owner, asset, (meta ->> 'purpose'))
    WHERE owner LIKE 'book:%';
CREATE UNIQUE INDEX accounts_member_asset ON accounts (book_code, owner, asset)
    WHERE owner LIKE 'member:%';

-- Who gave what to which pool; the donor's details are personal data (encrypted), the journal
-- names only this row's id.
CREATE TABLE donations (
    id uuid PRIMARY KEY,
    book_code text NOT NULL REFERENCES books (code),
    organisation_id uuid NOT NULL REFERENCES organisations (id),
    pool_account_id uuid NOT NULL REFERENCES accounts (id),
    asset text NOT NULL REFERENCES assets (code),
    amount bigint NOT NULL CHECK (amount BETWEEN 1 AND 9007199254740991),
    donor_enc bytea NOT NULL,
    tx_id uuid,
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX donations_organisation ON donations (organisation_id, created_at);

CREATE TABLE exchange_rules (
    id uuid PRIMARY KEY,
    code text NOT NULL CHECK (code ~ '^[a-z][a-z0-9_-]{0,63}$'),
    version integer NOT NULL CHECK (version >= 1),
    from_asset text NOT NULL REFERENCES assets (code),
    to_asset text NOT NULL REFERENCES assets (code),
    ratio_num bigint NOT NULL CHECK (ratio_num BETWEEN 1 AND 1000000),
    ratio_den bigint NOT NULL CHECK (ratio_den BETWEEN 1 AND 1000000),
    min_amount bigint NOT NULL CHECK (min_amount >= 1),
    max_amount bigint CHECK (max_amount >= min_amount),
    cap_day bigint CHECK (cap_day >= 1),
    cap_month bigint CHECK (cap_month >= 1),
    cap_year bigint CHECK (cap_year >= 1),
    valid_from timestamptz NOT NULL,
    valid_until timestamptz CHECK (valid_until > valid_from),
    organisations uuid[],
    min_age smallint CHECK (min_age BETWEEN 0 AND 150),
    min_age_hardship smallint CHECK (min_age_hardship BETWEEN 0 AND 150),
    min_certified_minutes integer CHECK (min_certified_minutes >= 1),
    step bigint CHECK (step >= 1),
    -- The rule exactly as the journal's notice.rule_published carries it (JCS), and its hash.
    document bytea NOT NULL,
    rule_hash text NOT NULL UNIQUE CHECK (rule_hash = encode(sha256(document), 'hex')),
    published_by uuid NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (code, version),
    CHECK (from_asset <> to_asset)
);

-- Where a rule applies: in each book, the organisation whose pool accounts pay.
CREATE TABLE exchange_rule_pools (
    rule_id uuid NOT NULL REFERENCES exchange_rules (id),
    book_code text NOT NULL REFERENCES books (code),
    organisation_id uuid NOT NULL REFERENCES organisations (id),
    PRIMARY KEY (rule_id, book_code)
);

CREATE TABLE exchange_rule_retirements (
    rule_id uuid PRIMARY KEY REFERENCES exchange_rules (id),
    reason text NOT NULL,
    retired_by uuid NOT NULL,
    retired_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE exchange_quotes (
    id uuid PRIMARY KEY,
    rule_id uuid NOT NULL REFERENCES exchange_rules (id),
    book_code text NOT NULL REFERENCES books (code),
    member_id uuid NOT NULL REFERENCES members (id),
    from_amount bigint NOT NULL CHECK (from_amount >= 1),
    to_amount bigint NOT NULL CHECK (to_amount >= 1),
    conditions jsonb NOT NULL,
    expires_at timestamptz NOT NULL,
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    tx_id uuid UNIQUE,
    executed_at timestamptz,
    CHECK ((tx_id IS NULL) = (executed_at IS NULL))
);
CREATE INDEX exchange_quotes_member ON exchange_quotes (member_id, created_at);

-- 通存通兑: `from_book` accepts nothing by itself; `to_book` accepts `from_asset` of
-- `from_book` as `to_asset` at num/den. One active agreement per direction and asset pair.
CREATE TABLE recognition_agreements (
    id uuid PRIMARY KEY,
    from_book text NOT NULL REFERENCES books (code),
    from_asset text NOT NULL REFERENCES assets (code),
    to_book text NOT NULL REFERENCES books (code),
    to_asset text NOT NULL REFERENCES assets (code),
    ratio_num bigint NOT NULL DEFAULT 1 CHECK (ratio_num BETWEEN 1 AND 1000000),
    ratio_den bigint NOT NULL DEFAULT 1 CHECK (ratio_den BETWEEN 1 AND 1000000),
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'ended')),
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    ended_at timestamptz,
    CHECK (from_book <> to_book)
);
CREATE UNIQUE INDEX recognition_agreements_active
    ON recognition_agreements (from_book, from_asset, to_book, to_asset)
    WHERE status = 'active';

CREATE TABLE recognition_transfers (
    id uuid PRIMARY KEY,
    agreement_id uuid NOT NULL REFERENCES recognition_agreements (id),
    member_id uuid NOT NULL REFERENCES members (id),
    from_amount bigint NOT NULL CHECK (from_amount >= 1),
    to_amount bigint NOT NULL CHECK (to_amount >= 1),
    from_tx uuid NOT NULL UNIQUE,
    to_tx uuid NOT NULL UNIQUE,
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recognition_transfers_member ON recognition_transfers (member_id, created_at);
"""


def execute_script(sql: str) -> None:
    """Run several statements at once (simple protocol) in the migration's transaction."""
    await_only(op.get_bind().connection.driver_connection.execute(sql))


def upgrade() -> None:
    app_role = context.config.attributes["app_role"]
    execute_script(SCHEMA)
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION journal_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION journal_refuse_change()"
        )
        op.execute(f'GRANT SELECT, INSERT ON {table} TO "{app_role}"')
    op.execute(f'GRANT INSERT, UPDATE ON assets TO "{app_role}"')
    op.execute(
        "GRANT SELECT, INSERT, UPDATE ON book_asset_policies, donations, exchange_quotes, "
        f'recognition_agreements, recognition_transfers TO "{app_role}"'
    )


def downgrade() -> None:
    op.execute(
        "DROP TABLE recognition_transfers, recognition_agreements, exchange_quotes, "
        "exchange_rule_retirements, exchange_rule_pools, exchange_rules, donations, "
        "book_asset_policies"
    )
    op.execute("DROP INDEX accounts_book_purpose, accounts_member_asset")
    op.execute(
        "ALTER TABLE assets DROP COLUMN issuer_organisation_id, "
        "DROP COLUMN expires_after_years, DROP COLUMN created_at"
    )
    op.execute(f'REVOKE INSERT, UPDATE ON assets FROM "{context.config.attributes["app_role"]}"')
