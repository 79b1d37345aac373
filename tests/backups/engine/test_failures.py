"""Failure paths: each gives a clear message, leaves no snapshot on the pool and no restore
point that looks complete."""
import threading
import time

import pytest

from backups.choices import BackupMethod, BackupPhase, RunStatus, Trigger
from backups.models import RestorePoint, VmBackup
from backups.repository import backends
from backups.services import cancel_run, request_backup, run_in_this_process
from backups.stores import create_store, open_repository

from ..repository.test_faults import FillingDisk

pytestmark = pytest.mark.slow


def back_up(vm, store, method=BackupMethod.NORMAL, **options):
    run = request_backup(vm=vm, store=store, method=method, trigger=Trigger.CLI, **options)
    return run_in_this_process(run).vm_backups.get()


def back_up_in_background(vm, store, method=BackupMethod.NORMAL, **options):
    run = request_backup(vm=vm, store=store, method=method, trigger=Trigger.CLI, **options)
    thread = threading.Thread(target=run_in_this_process, args=(run,))
    thread.start()
    return run, thread


def wait_for_phase(run, phase, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        vm_backup = run.vm_backups.get()
        if vm_backup.phase == phase and vm_backup.bytes_read > 0:
            return vm_backup
        time.sleep(0.05)
    raise AssertionError(f"the backup never reached {phase}: {vm_backup.phase} {vm_backup.error}")


def no_restore_point(store, vm):
    return (not RestorePoint.objects.filter(vm_uuid=vm.uuid).exists()
            and open_repository(store).list_backups(vm.uuid) == [])


def test_a_store_opened_with_another_stores_key_fails_before_touching_the_vm(vm_named, store, tmp_path, pool_reader):
    other = create_store(name="other", path=str(tmp_path / "other"), passphrase="another passphrase!")
    store.key_encrypted = ""
    store.set_data_key(other.data_key())
    store.save()
    vm = vm_named("test-vm-1")

    vm_backup = back_up(vm, store)

    assert vm_backup.status == RunStatus.FAILED
    assert "cannot open data store local" in vm_backup.error and "another data store" in vm_backup.error
    assert pool_reader.snapshots() == []


def test_a_connection_dropped_mid_export_is_retried(sim, vm_named, store, pool_reader):
    vm = vm_named("test-vm-4")
    expected = pool_reader.raw(pool_reader.disks(vm.uuid)["0"])
    sim.control.drop_transfer(after_bytes=3 * 1024 * 1024, count=1)

    vm_backup = back_up(vm, store)

    assert vm_backup.status == RunStatus.WARNING, vm_backup.error
    assert vm_backup.attempts == 2
    assert any("transfer interrupted" in w for w in vm_backup.warnings)
    data = b"".join(d for _, d in open_repository(store).open_disk(vm_backup.restore_point.point_id, "vbd0").stream())
    assert data == expected
    assert pool_reader.snapshots() == []


def test_a_connection_that_keeps_dropping_fails_cleanly(sim, vm_named, store, pool_reader):
    vm = vm_named("test-vm-4")
    sim.control.drop_transfer(after_bytes=1024 * 1024, count=10)

    vm_backup = back_up(vm, store)

    assert vm_backup.status == RunStatus.FAILED
    assert "the transfer failed 3 times" in vm_backup.error
    # The run page names the phase it failed in, not "Done" (nor the clean-up that followed).
    assert vm_backup.phase == BackupPhase.STREAMING
    assert vm_backup.phase_text == "Failed while streaming disks"
    assert vm_backup.kind_text == "Full"
    assert pool_reader.snapshots() == []
    assert no_restore_point(store, vm)


def test_a_snapshot_that_would_not_fit_its_sr_is_skipped_before_it_is_taken(sim, vm_named, store, pool_reader):
    vm = vm_named("test-vm-1")
    vdi = pool_reader.xenapi.VDI.get_by_uuid(pool_reader.disks(vm.uuid)["0"])
    sr_uuid = pool_reader.xenapi.SR.get_uuid(pool_reader.xenapi.VDI.get_SR(vdi))
    sr_name = pool_reader.xenapi.SR.get_name_label(pool_reader.xenapi.VDI.get_SR(vdi))
    sim.control.fill_sr(sr=sr_uuid, free_bytes=2 * 1024 * 1024)

    vm_backup = back_up(vm, store)

    assert vm_backup.status == RunStatus.SKIPPED, vm_backup.error
    assert vm_backup.error.startswith("skipped before the snapshot: storage repository ")
    assert f"storage repository {sr_name} has 2.1 MB free; the snapshot needs about" in vm_backup.error
    assert vm_backup.run.status == RunStatus.WARNING
    assert pool_reader.xenapi.VM.get_power_state(pool_reader.vm(vm.uuid)) == "Running"
    assert pool_reader.snapshots() == []


def test_an_sr_that_fills_up_after_the_check_fails_the_snapshot_with_a_clear_message(sim, vm_named, store, pool_reader):
    # The storage manager's own refusal (sm_exec.ml: SR_BACKEND_FAILURE_44, "There is insufficient space").
    vm = vm_named("test-vm-1")
    sim.control.fail_next_call("VM.snapshot", ["SR_BACKEND_FAILURE_44", "", "There is insufficient space", ""])

    vm_backup = back_up(vm, store)

    assert vm_backup.status == RunStatus.FAILED
    assert "storage repository is full" in vm_backup.error
    assert pool_reader.xenapi.VM.get_power_state(pool_reader.vm(vm.uuid)) == "Running"
    assert pool_reader.snapshots() == []


def test_a_full_data_store_fails_the_backup_and_leaves_no_restore_point(vm_named, store, pool_reader, monkeypatch):
    vm = vm_named("test-vm-4")
    monkeypatch.setattr(backends.os, "fsync", FillingDisk(room=5))

    vm_backup = back_up(vm, store)
    monkeypatch.undo()

    assert vm_backup.status == RunStatus.FAILED
    assert "data store local" in vm_backup.error and "full" in vm_backup.error.lower()
    assert pool_reader.snapshots() == []
    assert no_restore_point(store, vm)


def test_a_vm_deleted_mid_backup_is_reported_and_leaves_nothing_behind(sim, vm_named, store, pool_reader):
    vm = vm_named("test-vm-4")
    sim.control.rate_limit(8 * 1024 * 1024)
    run, thread = back_up_in_background(vm, store)
    wait_for_phase(run, "streaming")
    sim.control.delete_vm(vm=vm.uuid)
    thread.join(120)

    vm_backup = run.vm_backups.get()
    assert vm_backup.status in (RunStatus.WARNING, RunStatus.FAILED)
    assert "deleted" in (" ".join(vm_backup.warnings) + vm_backup.error)
    assert pool_reader.snapshots() == []


def test_the_master_failing_mid_backup_is_followed_to_the_new_master(sim, vm_named, store, pool_reader):
    vm = vm_named("test-vm-4")
    expected = pool_reader.raw(pool_reader.disks(vm.uuid)["0"])
    master = pool_reader.xenapi.pool.get_master(pool_reader.xenapi.pool.get_all()[0])
    master_uuid = pool_reader.xenapi.host.get_uuid(master)
    pool_reader.close()
    sim.control.rate_limit(8 * 1024 * 1024)
    run, thread = back_up_in_background(vm, store)
    wait_for_phase(run, "streaming")
    sim.control.fail_host(master_uuid)
    thread.join(180)

    vm_backup = run.vm_backups.get()
    assert vm_backup.status == RunStatus.WARNING, vm_backup.error
    repo = open_repository(store)
    data = b"".join(d for _, d in repo.open_disk(vm_backup.restore_point.point_id, "vbd0").stream())
    assert data == expected
    survivor = sim.session(sim.member_url(1))
    snapshots = [r for r in survivor.xenapi.VM.get_all_records().values() if r["is_a_snapshot"]]
    survivor.xenapi.session.logout()
    assert snapshots == []


def test_a_cancelled_backup_stops_and_cleans_up(sim, vm_named, store, pool_reader):
    vm = vm_named("test-vm-4")
    sim.control.rate_limit(4 * 1024 * 1024)
    run, thread = back_up_in_background(vm, store)
    wait_for_phase(run, "streaming")
    cancel_run(run)
    thread.join(120)

    vm_backup = VmBackup.objects.get(run=run)
    run.refresh_from_db()
    assert vm_backup.status == RunStatus.CANCELLED, (vm_backup.error, vm_backup.warnings)
    assert vm_backup.warnings == []
    assert run.status == RunStatus.CANCELLED
    assert pool_reader.snapshots() == []
    assert no_restore_point(store, vm)


def test_the_master_moving_mid_backup_is_followed_and_leaves_no_snapshot(sim, vm_named, store, pool_reader):
    # A planned master change (pool.designate_new_master) restarts xapi on both hosts: the
    # export breaks and the old master answers every call with HOST_IS_SLAVE.
    vm = vm_named("test-vm-4")
    expected = pool_reader.raw(pool_reader.disks(vm.uuid)["0"])
    hosts = pool_reader.xenapi.host.get_all_records()
    member_uuid = next(h["uuid"] for h in hosts.values() if h["address"] == "127.0.0.2")
    pool_reader.close()
    sim.control.rate_limit(8 * 1024 * 1024)
    run, thread = back_up_in_background(vm, store)
    wait_for_phase(run, "streaming")
    sim.control.move_master(member_uuid)
    thread.join(180)

    vm_backup = run.vm_backups.get()
    assert vm_backup.status in (RunStatus.SUCCESS, RunStatus.WARNING), vm_backup.error
    repo = open_repository(store)
    data = b"".join(d for _, d in repo.open_disk(vm_backup.restore_point.point_id, "vbd0").stream())
    assert data == expected
    survivor = sim.session(sim.member_url(1))
    snapshots = [r for r in survivor.xenapi.VM.get_all_records().values() if r["is_a_snapshot"]]
    survivor.xenapi.session.logout()
    assert snapshots == []


def test_a_data_store_without_room_skips_the_backup_before_the_snapshot(vm_named, store, pool_reader, monkeypatch):
    vm = vm_named("test-vm-1")
    first = back_up(vm, store)
    assert first.status == RunStatus.SUCCESS, first.error
    monkeypatch.setattr(backends.LocalBackend, "free_space", lambda self: first.bytes_stored // 2)

    second = back_up(vm, store)

    assert second.status == RunStatus.SKIPPED
    assert f"data store local has {first.bytes_stored // 2 / 1e6:.1f} MB free" in second.error
    assert pool_reader.snapshots() == []


def test_a_first_backup_that_may_not_fit_the_data_store_goes_ahead_with_a_warning(vm_named, store, monkeypatch):
    vm = vm_named("test-vm-1")
    monkeypatch.setattr(backends.LocalBackend, "free_space", lambda self: 1000)

    vm_backup = back_up(vm, store)

    assert vm_backup.status == RunStatus.WARNING, vm_backup.error
    assert any("before compression and deduplication; it may not fit" in w for w in vm_backup.warnings)
