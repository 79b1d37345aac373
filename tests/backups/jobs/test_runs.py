"""A job's run: rule evaluated at each run, VMs dispatched within the job's limit, full or
incremental decided and explained, skips reported, retry of the failed VMs."""
import pytest

from backups.choices import BackupKind, RunStatus, Trigger
from backups.jobs.runs import JobRunError, dispatch, retry_failed, start_job_run
from backups.models import VmBackup
from xenpools.models import VM

pytestmark = pytest.mark.slow


def test_a_tag_rule_picks_up_a_vm_tagged_after_the_job_was_made(make_job, vm_named, run_queued_tasks):
    job = make_job(rule_tags=["nightly"])
    first = start_job_run(job, trigger=Trigger.MANUAL)
    assert first.vm_backups.count() == 0
    first.refresh_from_db()
    assert first.status == RunStatus.WARNING and "no VM matches" in first.message

    vm = vm_named("test-vm-1")
    VM.objects.filter(pk=vm.pk).update(tags=["nightly"], tags_index=VM.index_tags(["nightly"]))
    run = start_job_run(job, trigger=Trigger.MANUAL)
    run_queued_tasks()

    run.refresh_from_db()
    backup = run.vm_backups.get()
    assert (backup.vm_name, backup.status) == ("test-vm-1", RunStatus.SUCCESS), backup.error
    assert backup.restore_point.job == job
    assert backup.kind_reason == "full: no earlier restore point on this data store"
    assert run.status == RunStatus.SUCCESS


def test_no_more_than_the_jobs_limit_is_dispatched_at_once(make_job, pool, monkeypatch):
    from backups.devices import routing
    from backups.jobs import runs

    sent = []
    monkeypatch.setattr(routing, "async_task", lambda func, pk, **kwargs: sent.append(pk))
    job = make_job(rule_name_pattern="test-vm-*", max_parallel_vms=2)
    run = start_job_run(job, trigger=Trigger.MANUAL)

    assert run.vm_backups.count() >= 3
    assert len(sent) == 2
    assert dispatch(run.pk) == []                 # both slots still busy
    VmBackup.objects.filter(pk=sent[0]).update(status=RunStatus.SUCCESS)
    assert len(dispatch(run.pk)) == 1


def test_the_second_run_is_incremental_and_every_nth_is_full(make_job, vm_named, run_queued_tasks):
    vm = vm_named("test-vm-1")
    job = make_job(selection="explicit", full_every=1)
    job.vms.add(vm)
    kinds = []
    for _ in range(3):
        run = start_job_run(job, trigger=Trigger.MANUAL)
        run_queued_tasks()
        backup = run.vm_backups.get()
        assert backup.status in (RunStatus.SUCCESS, RunStatus.WARNING), backup.error
        kinds.append((backup.kind, backup.kind_reason.split(":")[0]))
    assert kinds == [(BackupKind.FULL, "full"), (BackupKind.INCREMENTAL, "incremental"), (BackupKind.FULL, "full")]


def test_a_vm_already_being_backed_up_is_skipped_with_the_reason(make_job, vm_named, monkeypatch):
    from backups.devices import routing
    from backups.jobs import runs

    monkeypatch.setattr(routing, "async_task", lambda *args, **kwargs: None)
    vm = vm_named("test-vm-1")
    job = make_job(selection="explicit")
    job.vms.add(vm)
    start_job_run(job, trigger=Trigger.MANUAL)
    second = start_job_run(job, trigger=Trigger.MANUAL)

    skipped = second.vm_backups.get()
    assert skipped.status == RunStatus.SKIPPED
    assert "already queued or running" in skipped.error


def test_retry_runs_only_the_failed_vms(make_job, vm_named, run_queued_tasks):
    job = make_job(selection="explicit")
    job.vms.add(vm_named("test-vm-1"), vm_named("test-vm-2"))
    run = start_job_run(job, trigger=Trigger.MANUAL)
    run_queued_tasks()
    run.refresh_from_db()
    VmBackup.objects.filter(run=run, vm_name="test-vm-2").update(status=RunStatus.FAILED, error="boom")
    run.status = RunStatus.FAILED
    run.save()

    retry = retry_failed(run)
    run_queued_tasks()

    assert [b.vm_name for b in retry.vm_backups.all()] == ["test-vm-2"]
    retry.refresh_from_db()
    assert retry.status in (RunStatus.SUCCESS, RunStatus.WARNING)
    with pytest.raises(JobRunError, match="no VM of this run failed"):
        retry_failed(retry)


def test_the_prediction_says_full_or_incremental_and_which_vms_would_not_fit(make_job, vm_named, run_queued_tasks):
    from backups.jobs.prediction import predict
    from xenpools.models import StorageRepository

    job = make_job(selection="explicit")
    job.vms.add(vm_named("test-vm-1"), vm_named("test-vm-2"))
    start_job_run(job, trigger=Trigger.MANUAL)
    run_queued_tasks()
    sr = vm_named("test-vm-2").disks.filter(type="Disk").first().vdi.sr
    StorageRepository.objects.filter(pk=sr.pk).update(physical_utilisation=sr.physical_size)

    predicted = {p.vm.name: p for p in predict(job)}

    assert predicted["test-vm-1"].kind_label == "Incremental"
    assert predicted["test-vm-2"].incremental and predicted["test-vm-2"].reason.startswith("incremental")
    assert any(f"storage repository {sr.name} has" in text for text in predicted["test-vm-2"].problems)


def test_an_excluded_disk_is_left_out_of_the_backup_and_the_vm_keeps_it(make_job, vm_named, pool, pool_reader,
                                                                         run_queued_tasks):
    from backups.stores import open_repository
    from xenpools.inventory import sync_pool

    vm = vm_named("test-vm-3")
    xenapi = pool_reader.xenapi
    vm_ref = pool_reader.vm(vm.uuid)
    first_vdi = xenapi.VDI.get_by_uuid(pool_reader.disks(vm.uuid)["0"])
    scratch = xenapi.VDI.create({"name_label": "scratch", "name_description": "", "SR": xenapi.VDI.get_SR(first_vdi),
                                 "virtual_size": str(8 << 20), "type": "user", "sharable": False, "read_only": False,
                                 "other_config": {}, "xenstore_data": {}, "sm_config": {}, "tags": []})
    xenapi.VBD.create({"VM": vm_ref, "VDI": scratch, "userdevice": "1", "bootable": False, "mode": "RW",
                       "type": "Disk", "empty": False, "other_config": {}, "qos_algorithm_type": "",
                       "qos_algorithm_params": {}})
    sync_pool(pool)
    job = make_job(selection="explicit", excluded_disks=[xenapi.VDI.get_uuid(scratch)])
    job.vms.add(vm)

    run = start_job_run(job, trigger=Trigger.MANUAL)
    run_queued_tasks()

    backup = run.vm_backups.get()
    assert backup.status in (RunStatus.SUCCESS, RunStatus.WARNING), backup.error
    assert backup.excluded_disks == ["1"]
    manifest = open_repository(job.store).load_manifest(backup.restore_point.point_id)
    assert [d.key for d in manifest.disks] == ["vbd0"]
    assert manifest.metadata["excluded_disks"] == ["1"]
    assert sorted(pool_reader.disks(vm.uuid)) == ["0", "1"]          # the VM itself keeps its disk
    assert pool_reader.snapshots() == []


def test_vms_not_started_when_the_run_window_closes_are_skipped_and_reported(make_job, vm_named, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from backups.devices import routing

    from backups.tasks import run_vm_backup_task

    sent = []
    monkeypatch.setattr(routing, "async_task", lambda func, pk, **kwargs: sent.append(pk))
    job = make_job(selection="explicit", max_parallel_vms=1, window_minutes=60)
    job.vms.add(vm_named("test-vm-1"), vm_named("test-vm-2"), vm_named("test-vm-3"))
    run = start_job_run(job, trigger=Trigger.MANUAL)
    assert run.window_ends_at is not None and len(sent) == 1

    assert run_vm_backup_task(sent.pop(0)).endswith("success")   # inside the window; the next VM is sent
    assert len(sent) == 1
    run.window_ends_at = timezone.now() - timedelta(seconds=1)   # the window closed meanwhile
    run.save(update_fields=["window_ends_at"])
    assert "run window closed" in run_vm_backup_task(sent.pop(0))   # the worker does not start it

    run.refresh_from_db()
    rows = {b.vm_name: b for b in run.vm_backups.all()}
    assert rows["test-vm-1"].status == RunStatus.SUCCESS
    for name in ("test-vm-2", "test-vm-3"):
        assert rows[name].status == RunStatus.SKIPPED
        assert rows[name].error.startswith("skipped: the run window closed at ")
        assert rows[name].restore_point is None
    assert run.status == RunStatus.WARNING and run.get_status_display() == "Succeeded with warnings"
    assert sent == []
