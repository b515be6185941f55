"""Running totals for the statistics, so that their cost follows the period asked for, not the
size of the book (issue 23; docs/performance.md "Growth").

- `journal_folds`: how far each book's journal has been folded into each kind of totals (the
  last `seq` folded) and in which time zone its days were cut. The totals and the position move
  in one transaction; a read sums the totals and folds the entries after the position itself,
  in one snapshot, so it never misses or double-counts an entry.
- `flow_day_totals`: the exchange statistics' flows per book, scope (`''` for the whole book, or
  an organisation's account owner `org:<uuid>`), local day, flow and asset (`''`: the row that
  counts the flow's entries).
- `service_credit_day_totals`: the journal's side of the service statistics per book, scope
  and service day: minutes credited as service and minutes their reversals took back.
- `service_record_months` and `service_record_members`: approved service records per book,
  organisation, project and member, per month and over all time, kept by a trigger in the
  transaction that changes a record, whichever path changes it. Distinct volunteers are
  counted from these rows (a sum cannot count them); a request without a period reads the
  second, whose size is the book's volunteers and projects, not its years.

All of them are derived and may be rebuilt; none is part of the journal.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from alembic import context, op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE TABLE journal_folds (
    book_code text NOT NULL REFERENCES books (code),
    name text NOT NULL CHECK (name IN ('flows', 'service_credits')),
    folded_seq bigint NOT NULL CHECK (folded_seq >= 0),
    timezone text NOT NULL,
    PRIMARY KEY (book_code, name)
);
CREATE TABLE flow_day_totals (
    book_code text NOT NULL REFERENCES books (code),
    scope text NOT NULL,
    day date NOT NULL,
    flow text NOT NULL,
    asset text NOT NULL,
    entries bigint NOT NULL,
    members_gave numeric NOT NULL,
    members_received numeric NOT NULL,
    others_gave numeric NOT NULL,
    PRIMARY KEY (book_code, scope, day, flow, asset)
);
CREATE TABLE service_credit_day_totals (
    book_code text NOT NULL REFERENCES books (code),
    scope text NOT NULL,
    day date NOT NULL,
    credited numeric NOT NULL,
    reversed numeric NOT NULL,
    PRIMARY KEY (book_code, scope, day)
);
CREATE TABLE service_record_months (
    book_code text NOT NULL REFERENCES books (code),
    organisation_id uuid NOT NULL,
    project_id uuid NOT NULL,
    member_id uuid NOT NULL,
    month date NOT NULL CHECK (extract(day FROM month) = 1),
    records bigint NOT NULL CHECK (records >= 0),
    minutes bigint NOT NULL,
    checkin_minutes bigint NOT NULL,
    manual_minutes bigint NOT NULL,
    PRIMARY KEY (book_code, month, organisation_id, project_id, member_id)
);
CREATE TABLE service_record_members (
    book_code text NOT NULL REFERENCES books (code),
    organisation_id uuid NOT NULL,
    project_id uuid NOT NULL,
    member_id uuid NOT NULL,
    records bigint NOT NULL CHECK (records >= 0),
    minutes bigint NOT NULL,
    checkin_minutes bigint NOT NULL,
    manual_minutes bigint NOT NULL,
    PRIMARY KEY (book_code, organisation_id, project_id, member_id)
);
"""

# One approved record's part in its month's row: added when a record becomes approved, taken
# away when it stops being approved (a correction reverses it), both when an approved record's
# counted columns change. A row that falls to zero records is removed. (Taking away is an
# UPDATE: an INSERT's CHECK applies to the row proposed, before ON CONFLICT sees the row there.)
TRIGGER = """
CREATE FUNCTION service_record_months_apply(r service_records, sign integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m date := date_trunc('month', r.service_day)::date;
    checkin bigint := CASE WHEN r.evidence = 'checkin' THEN r.credited_minutes ELSE 0 END;
    manual bigint := CASE WHEN r.evidence = 'manual' THEN r.credited_minutes ELSE 0 END;
BEGIN
    IF sign > 0 THEN
        INSERT INTO service_record_months AS t
            (book_code, organisation_id, project_id, member_id, month,
             records, minutes, checkin_minutes, manual_minutes)
        VALUES (r.book_code, r.organisation_id, r.project_id, r.member_id, m,
                1, r.credited_minutes, checkin, manual)
        ON CONFLICT (book_code, month, organisation_id, project_id, member_id) DO UPDATE
           SET records = t.records + 1,
               minutes = t.minutes + EXCLUDED.minutes,
               checkin_minutes = t.checkin_minutes + EXCLUDED.checkin_minutes,
               manual_minutes = t.manual_minutes + EXCLUDED.manual_minutes;
        INSERT INTO service_record_members AS t
            (book_code, organisation_id, project_id, member_id,
             records, minutes, checkin_minutes, manual_minutes)
        VALUES (r.book_code, r.organisation_id, r.project_id, r.member_id,
                1, r.credited_minutes, checkin, manual)
        ON CONFLICT (book_code, organisation_id, project_id, member_id) DO UPDATE
           SET records = t.records + 1,
               minutes = t.minutes + EXCLUDED.minutes,
               checkin_minutes = t.checkin_minutes + EXCLUDED.checkin_minutes,
               manual_minutes = t.manual_minutes + EXCLUDED.manual_minutes;
        RETURN;
    END IF;
    UPDATE service_record_months
       SET records = records - 1,
           minutes = minutes - r.credited_minutes,
           checkin_minutes = checkin_minutes - checkin,
           manual_minutes = manual_minutes - manual
     WHERE book_code = r.book_code AND month = m AND organisation_id = r.organisation_id
       AND project_id = r.project_id AND member_id = r.member_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'service_record_months has no row for approved record %', r.id;
    END IF;
    UPDATE service_record_members
       SET records = records - 1,
           minutes = minutes - r.credited_minutes,
           checkin_minutes = checkin_minutes - checkin,
           manual_minutes = manual_minutes - manual
     WHERE book_code = r.book_code AND organisation_id = r.organisation_id
       AND project_id = r.project_id AND member_id = r.member_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'service_record_members has no row for approved record %', r.id;
    END IF;
    DELETE FROM service_record_months
     WHERE book_code = r.book_code AND month = m AND organisation_id = r.organisation_id
       AND project_id = r.project_id AND member_id = r.member_id AND records = 0;
    DELETE FROM service_record_members
     WHERE book_code = r.book_code AND organisation_id = r.organisation_id
       AND project_id = r.project_id AND member_id = r.member_id AND records = 0;
END $$;

CREATE FUNCTION service_record_months_follow() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status = 'approved' THEN
        PERFORM service_record_months_apply(OLD, -1);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.status = 'approved' THEN
        PERFORM service_record_months_apply(NEW, 1);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER service_record_months_follow
    AFTER INSERT OR DELETE OR UPDATE OF status, book_code, organisation_id, project_id,
        member_id, service_day, credited_minutes, evidence
    ON service_records FOR EACH ROW EXECUTE FUNCTION service_record_months_follow();
"""

BACKFILL_MEMBERS = """
INSERT INTO service_record_members
SELECT book_code, organisation_id, project_id, member_id, count(*), sum(credited_minutes),
       coalesce(sum(credited_minutes) FILTER (WHERE evidence = 'checkin'), 0),
       coalesce(sum(credited_minutes) FILTER (WHERE evidence = 'manual'), 0)
  FROM service_records WHERE status = 'approved'
 GROUP BY 1, 2, 3, 4
"""
BACKFILL = """
INSERT INTO service_record_months
SELECT book_code, organisation_id, project_id, member_id,
       date_trunc('month', service_day)::date, count(*), sum(credited_minutes),
       coalesce(sum(credited_minutes) FILTER (WHERE evidence = 'checkin'), 0),
       coalesce(sum(credited_minutes) FILTER (WHERE evidence = 'manual'), 0)
  FROM service_records WHERE status = 'approved'
 GROUP BY 1, 2, 3, 4, 5
"""


def upgrade() -> None:
    app_role = context.config.attributes["app_role"]
    # One statement per call: the driver prepares each.
    for statement in (*SCHEMA.split(";\n"), *TRIGGER.split(";\n\n")):
        if statement.strip():
            op.execute(statement)
    op.execute(BACKFILL)
    op.execute(BACKFILL_MEMBERS)
    for table in ("journal_folds", "flow_day_totals", "service_credit_day_totals"):
        op.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO "{app_role}"')
    # Written by the trigger as the role that changes a record.
    for table in ("service_record_months", "service_record_members"):
        op.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO "{app_role}"')


def downgrade() -> None:
    op.execute("DROP TRIGGER service_record_months_follow ON service_records")
    op.execute("DROP FUNCTION service_record_months_follow()")
    op.execute("DROP FUNCTION service_record_months_apply(service_records, integer)")
    for table in (
        "service_record_members",
        "service_record_months",
        "service_credit_day_totals",
        "flow_day_totals",
        "journal_folds",
    ):
        op.execute(f"DROP TABLE {table}")
