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
    assert [e.pk for e in response.context["page"]][:3] == [e.pk for e in reversed(events)]
    filtered = auditor_client.get(reverse("audit:event_list"), {"actor": "oscar-operator"})
    assert [e.action for e in filtered.context["page"]] == [AuditAction.JOB_START]
    by_target = auditor_client.get(reverse("audit:event_list"), {"target": "lab pool", "action": "update"})
    assert [e.pk for e in by_target.context["page"]] == [events[1].pk]


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


def _log(count, **fields):
    """`count` events quickly: record_event per row would take seconds for thousands."""
    from sesamweb.audit.models import CHAIN_VERSION, GENESIS_HASH
    from django.utils import timezone

    head = AuditEvent.objects.order_by("-sequence").values("sequence", "hash").first()
    sequence, prev = (head["sequence"], head["hash"]) if head else (0, GENESIS_HASH)
    rows = []
    now = timezone.now()
    for i in range(count):
        sequence += 1
        values = {"action": AuditAction.UPDATE, "target_type": "xenpools.pool", "target_id": "1",
                  "target_repr": "lab pool", "message": f"change {i}", "actor_username": "alice", "source": "10.0.0.9",
                  **fields}
        event = AuditEvent(sequence=sequence, prev_hash=prev, created=now, chain_version=CHAIN_VERSION, **values)
        event.hash = event.compute_hash()
        prev = event.hash
        rows.append(event)
    AuditEvent.objects.bulk_create(rows, batch_size=500)


def _page_queries(client, params):
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse("audit:event_list"), params)
    assert response.status_code == 200
    return response, [q["sql"] for q in captured.captured_queries]


@pytest.mark.parametrize("params", [{}, {"action": "update"}, {"actor": "alice", "since": "2000-01-01"}])
def test_a_page_costs_the_same_queries_for_10_or_2000_events_and_never_offset_or_a_full_count(
        auditor_client, params):
    """Seek pagination (sesamweb/audit/paging.py): the first page, a deep page and the oldest
    page each take the same queries whatever the log's length: no OFFSET, and the count is
    bounded (COUNT over a LIMITed subquery)."""
    _log(10)
    _, small = _page_queries(auditor_client, params)
    _log(1990)
    first, large = _page_queries(auditor_client, params)
    # (the small log's first page also shows the user created by the fixture: one more object kind)
    assert len(large) <= len(small) <= 8, "\n".join(s[:150] for s in large + ["---"] + small)
    deep_cursor = first.context["page"].older
    for _ in range(10):  # ten pages down
        deep, deep_queries = _page_queries(auditor_client, {**params, "before": deep_cursor})
        deep_cursor = deep.context["page"].older
    assert len(deep_queries) <= len(small) + 1  # + the "is there anything newer" probe
    assert len(deep.context["page"]) == 50 and deep.context["page"].newer is not None
    oldest, oldest_queries = _page_queries(auditor_client, {**params, "after": 0})
    matching = list(first.context["filter"].qs.order_by("sequence").values_list("sequence", flat=True))
    assert [e.sequence for e in oldest.context["page"]] == matching[:50][::-1]
    for sql in large + deep_queries + oldest_queries:
        assert "OFFSET" not in sql.upper()
        if "COUNT(" in sql.upper():
            assert "LIMIT 10001" in sql.upper(), sql
    assert first.context["page"].count == len(matching) >= 2000 and not first.context["page"].count_capped


def test_older_and_newer_pages_meet_without_gaps_or_repeats(auditor_client):
    _log(120)
    total = AuditEvent.objects.count()
    seen, page = [], auditor_client.get(reverse("audit:event_list")).context["page"]
    seen += [e.sequence for e in page]
    while page.older is not None:
        page = auditor_client.get(reverse("audit:event_list"), {"before": page.older}).context["page"]
        seen += [e.sequence for e in page]
    assert seen == list(range(total, 0, -1))
    oldest_page, back = [e.sequence for e in page], []
    while page.newer is not None:
        page = auditor_client.get(reverse("audit:event_list"), {"after": page.newer}).context["page"]
        back = [e.sequence for e in page] + back
    assert back == seen[:-len(oldest_page)]  # every event above the oldest page, each once
    assert auditor_client.get(reverse("audit:event_list"), {"before": "x'; DROP"}).status_code == 200


def test_the_object_column_names_the_kind_and_links_to_the_page(auditor_client, admin_user):
    from backups.models import DataStore

    store = DataStore.objects.create(name="nas-1", path="/srv/nas-1")
    record_event(AuditAction.UPDATE, target=store, actor=admin_user, message="renamed")
    record_event(AuditAction.DELETE, target_type="backups.restorerun", target_id="999", target_repr="Restore run #999")
    html = auditor_client.get(reverse("audit:event_list")).content.decode()
    assert f'<a href="{store.get_absolute_url()}">nas-1</a>' in html
    assert "Data store" in html and "Restore run" in html
    assert "backups.restorerun" not in html.split("<tbody>")[1] and "backups.datastore" not in html.split("<tbody>")[1]


def test_filters_by_object_kind_outcome_dates_and_text(auditor_client, events):
    from datetime import timedelta

    from django.utils import timezone

    record_event(AuditAction.LOGIN_FAILED, actor="mallory", source="192.0.2.7", outcome="denied",
                 message="wrong password")
    listed = lambda **params: [e.action for e in auditor_client.get(reverse("audit:event_list"), params)  # noqa: E731
                               .context["page"]]
    assert listed(target_type="xenpools.pool") == [AuditAction.UPDATE, AuditAction.CREATE]
    assert listed(outcome="denied") == [AuditAction.LOGIN_FAILED]
    assert listed(q="192.0.2") == [AuditAction.LOGIN_FAILED]
    assert listed(q="wrong PASSWORD") == [AuditAction.LOGIN_FAILED]
    today = timezone.localtime(events[0].created).date()
    on_that_day = AuditEvent.objects.filter(created__date=today).count()
    assert len(listed(since=today.isoformat(), until=today.isoformat())) == on_that_day >= 4
    assert listed(until=(today - timedelta(days=1)).isoformat()) == []
    assert listed(since=(today + timedelta(days=1)).isoformat()) == []
    assert listed(target_type="xenpools.pool", target_id="2") == []


def test_the_json_export_streams_the_filtered_events(auditor_client, events):
    import json

    response = auditor_client.get(reverse("audit:export_json"), {"target": "lab pool"})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("application/json")
    assert 'filename="sesamweb-audit-' in response["Content-Disposition"]
    rows = json.loads(b"".join(response.streaming_content))
    assert [row["sequence"] for row in rows] == [events[0].sequence, events[1].sequence]
    assert rows[1]["after"] == {"name": "=lab"} and rows[1]["object_kind"] == "Pool"
    assert AuditEvent.objects.filter(action=AuditAction.AUDIT_EXPORT, message__contains="JSON").exists()


def test_an_export_with_a_bad_filter_exports_nothing_rather_than_everything(auditor_client, events):
    response = auditor_client.get(reverse("audit:export"), {"since": "not-a-date"})
    assert b"".join(response.streaming_content).decode().count("\n") <= 1


@pytest.mark.parametrize("kind", ["csv", "json"])
def test_the_export_reads_the_rows_in_one_chunked_query_for_10_or_2000_events(auditor_client, kind):
    """The export's query pattern does not grow with the log: one SELECT of the rows (read in
    chunks, a server-side cursor on PostgreSQL) whatever their number."""
    from django.test.utils import CaptureQueriesContext

    name = "audit:export" if kind == "csv" else "audit:export_json"

    def export():
        with CaptureQueriesContext(connection) as captured:
            response = auditor_client.get(reverse(name), {"action": "update"})
            body = b"".join(response.streaming_content)
        selects = [q["sql"] for q in captured.captured_queries if "FROM \"audit_auditevent\"" in q["sql"]
                   and q["sql"].lstrip().upper().startswith(("SELECT", "DECLARE"))
                   and '"audit_auditevent"."before"' in q["sql"]]
        if connection.vendor == "postgresql":  # a server-side cursor: rows come 2,000 at a time
            assert all(sql.startswith("DECLARE") for sql in selects), selects
        return body, selects

    _log(10)
    small_body, small = export()
    _log(1990)
    large_body, large = export()
    assert len(small) == len(large) == 1
    assert large_body.count(b"change ") == 2000


def test_the_api_pages_by_cursor_with_the_same_queries_for_10_or_2000_events(api_client):
    from django.test.utils import CaptureQueriesContext

    auditor = api_client("auditor")

    def walk(pages):
        url, queries, seen = "/api/audit-events/?action=update&limit=50", [], []
        for _ in range(pages):
            with CaptureQueriesContext(connection) as captured:
                body = auditor.get(url).json()
            queries.append(len(captured.captured_queries))
            seen += [row["sequence"] for row in body["results"]]
            url = body["next"]
            if not url:
                break
        return queries, seen, body

    _log(10)
    small, _, body = walk(1)
    assert "count" not in body
    _log(1990)
    large, seen, _ = walk(5)
    assert max(large) <= small[0]
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == len(seen) == 250


def test_a_long_log_is_verified_by_a_worker_that_records_the_result(auditor_client, events, settings,
                                                                     without_triggers):
    """Past SESAM_AUDIT_VERIFY_INLINE_MAX events the page queues the check (a million events
    take about a minute: bench/audit_scale.py --verify) and shows the recorded outcome."""
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    from sesamweb.audit.verification import verify_chain_task

    settings.SESAM_AUDIT_VERIFY_INLINE_MAX = 2
    response = auditor_client.post(reverse("audit:verify"), follow=True)
    assert b"on a worker" in response.content and b"data-chain-report" not in response.content
    (queued,) = OrmQ.objects.all()
    task = SignedPackage.loads(queued.payload)
    assert task["func"] == "sesamweb.audit.verification.verify_chain_task"
    verify_chain_task(*task["args"])                     # what the worker runs
    done = AuditEvent.objects.get(action=AuditAction.AUDIT_VERIFY)
    assert done.outcome == "success" and done.message.startswith("Audit chain intact")
    assert done.actor_username == "audrey-auditor"  # who asked
    page = auditor_client.get(reverse("audit:event_list")).content.decode()
    assert "Last chain check:" in page and done.message in page

    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET message = 'edited' WHERE id = %s", [events[1].pk])
    verify_chain_task(None)
    broken = AuditEvent.objects.filter(action=AuditAction.AUDIT_VERIFY).order_by("-sequence").first()
    assert broken.outcome == "failure" and "Audit chain broken" in broken.message
    assert any(f"#{events[1].sequence}" in line for line in broken.after["breaks"])
