"""Run pages that tell the truth: a running run never "waits for a worker", the "queued" note
goes once a worker has the run, a failed VM names the phase it failed in and why, backups and
restores show the same stat cards, the runs table shows a failed run's reason, and the run
totals of the runs list and the job page come from one helper."""
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from backups.choices import BackupKind, BackupMethod, BackupPhase, RunStatus
from backups.models import BackupJob, BackupRun, RestoreRun, VmBackup
from backups.models_restore import RestorePhase
from backups.services import add_run_totals

from .test_views import a_finished_run, data_store, inventory  # noqa: F401 - fixtures

FIGURES = ("Speed", "Disks covered", "Duration")


def a_vm_backup(run, vm, store, **fields):
    return VmBackup.objects.create(run=run, vm=vm, pool=vm.pool, vm_uuid=vm.uuid, vm_name=vm.name, store=store,
                                   method=BackupMethod.NORMAL, **fields)


def test_a_running_run_does_not_say_it_waits_for_a_worker(auditor_client, inventory, data_store):
    # A job run is "running" as soon as its first VM is dispatched; started_at may come later.
    run = BackupRun.objects.create(status=RunStatus.RUNNING)
    a_vm_backup(run, inventory["web"], data_store, status=RunStatus.RUNNING, phase=BackupPhase.STREAMING,
                started_at=timezone.now())
    page = auditor_client.get(run.get_absolute_url()).content.decode()
    assert "waiting for a worker" not in page
    assert "Streaming disks" in page and "kind being decided" in page


def test_a_queued_run_says_it_waits_for_a_worker(auditor_client, inventory, data_store):
    run = BackupRun.objects.create(status=RunStatus.QUEUED)
    a_vm_backup(run, inventory["web"], data_store)
    page = auditor_client.get(run.get_absolute_url()).content.decode()
    assert "waiting for a worker" in page and "kind decided when it starts" in page


@pytest.mark.parametrize("finished_first", [False, True])
def test_the_queued_note_goes_once_the_run_has_a_worker(operator_client, inventory, data_store, finished_first):
    response = operator_client.post(reverse("backups:backup_now", args=[inventory["web"].pk]),
                                    {"store": data_store.pk, "method": "normal", "quiesce_fallback": "fail",
                                     "transfer_compression": "none"})
    assert response.status_code == 302, response.content.decode()[:2000]
    run = BackupRun.objects.get()
    if finished_first:      # the worker was faster than the browser's redirect
        run.status, run.started_at, run.finished_at = RunStatus.SUCCESS, timezone.now(), timezone.now()
        run.save()
    page = operator_client.get(response["Location"]).content.decode()
    assert ("Backup of web-01 queued." in page) is not finished_first
    assert ("data-queued-message" in page) is not finished_first


def test_a_failed_vm_names_the_phase_it_failed_in_and_why(auditor_client, inventory, data_store):
    run = BackupRun.objects.create(status=RunStatus.FAILED, started_at=timezone.now(), finished_at=timezone.now())
    a_vm_backup(run, inventory["web"], data_store, status=RunStatus.FAILED, phase=BackupPhase.PREPARING,
                error="the pool refused: VM_BAD_POWER_STATE", started_at=timezone.now(), finished_at=timezone.now())
    page = auditor_client.get(run.get_absolute_url()).content.decode()
    assert "Failed while preparing the VM" in page
    assert "the pool refused: VM_BAD_POWER_STATE" in page
    assert ">Done<" not in page and "kind decided when it starts" not in page
    assert "no restore point written" in page


def test_a_skipped_vm_says_it_never_started(auditor_client, inventory, data_store):
    run = BackupRun.objects.create(status=RunStatus.FAILED, finished_at=timezone.now())
    a_vm_backup(run, inventory["web"], data_store, status=RunStatus.SKIPPED, error="the window closed")
    page = auditor_client.get(run.get_absolute_url()).content.decode()
    assert "Skipped before it started" in page and "the window closed" in page


def test_the_api_gives_the_truthful_phase_and_kind(auditor_client, inventory, data_store):
    run = BackupRun.objects.create(status=RunStatus.FAILED)
    a_vm_backup(run, inventory["web"], data_store, status=RunStatus.FAILED, phase=BackupPhase.STREAMING,
                kind=BackupKind.FULL, error="boom")
    vm_backup = auditor_client.get(reverse("backup-run-detail", args=[run.pk])).json()["vm_backups"][0]
    assert vm_backup["phase_text"] == "Failed while streaming disks" and vm_backup["kind_text"] == "Full"


def test_backup_and_restore_pages_show_the_same_stat_cards(auditor_client, inventory, data_store):
    backup = a_finished_run(inventory["web"], data_store)
    start = timezone.now() - timedelta(seconds=20)
    restore = RestoreRun.objects.create(store=data_store, store_point_id="x/1", source_vm_name="web-01",
                                        status=RunStatus.SUCCESS, phase=RestorePhase.DONE, bytes_total=2_000_000_000,
                                        bytes_done=2_000_000_000, started_at=start,
                                        finished_at=start + timedelta(seconds=10))
    backup_page = auditor_client.get(backup.get_absolute_url()).content.decode()
    restore_page = auditor_client.get(restore.get_absolute_url()).content.decode()
    for page in (backup_page, restore_page):
        assert "data-run-figures" in page
        for label in FIGURES:
            assert f'<span class="figure-label">{label}</span>' in page
    assert "200.0 MB/s on average" in restore_page      # 2 GB in 10 s, decimal as for backups
    assert "10.0 s" in restore_page


def test_a_failed_restore_names_its_phase(auditor_client, data_store):
    run = RestoreRun.objects.create(store=data_store, store_point_id="x/1", source_vm_name="web-01",
                                    status=RunStatus.FAILED, phase=RestorePhase.STREAMING, error="the pool refused",
                                    started_at=timezone.now(), finished_at=timezone.now())
    page = auditor_client.get(run.get_absolute_url()).content.decode()
    assert "Failed while streaming disks" in page and "the pool refused" in page
    status = auditor_client.get(run.get_absolute_url() + "?format=json").json()
    assert status["phase_label"] == "Failed while streaming disks"


def test_the_runs_list_shows_a_failed_runs_reason(auditor_client, inventory, data_store):
    run = BackupRun.objects.create(status=RunStatus.FAILED, finished_at=timezone.now())
    a_vm_backup(run, inventory["web"], data_store, status=RunStatus.FAILED, phase=BackupPhase.STREAMING,
                error="data store nas: no space left on the device")
    page = auditor_client.get(reverse("backups:index")).content.decode()
    assert "data store nas: no space left on the device" in page


def test_run_totals_sum_each_runs_vm_backups_in_one_query(inventory, data_store, django_assert_num_queries):
    job = BackupJob.objects.create(name="nightly", store=data_store)
    two = BackupRun.objects.create(status=RunStatus.FAILED, job=job)
    a_vm_backup(two, inventory["web"], data_store, status=RunStatus.SUCCESS, bytes_processed=10, bytes_read=7,
                bytes_stored=3)
    a_vm_backup(two, inventory["gone"], data_store, status=RunStatus.FAILED, bytes_processed=5, error="boom")
    empty = BackupRun.objects.create(status=RunStatus.QUEUED)
    with django_assert_num_queries(1):
        add_run_totals([two, empty])
    assert (two.vm_count, two.vms_done, two.total_processed, two.total_read, two.total_stored) == (2, 2, 15, 7, 3)
    assert two.failure_reason == "boom"
    assert (empty.vm_count, empty.total_processed, empty.failure_reason) == (0, None, "")


# --- the prune preview (dry run) on the store page ------------------------------------------

def three_backups(store):
    from backups.maintenance import refresh_catalog
    from backups.stores import open_repository
    from tests.backups.repository.diskdata import write_disk

    repo = open_repository(store)
    made = []
    for day in range(3):
        with repo.start_backup("vm-a", timezone.now() - timedelta(days=day)) as writer:
            write_disk(writer, "xvda", bytes([day + 1]) * store.chunk_size)
            made.append(writer.commit())
    refresh_catalog(store)
    return repo, made


def test_the_prune_preview_lists_what_would_go_and_removes_nothing(operator_client, data_store):
    from sesamweb.audit.models import AuditEvent
    repo, made = three_backups(data_store)
    events = AuditEvent.objects.count()
    store_page = operator_client.get(data_store.get_absolute_url()).content.decode()
    assert reverse("backups:store_prune_preview", args=[data_store.pk]) in store_page

    response = operator_client.post(reverse("backups:store_prune_preview", args=[data_store.pk]),
                                    {"keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0})

    assert response.status_code == 200
    assert (response.context["kept"], response.context["removed"]) == (1, 2)
    page = response.content.decode()
    assert "Prune: remove 2 points" in page and "last 1" in page
    assert page.count("badge-danger\">Removed") == 2
    assert len(repo.list_backups()) == 3 and AuditEvent.objects.count() == events      # a dry run


def test_the_prune_preview_refuses_rules_that_keep_nothing_and_auditors(operator_client, auditor_client, data_store):
    url = reverse("backups:store_prune_preview", args=[data_store.pk])
    nothing = {"keep_last": 0, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}
    response = operator_client.post(url, nothing, follow=True)
    assert "No preview: Keep at least one restore point" in response.content.decode()
    assert auditor_client.post(url, {**nothing, "keep_last": 1}).status_code == 403


# --- host compression on "Back up now" ------------------------------------------------------

@pytest.mark.parametrize("posted,expected", [("zstd", "zstd"), ("gzip", "gzip"), (None, "none")])
def test_back_up_now_asks_the_host_to_compress(operator_client, inventory, data_store, posted, expected):
    form_page = operator_client.get(reverse("backups:backup_now", args=[inventory["web"].pk])).content.decode()
    assert "Compression on the host" in form_page
    data = {"store": data_store.pk, "method": "normal", "quiesce_fallback": "fail"}
    if posted:
        data["transfer_compression"] = posted
    response = operator_client.post(reverse("backups:backup_now", args=[inventory["web"].pk]), data)
    assert response.status_code == 302
    assert VmBackup.objects.get().transfer_compression == expected


def test_back_up_now_refuses_an_unknown_compression(operator_client, inventory, data_store):
    response = operator_client.post(reverse("backups:backup_now", args=[inventory["web"].pk]),
                                    {"store": data_store.pk, "method": "normal", "quiesce_fallback": "fail",
                                     "transfer_compression": "lz4"})
    assert response.status_code == 400 and not VmBackup.objects.exists()


# --- small things: the VM page's top actions, links where text names a page -----------------

def test_the_vm_page_has_back_up_now_and_restore_at_the_top(operator_client, auditor_client, inventory, data_store):
    from .test_views import a_point
    vm = inventory["web"]
    page = operator_client.get(vm.get_absolute_url()).content.decode()
    assert 'data-top-action="backup"' in page and 'data-top-action="restore"' not in page     # nothing to restore
    a_point(data_store, vm.uuid, vm.name)
    page = operator_client.get(vm.get_absolute_url()).content.decode()
    assert f'{reverse("backups:restore")}?vm={vm.uuid}' in page
    assert page.index('data-top-action="backup"') < page.index('id="back-up-now-title"')
    assert "data-top-action" not in auditor_client.get(vm.get_absolute_url()).content.decode()


def test_a_text_that_names_a_page_links_to_it(admin_client, operator_client, inventory):
    page = admin_client.get(inventory["web"].get_absolute_url()).content.decode()
    assert f'<a href="{reverse("backups:store_list")}">Data stores</a> → <a href="{reverse("backups:store_add")}">Add</a>' in page
    runs = operator_client.get(reverse("backups:index")).content.decode()
    assert f'<a href="{reverse("xenpools:vm_list")}">virtual machine</a>' in runs
