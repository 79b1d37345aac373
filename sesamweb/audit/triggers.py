"""Database triggers that refuse UPDATE and DELETE of audit rows on every backend.

Created by migrations 0002 / 0003 and re-checked after every `migrate` (AuditConfig.ready
connects ensure_append_only_triggers to post_migrate): on SQLite a later migration that
rebuilds the table would otherwise drop them silently.

Only `manage.py flush` (which the test runner also uses) may still empty the table: our
`flush` command (management/commands/flush.py) opens `allow_flush()`, which SQLite's DELETE
trigger asks through the connection function sesam_audit_flushing() and PostgreSQL's
TRUNCATE trigger through the session setting sesamweb.audit_flush. Neither stops someone
who can drop triggers; the keyed chain and the checkpoints outside the database catch them.
A connection without the function (the sqlite3 shell) cannot delete rows at all.
"""
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import connections

_flushing = ContextVar("audit_flushing", default=False)

SQLITE = [
    """CREATE TRIGGER IF NOT EXISTS audit_event_no_update BEFORE UPDATE ON audit_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_event_no_delete BEFORE DELETE ON audit_auditevent
       WHEN NOT sesam_audit_flushing()
       BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END""",
]
POSTGRES = [
    """CREATE OR REPLACE FUNCTION audit_event_refuse_change() RETURNS trigger AS $$
       BEGIN
         IF TG_OP = 'TRUNCATE' AND current_setting('sesamweb.audit_flush', true) = 'on' THEN
           RETURN NULL;
         END IF;
         RAISE EXCEPTION 'audit log is append-only';
       END; $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS audit_event_no_update ON audit_auditevent",
    """CREATE TRIGGER audit_event_no_update BEFORE UPDATE OR DELETE ON audit_auditevent
       FOR EACH ROW EXECUTE FUNCTION audit_event_refuse_change()""",
    "DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_auditevent",
    """CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_auditevent
       FOR EACH STATEMENT EXECUTE FUNCTION audit_event_refuse_change()""",
]
STATEMENTS = {"sqlite": SQLITE, "postgresql": POSTGRES}


def register_sqlite_function(sender, connection, **kwargs):
    """connection_created: give each SQLite connection the function the DELETE trigger asks."""
    if connection.vendor == "sqlite":
        connection.connection.create_function("sesam_audit_flushing", 0, lambda: int(_flushing.get()))


@contextmanager
def allow_flush(using="default"):
    """Let `manage.py flush` empty the audit table (and nothing else in this block do more)."""
    connection = connections[using]
    token = _flushing.set(True)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET sesamweb.audit_flush = 'on'")
    try:
        yield
    finally:
        _flushing.reset(token)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("RESET sesamweb.audit_flush")


def ensure_append_only_triggers(using="default", **kwargs):
    connection = connections[using]
    if "audit_auditevent" not in connection.introspection.table_names():
        return  # migrating backwards, or not migrated yet
    with connection.cursor() as cursor:
        for statement in STATEMENTS.get(connection.vendor, []):
            cursor.execute(statement)
