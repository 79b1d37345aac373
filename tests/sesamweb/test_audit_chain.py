"""Tampering with the audit log as someone with write access to the database but not to the
secrets file: every change is found, classified and listed (sesamweb/audit/chain.py)."""
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from sesamweb.audit.chain import BreakKind, verify_chain
from sesamweb.audit.checkpoints import write_checkpoint
from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import record_event
from sesamweb.audit.models import HMAC_SHA256, LEGACY_SHA256, AuditEvent, plain_hash

pytestmark = pytest.mark.django_db


@pytest.fixture
def events():
    return [record_event(AuditAction.UPDATE, target_type="xenpools.pool", target_id=str(n), target_repr=f"pool {n}",
                         before={"n": n}, after={"n": n + 1}, actor="alice-admin", source="10.0.0.1")
            for n in range(1, 7)]


@pytest.fixture
def attacker():
    """Raw SQL against the database, append-only triggers dropped first."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("DROP TRIGGER audit_event_no_update ON audit_auditevent")
        else:
            cursor.execute("DROP TRIGGER audit_event_no_update")
            cursor.execute("DROP TRIGGER audit_event_no_delete")

    def sql(statement, params=()):
        with connection.cursor() as cursor:
            cursor.execute(statement, list(params))
    return sql


def breaks(report, kind):
    return [b for b in report.breaks if b.kind == kind]


def rehash_without_the_key(sql, *, downgrade=False):
    """What the code itself offers someone without the key: plain SHA-256 over each row, the
    links rewritten from the first row on (optionally marking the rows as legacy ones)."""
    prev = "0" * 64
    for event in AuditEvent.objects.order_by("sequence"):
        event.prev_hash = prev
        if downgrade:
            event.chain_version = LEGACY_SHA256
        new_hash = plain_hash(prev, event.canonical_json())
        sql("UPDATE audit_auditevent SET prev_hash = %s, hash = %s, chain_version = %s WHERE id = %s",
            [prev, new_hash, event.chain_version, event.pk])
        prev = new_hash


def test_an_untouched_log_verifies(events):
    report = verify_chain()
    assert report.ok and report.checked == 6 and report.breaks == []
    assert all(e.chain_version == HMAC_SHA256 for e in AuditEvent.objects.all())


def test_rows_are_keyed_with_a_secret_outside_the_database(events, settings):
    settings.SESAM_AUDIT_KEY = "another key"
    report = verify_chain()  # the stored HMACs were made with the key derived from SESAM_SECRET_KEY
    assert {b.kind for b in report.breaks} == {BreakKind.EDITED}
    assert report.breaks[0].ids == [e.pk for e in events]


def test_an_edited_row_is_named(events, attacker):
    attacker("UPDATE audit_auditevent SET actor_username = 'mallory' WHERE id = %s", [events[2].pk])
    report = verify_chain()
    (edited,) = report.breaks
    assert (edited.kind, edited.sequences, edited.ids) == (BreakKind.EDITED, [3], [events[2].pk])


def test_a_deleted_row_is_named(events, attacker):
    attacker("DELETE FROM audit_auditevent WHERE id = %s", [events[3].pk])
    (deleted,) = verify_chain().breaks
    assert (deleted.kind, deleted.sequences) == (BreakKind.DELETED, [4])
    assert f"after id {events[2].pk} before id {events[4].pk}" in deleted.detail


def test_a_deleted_row_with_the_later_rows_renumbered_is_still_found(events, attacker):
    attacker("DELETE FROM audit_auditevent WHERE id = %s", [events[3].pk])
    for event in events[4:]:
        attacker("UPDATE audit_auditevent SET sequence = sequence - 1 WHERE id = %s", [event.pk])
    report = verify_chain()
    assert [(b.kind, b.sequences, b.ids, b.detail) for b in report.breaks] == [
        (BreakKind.REORDERED, [4], [events[4].pk], "written as event #5"),  # the sequence is signed
        (BreakKind.DELETED, [4], [], f"the event written before id {events[4].pk} is gone (its previous-hash points to no row)"),
        (BreakKind.REORDERED, [5], [events[5].pk], "written as event #6"),
    ]


def test_two_swapped_rows_are_reported_as_reordered(events, attacker):
    attacker("UPDATE audit_auditevent SET sequence = 99 WHERE id = %s", [events[1].pk])
    attacker("UPDATE audit_auditevent SET sequence = 2 WHERE id = %s", [events[4].pk])
    attacker("UPDATE audit_auditevent SET sequence = 5 WHERE id = %s", [events[1].pk])
    report = verify_chain()
    assert report.kinds() == {BreakKind.REORDERED}
    assert [(b.sequences, b.ids, b.detail) for b in report.breaks] == [
        ([2], [events[4].pk], "written as event #5"),
        ([5], [events[1].pk], "written as event #2"),
    ]


def test_rows_re_hashed_without_the_key_after_an_edit_are_found(events, attacker):
    attacker("UPDATE audit_auditevent SET message = 'nothing happened' WHERE id = %s", [events[2].pk])
    rehash_without_the_key(attacker)
    report = verify_chain()
    (rehashed,) = report.breaks
    assert rehashed.kind == BreakKind.REHASHED
    assert rehashed.ids == [e.pk for e in events]  # every row now carries a plain SHA-256
    assert "without the key" in rehashed.detail


def test_a_log_re_hashed_as_legacy_unkeyed_rows_is_found(events, attacker):
    attacker("UPDATE audit_auditevent SET message = 'nothing happened' WHERE id = %s", [events[2].pk])
    rehash_without_the_key(attacker, downgrade=True)
    report = verify_chain()
    assert report.kinds() == {BreakKind.REHASHED}
    assert "no keyed event vouches for them" in report.breaks[-1].detail


def test_downgrading_the_rows_after_a_keyed_one_is_found(events, attacker):
    attacker("UPDATE audit_auditevent SET chain_version = 1 WHERE id = %s", [events[4].pk])
    event = AuditEvent.objects.get(pk=events[4].pk)
    attacker("UPDATE audit_auditevent SET hash = %s WHERE id = %s", [event.compute_plain_hash(), event.pk])
    report = verify_chain()
    assert (report.breaks[0].kind, report.breaks[0].ids) == (BreakKind.REHASHED, [events[4].pk])


def test_truncating_the_newest_rows_is_found_through_the_checkpoint(events, attacker):
    checkpoint = write_checkpoint()
    assert (checkpoint.last_sequence, checkpoint.count, checkpoint.last_id) == (6, 6, events[5].pk)
    attacker("DELETE FROM audit_auditevent WHERE id IN (%s, %s)", [events[4].pk, events[5].pk])
    report = verify_chain()
    (truncated,) = report.breaks
    assert (truncated.kind, truncated.sequences) == (BreakKind.TRUNCATED, [5, 6])
    assert "the log ends at #4" in truncated.detail
    with pytest.raises(CommandError, match=r"Truncated: events #5-#6"):
        call_command("verify_audit")


def test_truncating_then_recording_new_events_is_found_too(events, attacker):
    write_checkpoint()
    attacker("DELETE FROM audit_auditevent WHERE id IN (%s, %s)", [events[4].pk, events[5].pk])
    for n in range(3):
        record_event(AuditAction.UPDATE, target_type="t", target_id=str(n))  # #5, #6, #7 anew
    (mismatch,) = verify_chain().breaks
    assert (mismatch.kind, mismatch.sequences) == (BreakKind.TRUNCATED, [6])
    assert "cut back and new events written since" in mismatch.detail


def test_a_forged_checkpoint_is_reported(events, audit_checkpoint_dir):
    write_checkpoint()
    path = audit_checkpoint_dir / "audit-checkpoint.json"
    path.write_text(path.read_text().replace('"last_sequence": 6', '"last_sequence": 3'))
    (forged,) = verify_chain().breaks
    assert forged.kind == BreakKind.CHECKPOINT and "signature is wrong" in forged.detail


def test_verification_lists_every_break_not_only_the_first(events, attacker):
    write_checkpoint()
    attacker("UPDATE audit_auditevent SET target_repr = 'other pool' WHERE id = %s", [events[0].pk])
    attacker("DELETE FROM audit_auditevent WHERE id = %s", [events[2].pk])
    attacker("DELETE FROM audit_auditevent WHERE id = %s", [events[5].pk])
    report = verify_chain()
    assert [(b.kind, b.sequences) for b in report.breaks] == [
        (BreakKind.EDITED, [1]), (BreakKind.DELETED, [3]), (BreakKind.TRUNCATED, [6]),
    ]
    with pytest.raises(CommandError) as raised:
        call_command("verify_audit")
    lines = str(raised.value).splitlines()
    assert lines[0] == "Audit chain broken: 3 breaks found in 4 events."
    assert lines[1] == f"- Edited: event #1 (id {events[0].pk}): its content does not match its hash"
    assert lines[2].startswith("- Deleted: event #3: missing") and lines[3].startswith("- Truncated: event #6:")


def test_verify_audit_also_compares_with_a_copy_of_the_checkpoint(events, attacker, audit_checkpoint_dir, tmp_path):
    write_checkpoint()
    copy = tmp_path / "store-copy.json"
    (audit_checkpoint_dir / "audit-checkpoint.json").rename(copy)  # the data directory's copy was removed too
    attacker("DELETE FROM audit_auditevent WHERE id = %s", [events[5].pk])
    call_command("verify_audit")  # nothing left to compare with: the shorter chain is valid on its own
    with pytest.raises(CommandError, match="Truncated: event #6"):
        call_command("verify_audit", checkpoint=[str(copy)])


# --- append-only in the database ---------------------------------------------------------------
def test_the_database_refuses_a_raw_delete(events):
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [events[5].pk])
    assert AuditEvent.objects.count() == 6


def test_the_database_refuses_to_empty_the_table(events):
    statement = "TRUNCATE audit_auditevent" if connection.vendor == "postgresql" else "DELETE FROM audit_auditevent"
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
    assert AuditEvent.objects.count() == 6


def test_manage_py_flush_may_still_empty_it(events, audit_checkpoint_dir):
    write_checkpoint()
    call_command("flush", interactive=False, verbosity=0)
    assert AuditEvent.objects.count() == 0
    # the checkpoint of the log emptied on purpose is kept aside, not held against the new log
    assert [p.name.startswith("audit-checkpoint.flushed-") for p in audit_checkpoint_dir.iterdir()] == [True]
    record_event(AuditAction.CREATE, target_type="t", target_id="1")
    assert verify_chain().ok
    with pytest.raises(DatabaseError, match="append-only"):  # and only while it runs
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DELETE FROM audit_auditevent")
