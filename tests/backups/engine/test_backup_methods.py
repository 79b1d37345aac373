"""Each backup method against the simulator: the stored disks equal the VM's disks, the VM
is left in its power state, and no snapshot is left behind."""
import threading
import time

import pytest
from django.db import connection

from backups.choices import BackupMethod, BackupPhase, QuiesceFallback, RunStatus, StoreKind, Trigger
from backups.models import VmBackup
from backups.services import request_backup, run_in_this_process
from backups.stores import create_store, open_repository
from xenpools.inventory import sync_pool
from xenpools.models import VM

pytestmark = pytest.mark.slow


def back_up(vm, store, method, **options):
    run = request_backup(vm=vm, store=store, method=method, trigger=Trigger.CLI, **options)
    run = run_in_this_process(run)
    return run.vm_backups.get()


def stored_disk(store, point_id, key):
    repo = open_repository(store)
    return b"".join(data for _, data in repo.open_disk(point_id, key).stream())


@pytest.mark.parametrize("vm_name,power", [("test-vm-1", "Running"), ("test-vm-2", "Halted")])
def test_a_normal_backup_stores_the_disks_byte_exact(vm_named, store, pool_reader, vm_name, power):
    vm = vm_named(vm_name)
    expected = {dev: pool_reader.raw(uuid) for dev, uuid in pool_reader.disks(vm.uuid).items()}

    vm_backup = back_up(vm, store, BackupMethod.NORMAL)

    assert vm_backup.status == RunStatus.SUCCESS, vm_backup.error
    assert vm_backup.kind == "full"
    point = vm_backup.restore_point
    for dev, data in expected.items():
        assert stored_disk(store, point.point_id, f"vbd{dev}") == data
    assert pool_reader.xenapi.VM.get_power_state(pool_reader.vm(vm.uuid)) == power
    assert pool_reader.snapshots() == []
    assert vm_backup.bytes_processed == sum(len(d) for d in expected.values())


def power_state_while_streaming(sim, pool, pool_reader, store, **options):
    """Back up a small running VM offline with a slow transfer; the VM's power state seen
    while its disks stream, and the finished VM backup."""
    made = sim.control.create_vm("offline-small", [4 << 20], power_state="Running", written_blocks=8)
    sync_pool(pool)
    vm = VM.objects.get(pool=pool, uuid=made["uuid"])
    sim.control.rate_limit(512 << 10)  # about 8 s of streaming: time to look at the VM meanwhile
    run = request_backup(vm=vm, store=store, method=BackupMethod.OFFLINE, trigger=Trigger.CLI, **options)

    def back_up_in_a_thread():
        try:
            run_in_this_process(run)
        finally:
            connection.close()

    thread = threading.Thread(target=back_up_in_a_thread)
    thread.start()
    deadline, seen = time.monotonic() + 60, None
    while seen is None and time.monotonic() < deadline and thread.is_alive():
        if VmBackup.objects.get(run=run).phase == BackupPhase.STREAMING:
            seen = pool_reader.xenapi.VM.get_power_state(pool_reader.vm(vm.uuid))
        time.sleep(0.05)
    thread.join(120)
    sim.control.rate_limit(0)
    return seen, run.vm_backups.get()


def test_an_offline_backup_with_snapshot_restarts_the_vm_before_the_export(sim, pool, store, pool_reader):
    """Snapshot + restart: the VM runs again while its snapshot streams (a plain offline
    export would keep it halted until the end)."""
    seen, vm_backup = power_state_while_streaming(sim, pool, pool_reader, store)
    assert vm_backup.status == RunStatus.SUCCESS, vm_backup.error
    assert seen == "Running"
    assert pool_reader.snapshots() == []


def test_an_offline_backup_without_snapshot_keeps_the_vm_halted_during_the_export(sim, pool, store, pool_reader):
    seen, vm_backup = power_state_while_streaming(sim, pool, pool_reader, store, restart_after_snapshot=False)
    assert vm_backup.status == RunStatus.SUCCESS, vm_backup.error
    assert seen == "Halted"
    assert pool_reader.xenapi.VM.get_power_state(pool_reader.vm(vm_backup.vm_uuid)) == "Running"


def test_an_offline_backup_restarts_the_vm_and_reports_the_downtime(vm_named, store, pool_reader):
    vm = vm_named("test-vm-3")
    expected = {dev: pool_reader.raw(uuid) for dev, uuid in pool_reader.disks(vm.uuid).items()}

    vm_backup = back_up(vm, store, BackupMethod.OFFLINE)

    assert vm_backup.status == RunStatus.SUCCESS, vm_backup.error
    assert vm_backup.downtime_seconds is not None and vm_backup.downtime_seconds >= 0
    assert pool_reader.xenapi.VM.get_power_state(pool_reader.vm(vm.uuid)) == "Running"
    for dev, data in expected.items():
        assert stored_disk(store, vm_backup.restore_point.point_id, f"vbd{dev}") == data
    assert pool_reader.snapshots() == []


def test_an_offline_backup_without_snapshot_exports_the_halted_vm_then_starts_it(vm_named, store, pool_reader):
    vm = vm_named("test-vm-1")

    vm_backup = back_up(vm, store, BackupMethod.OFFLINE, restart_after_snapshot=False)

    assert vm_backup.status == RunStatus.SUCCESS, vm_backup.error
    assert pool_reader.xenapi.VM.get_power_state(pool_reader.vm(vm.uuid)) == "Running"
    assert vm_backup.downtime_seconds > 0
    assert pool_reader.snapshots() == []


def test_a_live_memory_backup_keeps_the_memory_image(vm_named, store, pool_reader):
    vm = vm_named("test-vm-1")

    vm_backup = back_up(vm, store, BackupMethod.MEMORY)

    assert vm_backup.status == RunStatus.SUCCESS, vm_backup.error
    point = vm_backup.restore_point
    assert point.has_memory
    manifest = open_repository(store).load_manifest(point.point_id)
    assert "suspend" in [disk.key for disk in manifest.disks]
    assert pool_reader.xenapi.VM.get_power_state(pool_reader.vm(vm.uuid)) == "Running"
    assert pool_reader.snapshots() == []


def test_a_memory_backup_of_a_suspended_vm_keeps_its_memory_image(vm_named, store, pool_reader):
    # xapi_vm_clone.ml: a checkpoint of a Suspended VM is Suspended with a clone of its
    # suspend VDI (xapi_vm_lifecycle.ml allows checkpoint on paused, suspended, running).
    vm = vm_named("test-vm-1")
    x = pool_reader.xenapi
    x.VM.suspend(pool_reader.vm(vm.uuid))
    image = x.VM.get_suspend_VDI(pool_reader.vm(vm.uuid))

    vm_backup = back_up(vm, store, BackupMethod.MEMORY)

    assert vm_backup.status == RunStatus.SUCCESS, (vm_backup.error, vm_backup.warnings)
    assert vm_backup.restore_point.has_memory
    manifest = open_repository(store).load_manifest(vm_backup.restore_point.point_id)
    assert "suspend" in [disk.key for disk in manifest.disks]
    assert x.VM.get_power_state(pool_reader.vm(vm.uuid)) == "Suspended"
    assert x.VM.get_suspend_VDI(pool_reader.vm(vm.uuid)) == image
    assert pool_reader.snapshots() == []


def test_a_quiesced_backup_of_a_linux_guest_fails_by_default(vm_named, store, pool_reader):
    vm_backup = back_up(vm_named("test-vm-1"), store, BackupMethod.QUIESCED)

    assert vm_backup.status == RunStatus.FAILED
    assert "quiesced snapshot not possible" in vm_backup.error
    assert pool_reader.snapshots() == []


def test_a_quiesced_backup_falls_back_to_a_normal_snapshot_when_the_job_allows_it(vm_named, store, pool_reader):
    vm_backup = back_up(vm_named("test-vm-1"), store, BackupMethod.QUIESCED,
                        quiesce_fallback=QuiesceFallback.NORMAL)

    assert vm_backup.status == RunStatus.WARNING, vm_backup.error
    assert any("normal snapshot instead" in w for w in vm_backup.warnings)
    assert vm_backup.restore_point is not None


def test_a_quiesced_backup_of_a_windows_guest_uses_vss_on_an_old_pool(sim, vm_named, store, pool_reader):
    sim.control.set_product_version("8.0.0")
    vm = vm_named("test-vm-2")
    pool_reader.xenapi.VM.start(pool_reader.vm(vm.uuid), False, False)

    vm_backup = back_up(vm, store, BackupMethod.QUIESCED)

    assert vm_backup.status == RunStatus.SUCCESS, vm_backup.error
    assert vm_backup.warnings == []
    assert pool_reader.snapshots() == []


def test_a_backup_to_an_s3_store_is_the_same_restore_point(vm_named, pool_reader, s3_endpoint, transactional_db):
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket="engine-backups")
    s3_store = create_store(name="s3", kind=StoreKind.S3, s3_endpoint=s3_endpoint, s3_bucket="engine-backups",
                            s3_prefix="site1", s3_access_key="testing", s3_secret="testing",
                            passphrase="an s3 passphrase")
    vm = vm_named("test-vm-3")
    expected = pool_reader.raw(pool_reader.disks(vm.uuid)["0"])

    vm_backup = back_up(vm, s3_store, BackupMethod.NORMAL)

    assert vm_backup.status == RunStatus.SUCCESS, vm_backup.error
    assert stored_disk(s3_store, vm_backup.restore_point.point_id, "vbd0") == expected
    assert "testing" not in s3_store.s3_secret_encrypted
