"""The ledger: books, accounts, the append-only journal, holds, idempotency, credentials.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from alembic import context, op
from sqlalchemy.util import await_only

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JOURNAL_TABLES = ("journal_entries", "journal_legs")

SCHEMA = r"""
CREATE TABLE assets (
    code text PRIMARY KEY CHECK (code ~ '^[A-Z][A-Z0-9_]{0,15}$'),
    name text NOT NULL,
    unit text NOT NULL
);
INSERT INTO assets (code, name, unit) VALUES
    ('HOUR', 'Volunteer service time', 'minute'),
    ('POINT', 'Charity points', 'point');

CREATE TABLE books (
    code text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_-]{0,31}$'),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The chain head: the only row a book's appenders contend for (locked once per batch).
CREATE TABLE book_heads (
    book_code text PRIMARY KEY REFERENCES books (code),
    seq bigint NOT NULL DEFAULT 0 CHECK (seq >= 0),
    entry_hash text NOT NULL DEFAULT repeat('0', 64),
    posted_at timestamptz
);

CREATE TABLE accounts (
    id uuid PRIMARY KEY,
    book_code text NOT NULL REFERENCES books (code),
    asset text NOT NULL REFERENCES assets (code),
    owner text NOT NULL CHECK (length(owner) BETWEEN 1 AND 200),
    overdraft_limit bigint NOT NULL DEFAULT 0
        CHECK (overdraft_limit BETWEEN 0 AND 9007199254740991),
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'frozen', 'closed')),
    meta jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(meta) = 'object'),
    posted bigint NOT NULL DEFAULT 0,
    pending_debits bigint NOT NULL DEFAULT 0 CHECK (pending_debits >= 0),
    pending_credits bigint NOT NULL DEFAULT 0 CHECK (pending_credits >= 0),
    last_seq bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- The balance policy, in the database too: posted less reservations never below the limit.
    CONSTRAINT accounts_within_limit CHECK (posted - pending_debits + overdraft_limit >= 0),
    CONSTRAINT accounts_id_book_asset UNIQUE (id, book_code, asset)
);
CREATE INDEX accounts_book_owner ON accounts (book_code, owner);

-- Relations of the journal are checked per statement by the triggers below rather than by
-- foreign keys: a row-by-row FK check cost more than the rest of an insert.
CREATE TABLE journal_entries (
    book_code text NOT NULL,
    seq bigint NOT NULL CHECK (seq >= 1),
    tx_id uuid NOT NULL UNIQUE,
    kind text NOT NULL,
    posted_at timestamptz NOT NULL,
    prev_hash text NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    entry_hash text NOT NULL,
    body bytea NOT NULL,
    reverses uuid,
    resolves_hold uuid,
    PRIMARY KEY (book_code, seq),
    CONSTRAINT journal_entries_hash CHECK (entry_hash = encode(sha256(body), 'hex'))
);
-- At most one reversal per transaction; a hold resolves once.
CREATE UNIQUE INDEX journal_entries_reverses_key ON journal_entries (reverses)
    WHERE reverses IS NOT NULL;
CREATE UNIQUE INDEX journal_entries_resolves_hold_key ON journal_entries (resolves_hold)
    WHERE resolves_hold IS NOT NULL;

CREATE TABLE journal_legs (
    book_code text NOT NULL,
    seq bigint NOT NULL,
    leg_index smallint NOT NULL CHECK (leg_index >= 0),
    account_id uuid NOT NULL,
    asset text NOT NULL,
    amount bigint NOT NULL CHECK (amount <> 0 AND abs(amount) <= 9007199254740991),
    posted_after bigint NOT NULL,
    pending_debits_after bigint NOT NULL,
    pending_credits_after bigint NOT NULL,
    PRIMARY KEY (book_code, seq, leg_index)
);
CREATE INDEX journal_legs_account ON journal_legs (account_id, seq DESC, leg_index DESC);

-- Each new entry must follow the one before it: gapless and chained, whatever wrote it.
-- The checks below probe indexes row by row (LATERAL ... LIMIT 1): the transition table has no
-- statistics, and a hash join would scan the whole journal on every insert.
CREATE FUNCTION journal_check_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.book_code, n.seq INTO bad
      FROM new_entries n
      LEFT JOIN LATERAL (
          SELECT p.entry_hash FROM journal_entries p
           WHERE p.book_code = n.book_code AND p.seq = n.seq - 1 LIMIT 1) p ON true
      LEFT JOIN LATERAL (
          SELECT true AS found FROM books b WHERE b.code = n.book_code LIMIT 1) b ON true
     WHERE (n.seq = 1 AND n.prev_hash <> repeat('0', 64))
        OR (n.seq > 1 AND (p.entry_hash IS NULL OR p.entry_hash <> n.prev_hash))
        OR b.found IS NULL
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal chain broken at book % seq %', bad.book_code, bad.seq
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER journal_entries_chain AFTER INSERT ON journal_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION journal_check_chain();

-- Double entry in the database too: per entry and asset, the legs inserted together sum to 0.
CREATE FUNCTION journal_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT book_code, seq, asset INTO bad
      FROM new_legs GROUP BY book_code, seq, asset HAVING sum(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'unbalanced legs at book % seq % asset %', bad.book_code, bad.seq,
            bad.asset USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    -- Each leg belongs to an entry, and names an account of that book holding that asset.
    SELECT l.book_code, l.seq, l.leg_index INTO bad
      FROM new_legs l
      LEFT JOIN LATERAL (
          SELECT true AS found FROM journal_entries e
           WHERE e.book_code = l.book_code AND e.seq = l.seq LIMIT 1) e ON true
      LEFT JOIN LATERAL (
          SELECT true AS found FROM accounts a
           WHERE a.id = l.account_id AND a.book_code = l.book_code AND a.asset = l.asset
           LIMIT 1) a ON true
     WHERE e.found IS NULL OR a.found IS NULL
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'leg % of book % seq % has no entry or no such account', bad.leg_index,
            bad.book_code, bad.seq USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER journal_legs_balanced AFTER INSERT ON journal_legs
    REFERENCING NEW TABLE AS new_legs
    FOR EACH STATEMENT EXECUTE FUNCTION journal_check_balanced();

CREATE FUNCTION journal_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TABLE holds (
    id uuid PRIMARY KEY,
    book_code text NOT NULL REFERENCES books (code),
    seq bigint NOT NULL,
    from_account_id uuid NOT NULL REFERENCES accounts (id),
    to_account_id uuid NOT NULL REFERENCES accounts (id),
    asset text NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0),
    expires_at timestamptz NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'posted', 'voided', 'expired')),
    resolved_by uuid,
    posted_amount bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (book_code, seq) REFERENCES journal_entries (book_code, seq)
);
CREATE INDEX holds_pending_expiry ON holds (expires_at) WHERE status = 'pending';

CREATE TABLE credentials (
    id uuid PRIMARY KEY,
    name text NOT NULL DEFAULT '',
    role text NOT NULL CHECK (role IN ('admin', 'org', 'miniprogram', 'kiosk', 'auditor')),
    book_code text REFERENCES books (code),
    token_hash text NOT NULL UNIQUE,
    token_prefix text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    last_used_at timestamptz
);

-- Completed answers to idempotent requests, written in the same transaction as the posting.
CREATE TABLE idempotency_keys (
    credential_id uuid NOT NULL,
    key text NOT NULL,
    request_hash text NOT NULL,
    status_code integer NOT NULL,
    -- A success names its transaction (the answer is rebuilt from the journal); a refusal
    -- keeps its problem document.
    tx_id uuid,
    response jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (credential_id, key),
    CHECK ((tx_id IS NULL) <> (response IS NULL))
);
-- Rows arrive in time order: a BRIN index finds the expired ones at almost no write cost.
CREATE INDEX idempotency_keys_created ON idempotency_keys USING brin (created_at);
"""


def execute_script(sql: str) -> None:
    """Run several statements at once (simple protocol) in the migration's transaction."""
    await_only(op.get_bind().connection.driver_connection.execute(sql))


def upgrade() -> None:
    app_role = context.config.attributes["app_role"]
    execute_script(SCHEMA)
    for table in JOURNAL_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION journal_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION journal_refuse_change()"
        )
        op.execute(f'GRANT SELECT, INSERT ON {table} TO "{app_role}"')
    op.execute(f'GRANT SELECT ON assets, alembic_version TO "{app_role}"')
    op.execute(f'GRANT SELECT, INSERT ON books TO "{app_role}"')
    for table in ("book_heads", "accounts", "holds", "credentials"):
        op.execute(f'GRANT SELECT, INSERT, UPDATE ON {table} TO "{app_role}"')
    op.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO "{app_role}"')


def downgrade() -> None:
    op.execute(
        "DROP TABLE idempotency_keys, credentials, holds, journal_legs, journal_entries, "
        "accounts, book_heads, books, assets"
    )
    op.execute(
        "DROP FUNCTION journal_refuse_change(), journal_check_balanced(), journal_check_chain()"
    )
