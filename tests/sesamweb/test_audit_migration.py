"""Upgrading a console whose audit log was written with the unkeyed SHA-256 chain
(migration audit 0003): the old rows keep verifying, and are anchored by a keyed event."""
import hashlib
import json

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from sesamweb.audit.chain import BreakKind, verify_chain
from sesamweb.audit.models import GENESIS_HASH, HMAC_SHA256, LEGACY_SHA256, AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)
BEFORE, AFTER = "0002_append_only_triggers", "0003_keyed_chain"


def old_code_hash(prev_hash, fields):
    """AuditEvent.compute_hash as it was before the key (commit c453ae0)."""
    content = dict(fields, created=fields["created"].isoformat(timespec="microseconds"))
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


@pytest.fixture
def legacy_log():
    """Three events written by the console before the chain was keyed, then the upgrade."""
    call_command("migrate", "audit", BEFORE, verbosity=0)
    try:
        OldAuditEvent = MigrationExecutor(connection).loader.project_state(("audit", BEFORE)).apps.get_model(
            "audit", "AuditEvent")
        prev = GENESIS_HASH
        for sequence in (1, 2, 3):
            fields = dict(sequence=sequence, created=timezone.now(), actor_id=None, actor_username="alice-admin",
                          source="10.0.0.1", action="update", target_type="xenpools.pool", target_id="1",
                          target_repr="lab pool", before={"n": sequence}, after={"n": sequence + 1},
                          message="", outcome="success")
            row = OldAuditEvent.objects.create(prev_hash=prev, hash=old_code_hash(prev, fields), **fields)
            prev = row.hash
    finally:
        call_command("migrate", "audit", AFTER, verbosity=0)
        # Then to the newest, as the database was: later tests (manage.py doctor) check it.
        call_command("migrate", "audit", verbosity=0)
    return list(AuditEvent.objects.order_by("sequence"))


def test_rows_from_before_the_key_still_verify_and_are_anchored(legacy_log):
    assert [e.chain_version for e in legacy_log] == [LEGACY_SHA256] * 3 + [HMAC_SHA256]
    anchor = legacy_log[3]
    assert (anchor.sequence, anchor.prev_hash) == (4, legacy_log[2].hash)
    assert "anchors the 3 earlier, unkeyed events" in anchor.message
    report = verify_chain()
    assert report.ok and report.checked == 4


def test_an_old_row_edited_and_re_hashed_breaks_the_keyed_anchor(legacy_log):
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER audit_event_no_update" + (" ON audit_auditevent" if connection.vendor == "postgresql" else ""))
    old = legacy_log[2]
    old.actor_username = "mallory"
    with connection.cursor() as cursor:  # a consistent unkeyed row: only the keyed anchor can tell
        cursor.execute("UPDATE audit_auditevent SET actor_username = 'mallory', hash = %s WHERE id = %s",
                       [old.compute_hash(), old.pk])
    (rewritten,) = verify_chain().breaks
    assert (rewritten.kind, rewritten.sequences, rewritten.ids) == (BreakKind.REHASHED, [4], [legacy_log[3].pk])
