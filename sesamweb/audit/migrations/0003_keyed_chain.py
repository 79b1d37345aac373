"""Key the audit chain (HMAC-SHA256, chain_version 2) and refuse DELETE on SQLite too.

Rows already written keep their plain SHA-256 (chain_version 1). If there are any, one keyed
event is appended at once: its HMAC covers the last of them, and so, link by link, all of
them; an unkeyed row after a keyed one, or a log that ends with unkeyed rows, is then a sign
of re-hashing without the key (chain.verify_chain).
"""
from django.db import migrations, models
from django.utils import timezone

SQLITE_UP = [
    """CREATE TRIGGER IF NOT EXISTS audit_event_no_update BEFORE UPDATE ON audit_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_event_no_delete BEFORE DELETE ON audit_auditevent
       WHEN NOT sesam_audit_flushing()
       BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END""",
]
SQLITE_DOWN = ["DROP TRIGGER IF EXISTS audit_event_no_delete"]
POSTGRES_UP = [
    """CREATE OR REPLACE FUNCTION audit_event_refuse_change() RETURNS trigger AS $$
       BEGIN
         IF TG_OP = 'TRUNCATE' AND current_setting('sesamweb.audit_flush', true) = 'on' THEN
           RETURN NULL;
         END IF;
         RAISE EXCEPTION 'audit log is append-only';
       END; $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_auditevent",
    """CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_auditevent
       FOR EACH STATEMENT EXECUTE FUNCTION audit_event_refuse_change()""",
]
POSTGRES_DOWN = ["DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_auditevent"]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)
    return run


def anchor_unkeyed_rows(apps, schema_editor):
    from sesamweb.audit.models import HMAC_SHA256, row_hash

    AuditEvent = apps.get_model("audit", "AuditEvent")
    head = AuditEvent.objects.using(schema_editor.connection.alias).order_by("-sequence").first()
    if head is None:
        return  # a new install: every row will be keyed
    event = AuditEvent(
        sequence=head.sequence + 1, prev_hash=head.hash, created=timezone.now(), actor_username="",
        source="system", action="update", target_type="audit.auditevent", target_id="",
        target_repr="audit chain", before={"chain_version": 1}, after={"chain_version": HMAC_SHA256},
        message=(f"Audit chain keyed with HMAC-SHA256 from event #{head.sequence + 1} on; "
                 f"this event anchors the {head.sequence} earlier, unkeyed events."),
        outcome="success", chain_version=HMAC_SHA256,
    )
    fields = {name: getattr(event, name) for name in (
        "sequence", "created", "actor_id", "actor_username", "source", "action", "target_type",
        "target_id", "target_repr", "before", "after", "message", "outcome")}
    event.hash = row_hash(fields, HMAC_SHA256, event.prev_hash)
    event.save(using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_triggers")]
    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="chain_version",
            field=models.PositiveSmallIntegerField(default=1, editable=False),
            preserve_default=False,
        ),
        migrations.RunPython(anchor_unkeyed_rows, migrations.RunPython.noop),
        migrations.RunPython(
            _run({"sqlite": SQLITE_UP, "postgresql": POSTGRES_UP}),
            _run({"sqlite": SQLITE_DOWN, "postgresql": POSTGRES_DOWN}),
        ),
    ]
