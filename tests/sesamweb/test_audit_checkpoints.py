"""Signed checkpoints of the audit chain's head, written outside the database at intervals
(sesamweb/audit/checkpoints.py): the data directory, syslog, and each local data store."""
import json
import socket
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from backups.choices import StoreKind
from backups.models import DataStore
from sesamweb.audit.chain import BreakKind, verify_chain
from sesamweb.audit.checkpoints import Checkpoint, read_checkpoint, write_checkpoint
from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import record_event

pytestmark = pytest.mark.django_db


def record(n, committed):
    with committed(execute=True):  # checkpoints are written once the event is committed
        return [record_event(AuditAction.UPDATE, target_type="t", target_id=str(i)) for i in range(n)]


@pytest.fixture
def checkpoint_file(audit_checkpoint_dir):
    return audit_checkpoint_dir / "audit-checkpoint.json"


def test_a_checkpoint_is_written_every_n_events(settings, checkpoint_file, django_capture_on_commit_callbacks):
    settings.SESAM_AUDIT_CHECKPOINT_EVERY, settings.SESAM_AUDIT_CHECKPOINT_MINUTES = 5, 60
    events = record(1, django_capture_on_commit_callbacks)  # none yet: the first event writes one
    assert read_checkpoint(checkpoint_file).last_sequence == 1
    events += record(3, django_capture_on_commit_callbacks)
    assert read_checkpoint(checkpoint_file).last_sequence == 1  # #2-#4: the last one is recent
    events += record(1, django_capture_on_commit_callbacks)
    checkpoint = read_checkpoint(checkpoint_file)
    assert (checkpoint.last_sequence, checkpoint.last_id, checkpoint.last_hash, checkpoint.count) == (
        5, events[4].pk, events[4].hash, 5)
    assert checkpoint.is_authentic()
    assert set(json.loads(checkpoint_file.read_text())) == {
        "format", "last_id", "last_sequence", "last_hash", "count", "time", "mac"}


def test_a_checkpoint_is_written_when_the_last_one_is_older_than_m_minutes(settings, checkpoint_file,
                                                                           django_capture_on_commit_callbacks):
    settings.SESAM_AUDIT_CHECKPOINT_EVERY, settings.SESAM_AUDIT_CHECKPOINT_MINUTES = 1000, 30
    record(2, django_capture_on_commit_callbacks)
    old = read_checkpoint(checkpoint_file)
    stale = Checkpoint(old.last_id, old.last_sequence, old.last_hash, old.count,
                       (timezone.now() - timedelta(minutes=31)).isoformat(timespec="seconds")).signed()
    checkpoint_file.write_text(stale.to_json())
    record(1, django_capture_on_commit_callbacks)
    assert read_checkpoint(checkpoint_file).last_sequence == 3


def test_a_changed_checkpoint_fails_its_signature(checkpoint_file, django_capture_on_commit_callbacks):
    record(2, django_capture_on_commit_callbacks)
    checkpoint = read_checkpoint(checkpoint_file)
    assert checkpoint.is_authentic()
    assert not Checkpoint(checkpoint.last_id, 1, checkpoint.last_hash, 1, checkpoint.time, checkpoint.mac).is_authentic()


def test_a_checkpoint_the_log_no_longer_matches_is_kept_as_evidence(checkpoint_file, django_capture_on_commit_callbacks):
    record(3, django_capture_on_commit_callbacks)
    write_checkpoint()
    with connection.cursor() as cursor:  # the newest row is dropped, then the console carries on
        cursor.execute("DROP TRIGGER audit_event_no_delete" if connection.vendor == "sqlite"
                       else "DROP TRIGGER audit_event_no_update ON audit_auditevent")
        cursor.execute("DELETE FROM audit_auditevent WHERE sequence = 3")
    record(2, django_capture_on_commit_callbacks)
    write_checkpoint()
    assert read_checkpoint(checkpoint_file).last_sequence == 3  # not replaced by #4
    assert [b.kind for b in verify_chain().breaks] == [BreakKind.TRUNCATED]  # #3 is another row now


def test_checkpoints_go_to_syslog_when_it_is_configured(settings, django_capture_on_commit_callbacks):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    settings.SESAM_SYSLOG_ADDRESS = "127.0.0.1:%d" % receiver.getsockname()[1]
    try:
        (event,) = record(1, django_capture_on_commit_callbacks)
        datagrams = [receiver.recv(65535).decode(), receiver.recv(65535).decode()]  # the event, then the checkpoint
    finally:
        receiver.close()
    checkpoint_line = datagrams[1]
    assert " sesamweb " in checkpoint_line and " audit_checkpoint [auditCheckpoint@32473 " in checkpoint_line
    assert f'seq="{event.sequence}"' in checkpoint_line and f'hash="{event.hash}"' in checkpoint_line
    assert f'id="{event.pk}"' in checkpoint_line and 'count="1"' in checkpoint_line
    mac = checkpoint_line.split('mac="')[1].split('"')[0]
    time = checkpoint_line.split('time="')[1].split('"')[0]
    assert Checkpoint(event.pk, event.sequence, event.hash, 1, time, mac).is_authentic()


def test_each_local_data_store_gets_a_copy(tmp_path, django_capture_on_commit_callbacks):
    stores = [DataStore.objects.create(name=f"store {n}", kind=StoreKind.LOCAL, path=str(tmp_path / f"s{n}"))
              for n in range(2)]
    (tmp_path / "s0").mkdir()
    (tmp_path / "s1").mkdir()
    DataStore.objects.create(name="gone", kind=StoreKind.LOCAL, path=str(tmp_path / "unmounted"))
    (event,) = record(1, django_capture_on_commit_callbacks)
    for store in stores:
        copy = read_checkpoint(f"{store.path}/audit-checkpoint.json")
        assert (copy.last_sequence, copy.last_hash) == (event.sequence, event.hash) and copy.is_authentic()
    assert not (tmp_path / "unmounted").exists()


def test_the_checkpoint_command_writes_one_now(checkpoint_file, capsys):
    call_command("audit_checkpoint")
    assert "empty" in capsys.readouterr().out and not checkpoint_file.exists()
    event = record_event(AuditAction.UPDATE, target_type="t", target_id="1")
    call_command("audit_checkpoint")
    assert f"up to #{event.sequence}" in capsys.readouterr().out
    assert read_checkpoint(checkpoint_file).last_hash == event.hash
