import hashlib
import hmac
import json
import socket

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory

from sesamweb.audit.chain import verify_chain
from sesamweb.audit.choices import AuditAction, AuditOutcome
from sesamweb.audit.context import acting_request
from sesamweb.audit.keys import chain_key
from sesamweb.audit.log import acting_as, model_snapshot, record_event
from sesamweb.audit.models import GENESIS_HASH, AppendOnlyError, AuditEvent

pytestmark = pytest.mark.django_db


def test_it_records_the_target_actor_and_source_of_an_explicit_event(admin_user):
    event = record_event(AuditAction.UPDATE, target=admin_user, before={"email": "a@x"}, after={"email": "b@x"},
                         actor=admin_user, source="10.0.0.9", message="changed")
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.target_type, stored.target_id, stored.target_repr) == ("auth.user", str(admin_user.pk), "alice-admin")
    assert (stored.actor_id, stored.actor_username, stored.source) == (admin_user.pk, "alice-admin", "10.0.0.9")
    assert stored.diff == [("email", "a@x", "b@x")]
    assert stored.outcome == AuditOutcome.SUCCESS


def test_it_takes_the_actor_and_address_from_the_current_request(operator_user):
    request = RequestFactory().post("/x", REMOTE_ADDR="192.0.2.7")
    request.user = operator_user
    token = acting_request.set(request)
    try:
        event = record_event(AuditAction.JOB_START, target_type="backups.job", target_id="4", target_repr="nightly")
    finally:
        acting_request.reset(token)
    assert (event.actor_username, event.source) == ("oscar-operator", "192.0.2.7")


def test_acting_as_attributes_events_of_commands_and_workers(admin_user):
    with acting_as(admin_user, source="cli"):
        event = record_event(AuditAction.SYNC, target_type="xenpools.pool", target_id="1")
    with acting_as(None, source="worker"):
        system_event = record_event(AuditAction.BACKUP, target_type="xenpools.vm", target_id="9")
    assert (event.actor_username, event.source) == ("alice-admin", "cli")
    assert (system_event.actor_id, system_event.actor_username, system_event.source) == (None, "", "worker")


def test_outside_any_context_the_system_is_the_actor():
    event = record_event(AuditAction.GC, target_type="backups.datastore", target_id="1")
    assert (event.actor_username, event.source) == ("", "system")


def test_events_form_a_hash_chain():
    first = record_event(AuditAction.CREATE, target_type="t", target_id="1")
    second = record_event(AuditAction.DELETE, target_type="t", target_id="1")
    assert (first.sequence, first.prev_hash) == (1, GENESIS_HASH)
    assert (second.sequence, second.prev_hash) == (2, first.hash)
    assert second.compute_hash() == AuditEvent.objects.get(pk=second.pk).hash
    # keyed: an HMAC with the audit key, which nobody can recompute from the database alone
    assert second.hash == hmac.new(chain_key(), (first.hash + second.canonical_json()).encode(), hashlib.sha256).hexdigest()
    assert second.hash != second.compute_plain_hash()
    assert verify_chain().ok


def test_the_hash_still_matches_after_a_round_trip_through_the_database(admin_user):
    event = record_event(AuditAction.UPDATE, target=admin_user, after=model_snapshot(admin_user),
                         message="ünïcode ✓", before={"n": 1.5, "nested": {"b": [1, None, True]}})
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.compute_hash() == stored.hash


def test_model_snapshot_masks_secrets_and_omits_passwords(admin_user):
    snapshot = model_snapshot(admin_user)
    assert "password" not in snapshot
    assert snapshot["username"] == "alice-admin"
    json.dumps(snapshot)  # JSON-able: dates became strings
    from sesamweb.accounts.models import ApiToken
    token, _ = ApiToken.issue(admin_user, "t")
    assert model_snapshot(token)["key_hash"] == "<set>"


def test_the_model_refuses_updates_and_deletes():
    event = record_event(AuditAction.CREATE, target_type="t", target_id="1")
    event.message = "rewritten"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(message="x")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()


def test_the_database_refuses_a_raw_update():
    event = record_event(AuditAction.CREATE, target_type="t", target_id="1")
    with pytest.raises(DatabaseError, match="append-only"):
        with connection.cursor() as cursor:
            cursor.execute("UPDATE audit_auditevent SET message = 'x' WHERE id = %s", [event.pk])


def test_it_forwards_each_event_to_syslog_as_an_rfc5424_datagram(settings, django_capture_on_commit_callbacks):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    settings.SESAM_SYSLOG_ADDRESS = "127.0.0.1:%d" % receiver.getsockname()[1]
    try:
        with django_capture_on_commit_callbacks(execute=True):  # sent once the event is committed
            event = record_event(AuditAction.LOGIN_FAILED, actor="mallory", source="198.51.100.1",
                                 outcome=AuditOutcome.FAILURE, message='Failed sign-in as "mallory"')
        datagram = receiver.recv(65535).decode()
    finally:
        receiver.close()
    header, _, rest = datagram.partition(" [")
    priority_version, timestamp, _host, app, _pid, msgid = header.split(" ")
    assert priority_version == "<108>1"  # facility 13 (log audit) * 8 + severity 4 (warning), version 1
    assert timestamp.endswith("Z") and app == "sesamweb" and msgid == "login_failed"
    assert f'seq="{event.sequence}"' in rest and 'actor="mallory"' in rest and 'source="198.51.100.1"' in rest
    assert rest.endswith('Failed sign-in as "mallory"')


def test_migrate_puts_back_a_missing_trigger():
    from django.core.management import call_command

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("DROP TRIGGER audit_event_no_update ON audit_auditevent")
        else:
            cursor.execute("DROP TRIGGER audit_event_no_update")
            cursor.execute("DROP TRIGGER audit_event_no_delete")
    call_command("migrate", verbosity=0)
    event = record_event(AuditAction.CREATE, target_type="t", target_id="1")
    for statement in ("UPDATE audit_auditevent SET message = 'x' WHERE id = %s", "DELETE FROM audit_auditevent WHERE id = %s"):
        with pytest.raises(DatabaseError, match="append-only"):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(statement, [event.pk])
