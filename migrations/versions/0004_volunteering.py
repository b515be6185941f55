"""Volunteering: residents' needs, service projects, sign-ups, service records and proofs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from alembic import context, op
from sqlalchemy.util import await_only

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# History that no one may rewrite: what happened to each record, and every proof issued.
APPEND_ONLY = ("service_record_events", "service_proofs")

SCHEMA = r"""
-- member_id WITH = inside a GiST exclusion constraint needs btree_gist (a trusted extension).
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- The category and target-group lists are data: a district adds its own rows.
CREATE TABLE service_categories (
    code text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]{0,31}$'),
    name_zh text NOT NULL,
    name_en text NOT NULL,
    position integer NOT NULL DEFAULT 0
);
INSERT INTO service_categories (code, name_zh, name_en, position) VALUES
    ('elder_care', '扶老', 'elder care', 1),
    ('poverty_relief', '助困', 'poverty relief', 2),
    ('orphan_care', '恤孤', 'care for orphans', 3),
    ('disability_support', '助残', 'disability support', 4),
    ('community_governance', '社区治理', 'community governance', 5),
    ('culture', '文化', 'culture', 6),
    ('environment', '环保', 'environment', 7),
    ('emergency', '应急', 'emergency response', 8),
    ('health_care', '医疗保健', 'health care', 9),
    ('counselling', '心理疏导', 'psychological counselling', 10),
    ('other', '其他', 'other', 99);

CREATE TABLE need_target_groups (
    code text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]{0,31}$'),
    name_zh text NOT NULL,
    name_en text NOT NULL,
    position integer NOT NULL DEFAULT 0
);
INSERT INTO need_target_groups (code, name_zh, name_en, position) VALUES
    ('subsistence_allowance', '低保对象', 'subsistence allowance recipients', 1),
    ('extreme_poverty', '特困人员', 'people in extreme poverty', 2),
    ('empty_nest_elderly', '空巢老人', 'empty-nest elderly', 3),
    ('left_behind_children', '留守儿童', 'left-behind children', 4),
    ('left_behind_women', '留守妇女', 'left-behind women', 5),
    ('left_behind_elderly', '留守老人', 'left-behind elderly', 6),
    ('children_in_difficulty', '困境儿童', 'children in difficulty', 7),
    ('disabled', '残疾人', 'people with disabilities', 8),
    ('other', '其他', 'other', 99);

-- Whoever certifies service names its person in charge on proofs, and may require that a
-- manual record be approved by another credential than the one that entered it.
ALTER TABLE organisations
    ADD COLUMN person_in_charge text CHECK (length(person_in_charge) <= 100),
    ADD COLUMN maker_checker boolean NOT NULL DEFAULT false;

CREATE TABLE needs (
    id uuid PRIMARY KEY,
    book_code text NOT NULL REFERENCES books (code),
    organisation_id uuid NOT NULL REFERENCES organisations (id),
    community_id uuid REFERENCES organisations (id),
    category text NOT NULL REFERENCES service_categories (code),
    target_group text NOT NULL REFERENCES need_target_groups (code),
    description text NOT NULL CHECK (length(description) BETWEEN 1 AND 2000),
    urgency smallint NOT NULL CHECK (urgency BETWEEN 1 AND 4),
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'matched', 'met', 'closed')),
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX needs_open ON needs (book_code, urgency DESC, created_at) WHERE status = 'open';

CREATE TABLE projects (
    id uuid PRIMARY KEY,
    book_code text NOT NULL REFERENCES books (code),
    organisation_id uuid NOT NULL REFERENCES organisations (id),
    community_id uuid REFERENCES organisations (id),
    title text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    category text NOT NULL REFERENCES service_categories (code),
    place text NOT NULL CHECK (length(place) BETWEEN 1 AND 200),
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL CHECK (ends_at > starts_at),
    capacity integer NOT NULL CHECK (capacity > 0),
    signed_up integer NOT NULL DEFAULT 0,
    credit_policy text NOT NULL DEFAULT 'actual' CHECK (credit_policy IN ('actual', 'fixed')),
    fixed_minutes integer CHECK (fixed_minutes > 0),
    cap_minutes_per_day integer CHECK (cap_minutes_per_day > 0),
    status text NOT NULL DEFAULT 'published' CHECK (status IN ('published', 'closed')),
    -- Each project's check-in codes are MACs under its own key: a code cannot be forged, nor
    -- used for another project.
    checkin_key bytea NOT NULL CHECK (length(checkin_key) = 32),
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- The one guard of capacity under concurrent sign-ups.
    CHECK (signed_up BETWEEN 0 AND capacity),
    CHECK ((credit_policy = 'fixed') = (fixed_minutes IS NOT NULL))
);
CREATE INDEX projects_book ON projects (book_code, starts_at DESC);

CREATE TABLE project_needs (
    project_id uuid NOT NULL REFERENCES projects (id),
    need_id uuid NOT NULL REFERENCES needs (id),
    PRIMARY KEY (project_id, need_id)
);
CREATE INDEX project_needs_need ON project_needs (need_id);

CREATE TABLE signups (
    project_id uuid NOT NULL REFERENCES projects (id),
    member_id uuid NOT NULL REFERENCES members (id),
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'cancelled')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, member_id)
);
CREATE INDEX signups_member ON signups (member_id);

CREATE TABLE service_records (
    id uuid PRIMARY KEY,
    book_code text NOT NULL REFERENCES books (code),
    project_id uuid NOT NULL REFERENCES projects (id),
    organisation_id uuid NOT NULL REFERENCES organisations (id),
    member_id uuid NOT NULL REFERENCES members (id),
    evidence text NOT NULL CHECK (evidence IN ('checkin', 'manual')),
    attested_by text CHECK (length(attested_by) BETWEEN 1 AND 100),
    source text NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'import')),
    external_id text CHECK (length(external_id) BETWEEN 1 AND 128),
    started_at timestamptz NOT NULL,
    ended_at timestamptz,
    -- Minutes inside the project's window (or its fixed credit); what approval posts.
    credited_minutes integer CHECK (credited_minutes >= 0),
    service_day date,
    status text NOT NULL CHECK (status IN ('open', 'pending', 'approved', 'rejected', 'reversed')),
    entered_by uuid NOT NULL,
    approved_by uuid,
    approved_at timestamptz,
    tx_id uuid,
    rejected_by uuid,
    rejected_at timestamptz,
    reject_reason text,
    reversed_by uuid,
    reversed_at timestamptz,
    reversal_tx_id uuid,
    reversal_reason text,
    corrects_record_id uuid REFERENCES service_records (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (evidence = 'checkin' OR attested_by IS NOT NULL),
    -- A check-in withdrawn or rejected before its check-out has no end.
    CHECK (status IN ('open', 'rejected') OR (ended_at IS NOT NULL
                                              AND credited_minutes IS NOT NULL
                                              AND service_day IS NOT NULL)),
    CHECK (ended_at IS NULL OR ended_at > started_at),
    CHECK (status <> 'approved' OR tx_id IS NOT NULL),
    -- No member is credited twice for the same minutes, across every project.
    CONSTRAINT service_records_no_overlap EXCLUDE USING gist (
        member_id WITH =, tstzrange(started_at, ended_at, '[)') WITH &&
    ) WHERE (status IN ('pending', 'approved'))
);
CREATE UNIQUE INDEX service_records_one_open ON service_records (member_id)
    WHERE status = 'open';
CREATE UNIQUE INDEX service_records_external ON service_records (organisation_id, external_id)
    WHERE external_id IS NOT NULL;
CREATE INDEX service_records_member ON service_records (member_id, started_at);
CREATE INDEX service_records_project ON service_records (project_id, status);
CREATE INDEX service_records_org ON service_records (organisation_id, status, created_at);
CREATE INDEX service_records_book_day ON service_records (book_code, service_day)
    WHERE status = 'approved';

CREATE TABLE service_record_events (
    id bigserial PRIMARY KEY,
    record_id uuid NOT NULL REFERENCES service_records (id),
    event text NOT NULL,
    actor jsonb NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}',
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX service_record_events_record ON service_record_events (record_id, id);

CREATE TABLE service_disputes (
    id uuid PRIMARY KEY,
    record_id uuid NOT NULL REFERENCES service_records (id),
    member_id uuid NOT NULL REFERENCES members (id),
    organisation_id uuid NOT NULL REFERENCES organisations (id),
    reason text NOT NULL CHECK (length(reason) BETWEEN 1 AND 2000),
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'upheld', 'dismissed')),
    answer text CHECK (length(answer) BETWEEN 1 AND 2000),
    answered_by uuid,
    answered_at timestamptz,
    corrected_record_id uuid REFERENCES service_records (id),
    opened_by uuid NOT NULL,
    opened_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'open') = (answered_at IS NULL))
);
CREATE UNIQUE INDEX service_disputes_one_open ON service_disputes (record_id)
    WHERE status = 'open';
CREATE INDEX service_disputes_org ON service_disputes (organisation_id, status, opened_at);

CREATE SEQUENCE service_proof_seq;
CREATE TABLE service_proofs (
    id uuid PRIMARY KEY,
    number text NOT NULL UNIQUE,
    book_code text NOT NULL REFERENCES books (code),
    member_id uuid NOT NULL REFERENCES members (id),
    organisation_id uuid REFERENCES organisations (id),
    period_from date,
    period_to date,
    total_minutes integer NOT NULL,
    token text NOT NULL,
    issued_by uuid NOT NULL,
    issued_at timestamptz NOT NULL DEFAULT now()
);
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
    op.execute(f'GRANT SELECT ON service_categories, need_target_groups TO "{app_role}"')
    op.execute(
        "GRANT SELECT, INSERT, UPDATE ON needs, projects, project_needs, signups, "
        f'service_records, service_disputes TO "{app_role}"'
    )
    op.execute(f'GRANT DELETE ON project_needs TO "{app_role}"')
    op.execute(
        f'GRANT USAGE ON SEQUENCE service_proof_seq, service_record_events_id_seq TO "{app_role}"'
    )


def downgrade() -> None:
    op.execute(
        "DROP TABLE service_proofs, service_disputes, service_record_events, service_records, "
        "signups, project_needs, projects, needs, need_target_groups, service_categories"
    )
    op.execute("DROP SEQUENCE service_proof_seq")
    op.execute("ALTER TABLE organisations DROP COLUMN person_in_charge, DROP COLUMN maker_checker")
    op.execute("DROP EXTENSION IF EXISTS btree_gist")
