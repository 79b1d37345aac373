"""Data stores managed in the browser: edited, taken offline (backups and maintenance
refused), forgotten (the data left in place, with the warning) and deleted (only when empty),
each by administrators only and audited."""
import pytest
from django.urls import reverse

from backups.choices import BackupMethod, RunStatus
from backups.models import BackupJob, BackupRun, DataStore, RestorePoint, VmBackup
from backups.services import BackupRequestError, request_backup
from backups.stores import open_repository
from sesamweb.audit.models import AuditEvent

from .test_run_pages import three_backups
from .test_views import data_store, inventory  # noqa: F401 - fixtures


def test_an_administrator_edits_a_store_and_the_change_is_audited(admin_client, data_store):
    url = reverse("backups:store_edit", args=[data_store.pk])
    assert "Compression level" in admin_client.get(url).content.decode()
    response = admin_client.post(url, {"name": "nas-2", "compression_level": 9, "cluster": "",
                                       "max_parallel_streams": 4})
    assert response.status_code == 302
    data_store.refresh_from_db()
    assert (data_store.name, data_store.compression_level, data_store.max_parallel_streams) == ("nas-2", 9, 4)
    event = AuditEvent.objects.filter(action="update", message__contains="nas-2 changed").get()
    assert event.before["compression_level"] != 9 and event.after["compression_level"] == 9
    bad = admin_client.post(url, {"name": "nas-2", "compression_level": 99, "cluster": "", "max_parallel_streams": 4})
    assert bad.status_code == 400


def test_operators_and_auditors_cannot_manage_stores(operator_client, auditor_client, data_store):
    for client in (operator_client, auditor_client):
        for name in ("store_edit", "store_offline", "store_forget", "store_delete"):
            assert client.post(reverse(f"backups:{name}", args=[data_store.pk]), {"offline": "1"}).status_code == 403
    assert DataStore.objects.filter(pk=data_store.pk, offline=False).exists()


def test_an_offline_store_refuses_backups_and_maintenance_until_it_is_back(admin_client, operator_client, inventory,
                                                                            data_store):
    admin_client.post(reverse("backups:store_offline", args=[data_store.pk]), {"offline": "1"})
    data_store.refresh_from_db()
    assert data_store.offline
    assert "Offline" in admin_client.get(data_store.get_absolute_url()).content.decode()
    with pytest.raises(BackupRequestError, match="data store nas is offline"):
        request_backup(vm=inventory["web"], store=data_store, method=BackupMethod.NORMAL)
    page = operator_client.post(reverse("backups:store_maintenance", args=[data_store.pk, "verify"]),
                                follow=True).content.decode()
    assert "nas is offline" in page
    admin_client.post(reverse("backups:store_offline", args=[data_store.pk]), {"offline": "0"})
    data_store.refresh_from_db()
    assert request_backup(vm=inventory["web"], store=data_store, method=BackupMethod.NORMAL)
    assert [e.message for e in AuditEvent.objects.filter(action="update").order_by("pk")][-2:] == [
        "data store nas taken offline", "data store nas back online"]


def test_forgetting_a_store_leaves_its_data_and_keeps_the_run_history(admin_client, inventory, data_store):
    repo, made = three_backups(data_store)
    run = BackupRun.objects.create(status=RunStatus.SUCCESS)
    VmBackup.objects.create(run=run, vm_uuid="vm-a", vm_name="vm-a", store=data_store, method=BackupMethod.NORMAL,
                            status=RunStatus.SUCCESS)
    url = reverse("backups:store_forget", args=[data_store.pk])
    warning = admin_client.get(url).content.decode()
    assert "its data stays where it is" in warning and "3 restore points" in warning

    refused = admin_client.post(url, {"confirm_name": "wrong"}, follow=True).content.decode()
    assert "type the store&#x27;s name" in refused and DataStore.objects.filter(pk=data_store.pk).exists()
    response = admin_client.post(url, {"confirm_name": "nas"})

    assert response.status_code == 302 and not DataStore.objects.filter(pk=data_store.pk).exists()
    assert not RestorePoint.objects.exists()
    assert VmBackup.objects.get().store is None                            # the history stays
    assert "a forgotten data store" in admin_client.get(run.get_absolute_url()).content.decode()
    assert len(repo.list_backups()) == 3                                   # the data stays
    assert AuditEvent.objects.filter(action="delete", message__contains="forgotten; its 3 restore point(s)").exists()


def test_a_store_that_jobs_write_to_is_neither_forgotten_nor_deleted(admin_client, data_store):
    BackupJob.objects.create(name="nightly", store=data_store)
    admin_client.post(reverse("backups:store_forget", args=[data_store.pk]), {"confirm_name": "nas"})
    page = admin_client.post(reverse("backups:store_delete", args=[data_store.pk]), follow=True).content.decode()
    assert "backup job(s) nightly write to it" in page
    assert DataStore.objects.filter(pk=data_store.pk).exists()


def test_only_an_empty_store_is_deleted(admin_client, data_store):
    three_backups(data_store)
    page = admin_client.post(reverse("backups:store_delete", args=[data_store.pk]), follow=True).content.decode()
    assert "is not empty: it holds 3 restore point(s)" in page and DataStore.objects.filter(pk=data_store.pk).exists()
    RestorePoint.objects.all().delete()                       # unindexed, but still in the repository
    page = admin_client.post(reverse("backups:store_delete", args=[data_store.pk]), follow=True).content.decode()
    assert "holds 3 restore point(s) the console has not indexed" in page


def test_an_empty_store_is_deleted_with_its_repository_files(admin_client, data_store, tmp_path):
    store_dir = tmp_path / "store"
    assert any(store_dir.iterdir())
    response = admin_client.post(reverse("backups:store_delete", args=[data_store.pk]))
    assert response.status_code == 302 and not DataStore.objects.filter(pk=data_store.pk).exists()
    assert not [p for p in store_dir.rglob("*") if p.is_file()]
    assert AuditEvent.objects.filter(action="delete", message__contains="empty data store nas deleted").exists()


def test_a_job_does_not_start_on_an_offline_store(data_store):
    from backups.jobs.runs import JobRunError, start_job_run
    job = BackupJob.objects.create(name="nightly", store=data_store)
    data_store.offline = True
    data_store.save()
    with pytest.raises(JobRunError, match="data store nas is offline"):
        start_job_run(job, to_workers=False)
    assert not BackupRun.objects.exists()
