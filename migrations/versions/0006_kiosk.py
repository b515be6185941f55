"""Kiosk redemption: items and their stock at kiosk sites, member redeem codes, redemptions.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from alembic import context, op
from sqlalchemy.util import await_only

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Every change of stock on hand, with who and why: the goods' own journal.
APPEND_ONLY = ("kiosk_stock_moves",)

SCHEMA = r"""
-- What a kiosk site offers. `stock` is on hand (NULL: unlimited); `reserved` is what pending
-- redemptions hold back, so what can be redeemed is stock - reserved.
CREATE TABLE kiosk_items (
    id uuid PRIMARY KEY,
    site_id uuid NOT NULL REFERENCES organisations (id),
    book_code text NOT NULL REFERENCES books (code),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    asset text NOT NULL REFERENCES assets (code),
    price bigint NOT NULL CHECK (price BETWEEN 1 AND 9007199254740991),
    stock bigint CHECK (stock BETWEEN 0 AND 9007199254740991),
    reserved bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT kiosk_items_reserved_on_hand CHECK (stock IS NULL OR reserved <= stock)
);
CREATE INDEX kiosk_items_site ON kiosk_items (site_id, name);

CREATE TABLE kiosk_stock_moves (
    id uuid PRIMARY KEY,
    item_id uuid NOT NULL REFERENCES kiosk_items (id),
    kind text NOT NULL CHECK (kind IN ('initial', 'restock', 'correction', 'redemption')),
    delta bigint NOT NULL,
    -- NULL for an item of unlimited stock.
    stock_after bigint CHECK (stock_after >= 0),
    reason text NOT NULL CHECK (length(reason) BETWEEN 1 AND 200),
    redemption_id uuid,
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX kiosk_stock_moves_item ON kiosk_stock_moves (item_id, created_at);

-- A member's single-use code; the code itself is its id and a MAC (never stored).
CREATE TABLE redeem_codes (
    id uuid PRIMARY KEY,
    member_id uuid NOT NULL REFERENCES members (id),
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    redemption_id uuid,
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE kiosk_redemptions (
    id uuid PRIMARY KEY,
    site_id uuid NOT NULL REFERENCES organisations (id),
    book_code text NOT NULL REFERENCES books (code),
    member_id uuid NOT NULL REFERENCES members (id),
    code_id uuid NOT NULL UNIQUE REFERENCES redeem_codes (id),
    asset text NOT NULL,
    total bigint NOT NULL CHECK (total BETWEEN 1 AND 9007199254740991),
    lines jsonb NOT NULL CHECK (jsonb_typeof(lines) = 'array'),
    hold_id uuid NOT NULL UNIQUE,
    status text NOT NULL
        CHECK (status IN ('pending', 'confirmed', 'cancelled', 'expired')),
    expires_at timestamptz NOT NULL,
    -- The hold.post (confirmed) or hold.void (cancelled, expired) entry.
    tx_id uuid UNIQUE,
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    CONSTRAINT kiosk_redemptions_resolved CHECK ((status = 'pending') = (resolved_at IS NULL))
);
CREATE INDEX kiosk_redemptions_site ON kiosk_redemptions (site_id, created_at);
CREATE INDEX kiosk_redemptions_pending ON kiosk_redemptions (expires_at)
    WHERE status = 'pending';

-- A kiosk site's account that redeemed units are posted to, one per asset, opened on first use.
CREATE UNIQUE INDEX accounts_org_redemption ON accounts (owner, asset)
    WHERE meta ->> 'purpose' = 'redemption';
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
    op.execute(
        "GRANT SELECT, INSERT, UPDATE ON kiosk_items, redeem_codes, kiosk_redemptions "
        f'TO "{app_role}"'
    )


def downgrade() -> None:
    op.execute("DROP INDEX accounts_org_redemption")
    op.execute("DROP TABLE kiosk_redemptions, redeem_codes, kiosk_stock_moves, kiosk_items")
