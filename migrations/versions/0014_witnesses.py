"""Witnesses (issue 24, docs/witness.md): who cosigns each book's checkpoints, what the log
knows of each, and the cosignatures they returned.

- `book_witnesses`: a book's witnesses (name and cosigner vkey, C2SP tlog-cosignature type
  0x04, and the submission URL of C2SP tlog-witness), with the size each last cosigned for
  this book (the `old` of the next request), when it is next due, and the last error or
  refusal. A refusal other than 409 is an alarm, kept here until the witness cosigns again.
- `checkpoint_cosignatures`: the cosignature line each witness returned for a checkpoint,
  appended to the checkpoint's note wherever the service serves it. Append-only, as the
  checkpoints are: the runtime role may only read and insert.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from alembic import context, op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

SCHEMA = [
    """
CREATE TABLE book_witnesses (
    book_code text NOT NULL REFERENCES books (code),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    vkey text NOT NULL CHECK (length(vkey) BETWEEN 1 AND 400),
    url text NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2000),
    added_at timestamptz NOT NULL DEFAULT now(),
    cosigned_size bigint CHECK (cosigned_size >= 0),
    cosigned_at timestamptz,
    due_at timestamptz NOT NULL DEFAULT now(),
    failures integer NOT NULL DEFAULT 0,
    last_error text,
    refused_at timestamptz,
    refusal text,
    PRIMARY KEY (book_code, name)
)""",
    """
CREATE TABLE checkpoint_cosignatures (
    book_code text NOT NULL,
    tree_size bigint NOT NULL,
    witness text NOT NULL,
    line text NOT NULL CHECK (line ~ '^\u2014 [^ ]+ [A-Za-z0-9+/=]+\n$'),
    cosigned_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (book_code, tree_size, witness),
    FOREIGN KEY (book_code, tree_size) REFERENCES checkpoints (book_code, tree_size)
)""",
]


def upgrade() -> None:
    app_role = context.config.attributes["app_role"]
    for statement in SCHEMA:
        op.execute(statement)
    op.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON book_witnesses TO "{app_role}"')
    op.execute(f'GRANT SELECT, INSERT ON checkpoint_cosignatures TO "{app_role}"')


def downgrade() -> None:
    op.execute("DROP TABLE checkpoint_cosignatures")
    op.execute("DROP TABLE book_witnesses")
