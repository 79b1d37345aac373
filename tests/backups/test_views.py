"""Backup pages: permissions by role, Back up now queues a run on the ORM broker, data store
creation with its validation, the key file exported once, run numbers and restore points."""
import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.models import OrmQ

from backups.choices import BackupKind, BackupMethod, BackupPhase, RunStatus, VerifyState
from backups.models import BackupRun, DataStore, RestorePoint, VmBackup
from backups.repository import LocalBackend, Repository
from backups.repository.keys import read_key_file
from backups.stores import create_store
from sesamweb.audit.models import AuditEvent
from tests.fixtures.users import TEST_PASSWORD
from xenpools.models import VM, Pool

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def inventory(db):
    pool = Pool.objects.create(name="lab", address="127.0.0.1", uuid="pool-uuid", product_version="8.2.1")
    web = VM.objects.create(pool=pool, uuid="11111111-1111-1111-1111-111111111111", ref="OpaqueRef:1", name="web-01",
                            power_state="Running")
    gone = VM.objects.create(pool=pool, uuid="22222222-2222-2222-2222-222222222222", ref="OpaqueRef:2", name="old-db",
                             removed_at=timezone.now())
    return {"pool": pool, "web": web, "gone": gone}


@pytest.fixture
def data_store(tmp_path, db):
    return create_store(name="nas", path=str(tmp_path / "store"), passphrase=PASSPHRASE)


def queued_tasks():
    return [q.task for q in OrmQ.objects.order_by("id")]


def a_finished_run(vm, store, **numbers):
    start = timezone.now() - timedelta(seconds=20)
    run = BackupRun.objects.create(status=RunStatus.SUCCESS, started_at=start, finished_at=start + timedelta(seconds=10))
    values = dict(total_bytes=1_000_000_000, bytes_read=600_000_000, bytes_processed=1_000_000_000,
                  bytes_new=400_000_000, bytes_stored=200_000_000, downtime_seconds=None)
    values.update(numbers)
    VmBackup.objects.create(run=run, vm=vm, pool=vm.pool, vm_uuid=vm.uuid, vm_name=vm.name, store=store,
                            method=BackupMethod.NORMAL, kind=BackupKind.FULL, status=RunStatus.SUCCESS,
                            phase=BackupPhase.DONE, started_at=start, finished_at=start + timedelta(seconds=10),
                            warnings=["quiesce fell back"], **values)
    return run


def a_point(store, vm_uuid, vm_name, **fields):
    return RestorePoint.objects.create(store=store, point_id=f"{vm_uuid}/{timezone.now().timestamp()}", vm_uuid=vm_uuid,
                                       vm_name=vm_name, taken_at=fields.pop("taken_at", timezone.now()),
                                       method=BackupMethod.NORMAL, kind=BackupKind.FULL, **{
                                           "virtual_size": 8 << 20, "bytes_stored": 1 << 20, **fields})


# --- permissions ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["backups:index", "backups:store_list", "backups:point_list"])
def test_every_role_reads_the_backup_pages(name, admin_client, operator_client, auditor_client, data_store):
    for client in (admin_client, operator_client, auditor_client):
        assert client.get(reverse(name)).status_code == 200


def test_anonymous_visitors_are_sent_to_sign_in(client, db):
    response = client.get(reverse("backups:index"))
    assert response.status_code == 302 and "/sign-in/" in response["Location"]


def test_an_auditor_can_neither_back_up_nor_cancel(auditor_client, inventory, data_store):
    web = inventory["web"]
    response = auditor_client.post(reverse("backups:backup_now", args=[web.pk]),
                                   {"store": data_store.pk, "method": "normal"})
    assert response.status_code == 403
    run = a_finished_run(web, data_store)
    run.status = RunStatus.RUNNING
    run.save()
    assert auditor_client.post(reverse("backups:run_cancel", args=[run.pk])).status_code == 403
    assert not BackupRun.objects.filter(vm_backups__cancel_requested=True).exists()


def test_an_operator_cannot_add_stores_or_export_keys(operator_client, data_store, tmp_path):
    assert operator_client.get(reverse("backups:store_add")).status_code == 403
    response = operator_client.post(reverse("backups:store_add"), {"name": "x", "kind": "local", "path": str(tmp_path / "x"),
                                                                   "encrypted": "on", "passphrase": PASSPHRASE,
                                                                   "passphrase_confirm": PASSPHRASE, "compression_level": 3})
    assert response.status_code == 403
    assert operator_client.post(reverse("backups:store_key_export", args=[data_store.pk])).status_code == 403
    data_store.refresh_from_db()
    assert data_store.key_exported_at is None


def test_an_auditor_cannot_queue_store_maintenance(auditor_client, data_store):
    assert auditor_client.post(reverse("backups:store_maintenance", args=[data_store.pk, "verify"])).status_code == 403
    assert queued_tasks() == []


# --- Back up now ----------------------------------------------------------------------------

def test_the_vm_page_offers_back_up_now_to_an_operator_only(operator_client, auditor_client, inventory, data_store):
    url = inventory["web"].get_absolute_url()
    page = operator_client.get(url).content.decode()
    assert "Back up now" in page and 'name="method"' in page
    assert "Not possible here: the guest is not Windows" in page
    page = auditor_client.get(url).content.decode()
    assert 'name="method"' not in page
    assert "Operators and administrators can back up this VM" in page


def test_the_back_up_now_page_is_for_operators(operator_client, auditor_client, inventory, data_store):
    url = reverse("backups:backup_now", args=[inventory["web"].pk])
    assert auditor_client.get(url).status_code == 403
    page = operator_client.get(url).content.decode()
    assert "Back up web-01" in page and "Online live memory (checkpoint)" in page


def test_back_up_now_queues_the_run_on_the_orm_broker_and_shows_its_page(operator_client, inventory, data_store):
    web = inventory["web"]
    response = operator_client.post(reverse("backups:backup_now", args=[web.pk]),
                                    {"store": data_store.pk, "method": "memory", "incremental": "on",
                                     "restart_after_snapshot": "on", "quiesce_fallback": "fail"})

    run = BackupRun.objects.get()
    assert response.status_code == 302 and response["Location"] == run.get_absolute_url()
    vm_backup = run.vm_backups.get()
    assert (vm_backup.vm, vm_backup.store, vm_backup.method, vm_backup.incremental) == (web, data_store, "memory", True)
    assert run.requested_by == operator_client.user
    [task] = queued_tasks()
    assert task["func"] == "backups.tasks.run_vm_backup_task" and task["args"] == (vm_backup.pk,)
    assert AuditEvent.objects.filter(action="job_start", actor=operator_client.user).exists()
    page = operator_client.get(response["Location"]).content.decode()
    assert "web-01" in page and "Queued" in page and "Cancel run" in page


def test_back_up_now_refuses_a_second_backup_of_the_same_vm(operator_client, inventory, data_store):
    url = reverse("backups:backup_now", args=[inventory["web"].pk])
    operator_client.post(url, {"store": data_store.pk, "method": "normal", "quiesce_fallback": "fail"})
    response = operator_client.post(url, {"store": data_store.pk, "method": "normal", "quiesce_fallback": "fail"})
    assert response.status_code == 400
    assert "a backup of web-01 is already queued (run #" in response.content.decode()
    assert len(queued_tasks()) == 1


def test_a_silent_backup_says_since_when_and_when_it_will_be_taken_over(operator_client, inventory, data_store):
    from datetime import timedelta

    from backups.models import VmBackup
    from django.utils import timezone

    url = reverse("backups:backup_now", args=[inventory["web"].pk])
    operator_client.post(url, {"store": data_store.pk, "method": "normal", "quiesce_fallback": "fail"})
    heard = timezone.now() - timedelta(seconds=60)
    VmBackup.objects.update(status="running", lease_owner="otherhost:4242", lease_heartbeat=heard)

    response = operator_client.post(url, {"store": data_store.pk, "method": "normal", "quiesce_fallback": "fail"})

    text = response.content.decode()
    assert f"has been silent since {timezone.localtime(heard):%H:%M:%S} (worker otherhost:4242)" in text
    taken_over = timezone.localtime(heard + timedelta(seconds=120))
    assert f"it will be taken over at {taken_over:%H:%M:%S} if it stays silent" in text


def test_a_quiesced_backup_needs_support_or_the_fallback(operator_client, inventory, data_store):
    url = reverse("backups:backup_now", args=[inventory["web"].pk])
    response = operator_client.post(url, {"store": data_store.pk, "method": "quiesced", "quiesce_fallback": "fail"})
    assert response.status_code == 400
    assert "A quiesced snapshot is not possible" in response.content.decode()
    response = operator_client.post(url, {"store": data_store.pk, "method": "quiesced", "quiesce_fallback": "normal"})
    assert response.status_code == 302


def test_a_windows_guest_on_an_older_pool_can_be_quiesced(operator_client, inventory, data_store):
    pool, web = inventory["pool"], inventory["web"]
    pool.product_version = "7.1.2"
    pool.save()
    web.is_windows = True
    web.save()
    page = operator_client.get(web.get_absolute_url()).content.decode()
    assert "Supported here: Windows guest on XenServer 7.1.2" in page


def test_an_operator_cancels_a_queued_run(operator_client, inventory, data_store):
    operator_client.post(reverse("backups:backup_now", args=[inventory["web"].pk]),
                         {"store": data_store.pk, "method": "normal", "quiesce_fallback": "fail"})
    run = BackupRun.objects.get()
    response = operator_client.post(reverse("backups:run_cancel", args=[run.pk]))
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert run.vm_backups.get().status == RunStatus.CANCELLED


# --- data stores ----------------------------------------------------------------------------

def store_form(directory, **changes):
    data = {"name": "backup-nas", "kind": "local", "path": str(directory), "encrypted": "on", "passphrase": PASSPHRASE,
            "passphrase_confirm": PASSPHRASE, "compression_level": 3, "cluster": ""}
    data.update(changes)
    return data


def test_an_administrator_creates_a_local_store_from_the_form(admin_client, tmp_path):
    response = admin_client.post(reverse("backups:store_add"), store_form(tmp_path / "backups"))
    store = DataStore.objects.get(name="backup-nas")
    assert response.status_code == 302 and response["Location"] == store.get_absolute_url()
    assert store.encrypted and store.path == str(tmp_path / "backups")
    assert (tmp_path / "backups").is_dir() and any((tmp_path / "backups").iterdir())
    assert AuditEvent.objects.filter(action="create", target_type__icontains="datastore").exists()


@pytest.mark.parametrize("changes,field,message", [
    ({"path": "/nonexistent-parent-dir/backups"}, "path", "/nonexistent-parent-dir does not exist"),
    ({"path": "relative/backups"}, "path", "absolute path"),
    ({"passphrase_confirm": "correct horse battery stapler"}, "passphrase_confirm", "The two passphrases differ"),
    ({"passphrase": "short", "passphrase_confirm": "short"}, "passphrase", "at least 12 characters"),
    ({"kind": "s3", "path": ""}, "s3_bucket", "Required for an S3 data store"),
])
def test_the_store_form_explains_what_is_wrong(admin_client, tmp_path, changes, field, message):
    data = store_form(tmp_path / "backups", **changes)
    response = admin_client.post(reverse("backups:store_add"), data)
    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors[field])
    assert not DataStore.objects.exists()
    assert not (tmp_path / "backups").exists()


def test_a_short_passphrase_that_also_differs_gets_both_errors_at_once(admin_client, tmp_path):
    data = store_form(tmp_path / "backups", passphrase="short", passphrase_confirm="shorter")
    errors = admin_client.post(reverse("backups:store_add"), data).context["form"].errors
    assert "at least 12 characters" in " ".join(errors["passphrase"])
    assert "The two passphrases differ" in " ".join(errors["passphrase_confirm"])


def test_the_store_page_warns_that_losing_passphrase_and_key_loses_the_data(admin_client, db):
    page = admin_client.get(reverse("backups:store_add")).content.decode()
    assert "losing both the passphrase and the key file loses every backup" in page


def test_exporting_the_key_asks_for_the_administrators_password_again(admin_client, data_store):
    url = reverse("backups:store_key_export", args=[data_store.pk])
    for password in ({}, {"current_password": "not my password"}):
        response = admin_client.post(url, password, follow=True)
        assert response["Content-Type"].startswith("text/html")
        assert "The key was not exported" in response.content.decode()
    data_store.refresh_from_db()
    assert data_store.key_exported_at is None
    refused = AuditEvent.objects.filter(action="key_export", outcome="failure")
    assert refused.count() == 2 and "password was not confirmed" in refused.first().message


def test_the_key_file_is_downloaded_once_then_only_with_a_confirmation(admin_client, data_store):
    url = reverse("backups:store_key_export", args=[data_store.pk])
    response = admin_client.post(url, {"current_password": TEST_PASSWORD})
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="sesamweb-nas.key.json"'
    key_file = b"".join(response)
    assert Repository.open(LocalBackend(data_store.path), key_file=key_file).is_encrypted  # the real key
    data_store.refresh_from_db()
    exported_at = data_store.key_exported_at
    assert exported_at is not None

    page = admin_client.get(data_store.get_absolute_url()).content.decode()
    assert f"Exported on <strong>{timezone.localtime(exported_at):%Y-%m-%d %H:%M}</strong>" in page
    again = admin_client.post(url, {"current_password": TEST_PASSWORD}, follow=True)
    assert again.redirect_chain and "was exported on" in again.content.decode()
    forced = admin_client.post(url, {"force": "on", "passphrase": "another long passphrase",
                                     "current_password": TEST_PASSWORD})
    assert forced.status_code == 200 and forced["Content-Type"] == "application/json"
    protected = b"".join(forced)
    assert "master_key" not in json.loads(protected)
    assert read_key_file(protected, "another long passphrase").master == read_key_file(key_file).master
    assert AuditEvent.objects.filter(action="key_export", outcome="success").count() == 2


def test_store_maintenance_is_queued_on_the_stores_workers(operator_client, data_store):
    for action in ("verify", "gc", "refresh"):
        assert operator_client.post(reverse("backups:store_maintenance", args=[data_store.pk, action])).status_code == 302
    operator_client.post(reverse("backups:store_maintenance", args=[data_store.pk, "prune"]),
                         {"keep_last": 3, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0})
    tasks = queued_tasks()
    assert [t["func"] for t in tasks] == ["backups.tasks.verify_store_task", "backups.tasks.collect_garbage_task",
                                         "backups.tasks.refresh_catalog_task", "backups.tasks.prune_store_task"]
    assert all(t["args"] == (data_store.pk,) and t["group"] == f"store-{data_store.pk}" for t in tasks)
    assert tasks[-1]["kwargs"]["keep_last"] == 3


def test_the_queued_maintenance_tasks_run_against_the_store(operator_client, data_store):
    for action in ("verify", "gc", "refresh"):
        operator_client.post(reverse("backups:store_maintenance", args=[data_store.pk, action]))
    results = []
    for queued in OrmQ.objects.order_by("id"):  # as a cluster worker would
        task = queued.task
        results.append(import_string(task["func"])(*task["args"], **task["kwargs"]))
    assert results[0].startswith("verified 0 restore point(s)")
    assert results[1].startswith("removed 0 chunk(s)")
    assert results[2] == "catalog refreshed: 0 restore point(s) added, 0 removed"
    assert AuditEvent.objects.filter(action__in=["verify", "gc"]).count() == 2


def test_an_unknown_maintenance_action_is_not_found(operator_client, data_store):
    assert operator_client.post(reverse("backups:store_maintenance", args=[data_store.pk, "format"])).status_code == 404


def test_the_store_list_sums_restore_points_not_chunks(auditor_client, data_store, inventory):
    a_point(data_store, inventory["web"].uuid, "web-01", bytes_stored=3 << 20)
    a_point(data_store, inventory["gone"].uuid, "old-db", bytes_stored=1 << 20)
    response = auditor_client.get(reverse("backups:store_list"))
    store = response.context["stores"].get()
    assert (store.point_count, store.vm_count, store.stored) == (2, 2, 4 << 20)
    assert "Not exported" in response.content.decode()


# --- runs and restore points ----------------------------------------------------------------

def test_the_run_page_shows_the_numbers_of_each_vm_backup(auditor_client, inventory, data_store):
    run = a_finished_run(inventory["web"], data_store)
    page = auditor_client.get(run.get_absolute_url()).content.decode()
    assert "Succeeded" in page
    assert "100.0 MB/s" in page          # 1 GB covered in 10 s
    assert "2.50×" in page and "2.00×" in page   # dedup 1000/400, compression 400/200
    assert "10.0 s" in page
    assert "quiesce fell back" in page
    assert "Cancel run" not in page


def test_the_runs_list_filters_by_status_vm_and_store(auditor_client, inventory, data_store):
    ok = a_finished_run(inventory["web"], data_store)
    failed = a_finished_run(inventory["gone"], data_store)
    failed.status = RunStatus.FAILED
    failed.save()
    runs = auditor_client.get(reverse("backups:index"), {"status": "failed"}).context["runs"]
    assert list(runs) == [failed]
    runs = auditor_client.get(reverse("backups:index"), {"vm": "web"}).context["runs"]
    assert list(runs) == [ok]
    runs = auditor_client.get(reverse("backups:index"), {"store": data_store.pk}).context["runs"]
    assert sorted(run.pk for run in runs) == sorted([ok.pk, failed.pk])
    assert all(run.vm_count == 1 for run in runs)
    today, tomorrow = timezone.localdate(), timezone.localdate() + timedelta(days=1)
    assert len(auditor_client.get(reverse("backups:index"), {"since": today, "until": today}).context["runs"]) == 2
    assert len(auditor_client.get(reverse("backups:index"), {"since": tomorrow}).context["runs"]) == 0
    page = auditor_client.get(reverse("backups:index")).content.decode()
    assert "100.0 MB/s" in page


def test_a_vm_backup_link_lands_on_its_run(auditor_client, inventory, data_store):
    run = a_finished_run(inventory["web"], data_store)
    vm_backup = run.vm_backups.get()
    response = auditor_client.get(vm_backup.get_absolute_url())
    assert response["Location"] == f"{run.get_absolute_url()}#vm-backup-{vm_backup.pk}"


def test_restore_points_include_vms_removed_from_every_pool(auditor_client, inventory, data_store):
    a_point(data_store, inventory["web"].uuid, "web-01")
    a_point(data_store, inventory["gone"].uuid, "old-db", verify_state=VerifyState.DAMAGED)
    a_point(data_store, "33333333-3333-3333-3333-333333333333", "never-known")
    response = auditor_client.get(reverse("backups:point_list"), {"q": "old"})
    [point] = response.context["points"]
    assert point.vm_name == "old-db" and point.live_vm is None
    assert "VM removed" in response.content.decode()
    response = auditor_client.get(reverse("backups:point_list"), {"q": "3333"})
    assert [p.vm_name for p in response.context["points"]] == ["never-known"]
    response = auditor_client.get(reverse("backups:point_list"), {"verify_state": "damaged"})
    assert [p.vm_name for p in response.context["points"]] == ["old-db"]


def test_the_vm_page_lists_its_restore_points(auditor_client, inventory, data_store):
    a_point(data_store, inventory["web"].uuid, "web-01", has_memory=True)
    page = auditor_client.get(inventory["web"].get_absolute_url()).content.decode()
    assert "Restore points" in page and "memory" in page and "nas" in page


def test_the_dashboard_counts_a_vm_as_protected_only_by_an_undamaged_point(auditor_client, inventory, data_store):
    from sesamweb.dashboard.summary import dashboard_summary

    a_finished_run(inventory["web"], data_store)
    point = a_point(data_store, inventory["web"].uuid, "web-01", verify_state=VerifyState.DAMAGED)
    summary = dashboard_summary()
    assert (summary.vms_protected, summary.restore_points, summary.runs_24h) == (0, 1, {"success": 1})
    point.verify_state = VerifyState.OK
    point.save()
    assert dashboard_summary().vms_protected == 1


def test_an_administrator_creates_an_s3_store_and_its_secret_is_never_shown(admin_client, s3_endpoint):
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="AKIATESTING", aws_secret_access_key="s3-secret-value",
                 region_name="us-east-1").create_bucket(Bucket="backups")
    data = store_form("", kind="s3", name="object-store", s3_endpoint=s3_endpoint, s3_bucket="backups",
                      s3_prefix="site-1", s3_region="us-east-1", s3_access_key="AKIATESTING",
                      s3_secret="s3-secret-value")
    response = admin_client.post(reverse("backups:store_add"), data)
    assert response.status_code == 302, response.context["form"].errors
    store = DataStore.objects.get(name="object-store")
    assert store.kind == "s3" and store.s3_secret() == "s3-secret-value"
    page = admin_client.get(store.get_absolute_url()).content.decode()
    assert "s3://backups/site-1" in page and "s3-secret-value" not in page
    assert "s3-secret-value" not in admin_client.get("/api/stores/").content.decode()
