"""Transparency log: signing keys, each book's Merkle subtrees and log head, signed checkpoints.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from alembic import context, op
from sqlalchemy.util import await_only

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

APPEND_ONLY = ("merkle_subtrees", "checkpoints")

SCHEMA = r"""
-- Ed25519 keys that sign receipts and checkpoints. Validity periods are whole seconds (the JWKS
-- publishes them so), never overlap, and at most one key has no end. A key row never changes
-- except to close its period once; no key is ever deleted (old receipts must stay verifiable).
CREATE TABLE signing_keys (
    kid text PRIMARY KEY CHECK (kid ~ '^[A-Za-z0-9_-]{43}$'),
    public_jwk jsonb NOT NULL CHECK (public_jwk ->> 'kty' = 'OKP' AND NOT public_jwk ? 'd'),
    private_pem bytea NOT NULL,
    valid_from timestamptz NOT NULL CHECK (valid_from = date_trunc('second', valid_from)),
    valid_until timestamptz
        CHECK (valid_until = date_trunc('second', valid_until) AND valid_until > valid_from),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT signing_keys_no_overlap
        EXCLUDE USING gist (tstzrange(valid_from, valid_until, '[)') WITH &&)
);
CREATE UNIQUE INDEX signing_keys_one_open ON signing_keys ((true)) WHERE valid_until IS NULL;

CREATE FUNCTION signing_keys_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION 'signing_keys: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.valid_until IS NOT NULL OR NEW.valid_until IS NULL
       OR (NEW.kid, NEW.public_jwk, NEW.private_pem, NEW.valid_from, NEW.created_at)
          IS DISTINCT FROM (OLD.kid, OLD.public_jwk, OLD.private_pem, OLD.valid_from,
                            OLD.created_at) THEN
        RAISE EXCEPTION 'signing_keys: only an open key''s valid_until may be set, once'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER signing_keys_guard BEFORE UPDATE OR DELETE ON signing_keys
    FOR EACH ROW EXECUTE FUNCTION signing_keys_guard();
CREATE TRIGGER signing_keys_no_truncate BEFORE TRUNCATE ON signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION journal_refuse_change();

-- Per book, the size of the tree integrated so far and its root. Its row is the lock that
-- serialises the processes integrating or signing for a book (FOR UPDATE).
CREATE TABLE log_heads (
    book_code text PRIMARY KEY REFERENCES books (code),
    tree_size bigint NOT NULL DEFAULT 0 CHECK (tree_size >= 0),
    root bytea NOT NULL DEFAULT sha256(''::bytea) CHECK (length(root) = 32),
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO log_heads (book_code) SELECT code FROM books;

CREATE FUNCTION books_open_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO log_heads (book_code) VALUES (NEW.code);
    RETURN NULL;
END $$;
CREATE TRIGGER books_open_log AFTER INSERT ON books
    FOR EACH ROW EXECUTE FUNCTION books_open_log();

-- Every complete subtree of a book's tree: (level, index) covers leaves
-- [index * 2^level, (index + 1) * 2^level) (docs/audit-format.md §1.1).
CREATE TABLE merkle_subtrees (
    book_code text NOT NULL,
    level smallint NOT NULL CHECK (level BETWEEN 0 AND 62),
    index bigint NOT NULL CHECK (index >= 0),
    hash bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (book_code, level, index)
);

-- Every signed checkpoint, kept for ever: at most one per tree size.
CREATE TABLE checkpoints (
    book_code text NOT NULL REFERENCES books (code),
    tree_size bigint NOT NULL CHECK (tree_size >= 0),
    root bytea NOT NULL CHECK (length(root) = 32),
    origin text NOT NULL,
    note text NOT NULL,
    signed_at timestamptz NOT NULL DEFAULT now(),
    kid text NOT NULL REFERENCES signing_keys (kid),
    PRIMARY KEY (book_code, tree_size)
);
CREATE INDEX checkpoints_latest ON checkpoints (book_code, signed_at DESC);
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
    op.execute(f'GRANT SELECT, INSERT, UPDATE ON signing_keys, log_heads TO "{app_role}"')


def downgrade() -> None:
    op.execute("DROP TABLE checkpoints, merkle_subtrees, log_heads, signing_keys")
    op.execute("DROP TRIGGER books_open_log ON books")
    op.execute("DROP FUNCTION books_open_log(), signing_keys_guard()")
