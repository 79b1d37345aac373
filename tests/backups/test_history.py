"""The task history: backups and restores in one list, newest first, filtered alike."""
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from backups.choices import RunStatus
from backups.models import BackupRun, RestoreRun, VmBackup
from backups.stores import create_store

NOW = timezone.now()


@pytest.fixture
def tasks(tmp_path, db):
    store = create_store(name="nas", path=str(tmp_path / "store"), passphrase="correct horse battery staple")

    def backup(name, hours_ago, status=RunStatus.SUCCESS):
        run = BackupRun.objects.create(status=status, created_at=NOW - timedelta(hours=hours_ago))
        VmBackup.objects.create(run=run, vm_uuid=f"{name}-uuid", vm_name=name, store=store, method="normal",
                                status=status)
        return run

    def restore(name, hours_ago, status=RunStatus.SUCCESS):
        return RestoreRun.objects.create(status=status, source_vm_name=name, store_point_id=f"{name}-uuid/x",
                                         created_at=NOW - timedelta(hours=hours_ago))

    return [backup("web-01", 1), restore("db-01", 2, RunStatus.FAILED), backup("db-01", 3, RunStatus.FAILED),
            restore("web-01", 50), backup("mail", 80)]


def rows(response):
    return [(item["kind"], item["run"].pk) for item in response.context["items"]]


def expected(tasks, indexes):
    return [("backup" if isinstance(tasks[i], BackupRun) else "restore", tasks[i].pk) for i in indexes]


def test_backups_and_restores_are_listed_together_newest_first(auditor_client, tasks):
    response = auditor_client.get(reverse("backups:history"))

    assert response.status_code == 200
    assert rows(response) == expected(tasks, [0, 1, 2, 3, 4])
    assert response.context["paginator"].count == 5
    page = response.content.decode()
    assert "db-01 <span class=\"muted\">to</span>" in page and ">Restore<" in page and ">Backup<" in page


def test_the_history_filters_by_kind_vm_status_and_date(auditor_client, tasks):
    url = reverse("backups:history")
    assert rows(auditor_client.get(url, {"kind": "restore"})) == expected(tasks, [1, 3])
    assert rows(auditor_client.get(url, {"kind": "backup", "vm": "db"})) == expected(tasks, [2])
    assert rows(auditor_client.get(url, {"vm": "web-01"})) == expected(tasks, [0, 3])
    assert rows(auditor_client.get(url, {"status": "failed"})) == expected(tasks, [1, 2])
    since = (NOW - timedelta(hours=60)).date()
    until = (NOW - timedelta(hours=40)).date()
    dated = rows(auditor_client.get(url, {"since": since.isoformat(), "until": until.isoformat()}))
    assert expected(tasks, [3])[0] in dated and expected(tasks, [4])[0] not in dated


def test_a_bad_filter_is_reported_not_a_server_error(auditor_client, tasks):
    response = auditor_client.get(reverse("backups:history"), {"since": "¹²/x", "kind": "nonsense", "page": "¹"})

    assert response.status_code == 200
    assert "Enter a valid date." in response.content.decode()
    assert len(rows(response)) == 5


def test_a_page_of_history_needs_a_bounded_number_of_queries(auditor_client, tasks, django_assert_max_num_queries):
    for i in range(60):
        BackupRun.objects.create(status=RunStatus.SUCCESS, created_at=NOW - timedelta(days=10, minutes=i))
    with django_assert_max_num_queries(12):
        response = auditor_client.get(reverse("backups:history"), {"page": 2})
    assert response.context["paginator"].count == 65 and len(rows(response)) == 15


def test_anonymous_visitors_are_sent_to_sign_in(client, db):
    response = client.get(reverse("backups:history"))
    assert response.status_code == 302 and "/sign-in/" in response["Location"]
