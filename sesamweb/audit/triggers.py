"""Database triggers that refuse UPDATE (and, on PostgreSQL, DELETE) of audit rows.

Created by migration 0002 and re-checked after every `migrate` (AuditConfig.ready connects
ensure_append_only_triggers to post_migrate): on SQLite a later migration that rebuilds the
table would otherwise drop them silently.

SQLite gets no DELETE trigger: Django's `flush` (and the test runner) empties tables with
DELETE there, while PostgreSQL uses TRUNCATE, which row triggers do not see. A deleted row
is still caught by the hash chain (verify_audit).
"""
from django.db import connections

SQLITE = [
    """CREATE TRIGGER IF NOT EXISTS audit_event_no_update BEFORE UPDATE ON audit_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END""",
]
POSTGRES = [
    """CREATE OR REPLACE FUNCTION audit_event_refuse_change() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'audit log is append-only'; END; $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS audit_event_no_update ON audit_auditevent",
    """CREATE TRIGGER audit_event_no_update BEFORE UPDATE OR DELETE ON audit_auditevent
       FOR EACH ROW EXECUTE FUNCTION audit_event_refuse_change()""",
]
STATEMENTS = {"sqlite": SQLITE, "postgresql": POSTGRES}


def ensure_append_only_triggers(using="default", **kwargs):
    connection = connections[using]
    if "audit_auditevent" not in connection.introspection.table_names():
        return  # migrating backwards, or not migrated yet
    with connection.cursor() as cursor:
        for statement in STATEMENTS.get(connection.vendor, []):
            cursor.execute(statement)
