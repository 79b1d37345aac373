import csv
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.urls import reverse

from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import record_event
from sesamweb.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def events(admin_user):
    made = [record_event(AuditAction.CREATE, target_type="xenpools.pool", target_id="1", target_repr="lab pool",
                         after={"name": "lab pool"}, actor=admin_user, source="10.0.0.1")]
    made.append(record_event(AuditAction.UPDATE, target_type="xenpools.pool", target_id="1", target_repr="lab pool",
                             before={"name": "lab pool"}, after={"name": "=lab"}, actor=admin_user, source="10.0.0.1",
                             message='=HYPERLINK("http://evil.example")'))
    made.append(record_event(AuditAction.JOB_START, target_type="backups.job", target_id="7", target_repr="nightly",
                             actor="oscar-operator", source="10.0.0.2"))
    return made


@pytest.fixture
def without_triggers():
    """An attacker with database access drops the append-only triggers first."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("DROP TRIGGER audit_event_no_update ON audit_auditevent")
        else:
            cursor.execute("DROP TRIGGER audit_event_no_update")
            cursor.execute("DROP TRIGGER audit_event_no_delete")


def test_verify_audit_accepts_an_intact_chain(events, capsys):
    call_command("verify_audit")
    assert "3 events verified" in capsys.readouterr().out


def test_verify_audit_names_a_modified_row(events, without_triggers):
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET actor_username = 'someone-else' WHERE id = %s", [events[1].pk])
    with pytest.raises(CommandError, match=rf"Edited: event #2 \(id {events[1].pk}\): its content does not match"):
        call_command("verify_audit")


def test_verify_audit_detects_a_deleted_row(events, without_triggers):
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [events[1].pk])
    with pytest.raises(CommandError, match=rf"Deleted: event #2: missing after id {events[0].pk} before id {events[2].pk}"):
        call_command("verify_audit")


def test_verify_audit_detects_reordered_rows(events, without_triggers):
    with connection.cursor() as cursor:  # swap the sequence numbers of two rows
        cursor.execute("UPDATE audit_auditevent SET sequence = 99 WHERE id = %s", [events[0].pk])
        cursor.execute("UPDATE audit_auditevent SET sequence = 1 WHERE id = %s", [events[1].pk])
        cursor.execute("UPDATE audit_auditevent SET sequence = 2 WHERE id = %s", [events[0].pk])
    with pytest.raises(CommandError, match=r"Reordered: event #1 .*written as event #2\n- Reordered: event #2 .*written as event #1"):
        call_command("verify_audit")


def test_the_audit_page_lists_and_filters_events(auditor_client, events):
    response = auditor_client.get(reverse("audit:event_list"))
    assert response.status_code == 200
    assert [e.pk for e in response.context["page_obj"]][:3] == [e.pk for e in reversed(events)]
    filtered = auditor_client.get(reverse("audit:event_list"), {"actor": "oscar-operator"})
    assert [e.action for e in filtered.context["page_obj"]] == [AuditAction.JOB_START]
    by_target = auditor_client.get(reverse("audit:event_list"), {"target": "lab pool", "action": "update"})
    assert [e.pk for e in by_target.context["page_obj"]] == [events[1].pk]


def test_the_detail_page_shows_the_diff(auditor_client, events):
    response = auditor_client.get(reverse("audit:event_detail", args=[events[1].pk]))
    assert response.status_code == 200
    assert response.context["event"].diff == [("name", "lab pool", "=lab")]
    assert b"diff-old" in response.content


def test_the_verify_button_reports_the_chain_state(auditor_client, events, without_triggers):
    response = auditor_client.post(reverse("audit:verify"))
    assert f"Audit chain intact: {AuditEvent.objects.count()} events verified.".encode() in response.content
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [events[0].pk])
    broken = auditor_client.post(reverse("audit:verify")).content.decode()
    assert "Audit chain broken: 1 break found" in broken
    assert 'data-break-kind="deleted"' in broken and f"event #{events[0].sequence}" in broken


def test_operators_cannot_read_the_audit_log(operator_client, api_client, events):
    assert operator_client.get(reverse("audit:event_list")).status_code == 403
    assert operator_client.get(reverse("audit:export")).status_code == 403
    assert api_client("operator").get("/api/audit-events/").status_code == 403


def test_the_csv_export_streams_the_filtered_events(admin_client, events):
    response = admin_client.get(reverse("audit:export"), {"target": "lab pool"})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:5] == ["sequence", "time", "user", "source", "action"]
    assert [row[0] for row in rows[1:]] == [str(events[0].sequence), str(events[1].sequence)]
    assert rows[2][9] == "'=HYPERLINK(\"http://evil.example\")"  # formula-looking cells stay text
    assert AuditEvent.objects.filter(action=AuditAction.AUDIT_EXPORT).exists()  # exporting is itself audited


def test_the_api_lists_events_read_only(api_client, events):
    auditor = api_client("auditor")
    response = auditor.get("/api/audit-events/", {"action": "update"})
    assert response.status_code == 200
    (event,) = response.data["results"]
    assert event["diff"] == [{"field": "name", "before": "lab pool", "after": "=lab"}]
    assert auditor.delete(f"/api/audit-events/{event['id']}/").status_code in (403, 405)
    assert api_client("administrator").delete(f"/api/audit-events/{event['id']}/").status_code == 405


def test_a_bad_filter_value_is_explained_not_a_crash(auditor_client, events):
    response = auditor_client.get(reverse("audit:event_list"), {"since": "yesterday-ish"})
    assert response.status_code == 200
    assert b"Enter a valid date." in response.content


def test_the_audit_page_needs_few_queries_however_long_the_log(auditor_client, django_assert_max_num_queries):
    for i in range(300):
        record_event(AuditAction.UPDATE, target_type="xenpools.vm", target_id=str(i), before={"n": i}, after={"n": i + 1})
    with django_assert_max_num_queries(10):
        response = auditor_client.get(reverse("audit:event_list"), {"page": 3})
    assert len(response.context["page_obj"]) == 50
