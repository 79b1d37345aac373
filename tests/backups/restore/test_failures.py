"""A restore that cannot finish leaves no VM and no VDI on the pool, and says why."""
import os
import threading
import time

import pytest

from backups.choices import BackupMethod, RunStatus
from backups.models_restore import RestoreRun
from backups.restore.plan import cancel_restore
from backups.repository.chunks import chunk_key
from backups.stores import open_repository
from xenpools.inventory import sync_pool
from xenpools.models import VM, StorageRepository

from .conftest import back_up, restore, vms_and_vdis

pytestmark = pytest.mark.slow


def corrupt_last_data_chunk(store, point_id, key="vbd0"):
    disk = open_repository(store).load_manifest(point_id).disk(key)
    chunk_id = [c for c in disk.chunks if c is not None][-1]
    path = os.path.join(store.path, chunk_key(chunk_id))
    with open(path, "r+b") as chunk_file:
        chunk_file.seek(-40, os.SEEK_END)
        byte = chunk_file.read(1)
        chunk_file.seek(-40, os.SEEK_END)
        chunk_file.write(bytes([byte[0] ^ 0xFF]))


def test_a_corrupted_chunk_aborts_the_import_and_leaves_nothing(vm_named, store, pool_reader, plan_for):
    vm_backup = back_up(vm_named("test-vm-4"), store, BackupMethod.NORMAL)
    corrupt_last_data_chunk(store, vm_backup.restore_point.point_id)
    before = vms_and_vdis(pool_reader)

    run = restore(plan_for(vm_backup))

    assert run.status == RunStatus.FAILED
    assert "damaged" in run.error
    assert vms_and_vdis(pool_reader) == before


def test_a_corrupted_chunk_on_the_per_disk_path_removes_the_created_vm(sim, pool, store, pool_reader, plan_for):
    made = sim.control.create_vm("two-disks", [8 << 20, 8 << 20], written_blocks=4)
    sync_pool(pool)
    vm_backup = back_up(VM.objects.get(pool=pool, uuid=made["uuid"]), store, BackupMethod.NORMAL)
    corrupt_last_data_chunk(store, vm_backup.restore_point.point_id, "vbd1")
    plan = plan_for(vm_backup)
    plan.sr_by_disk["vbd1"] = StorageRepository.objects.filter(pool=pool, name__startswith="Local").first()
    before = vms_and_vdis(pool_reader)

    run = restore(plan)

    assert run.status == RunStatus.FAILED
    assert run.path == "per-disk"
    assert "damaged" in run.error
    assert vms_and_vdis(pool_reader) == before


@pytest.mark.parametrize("per_disk", [False, True])
def test_a_dropped_transfer_leaves_nothing(sim, pool, store, pool_reader, plan_for, per_disk):
    made = sim.control.create_vm("two-disks", [8 << 20, 8 << 20], written_blocks=40)
    sync_pool(pool)
    vm_backup = back_up(VM.objects.get(pool=pool, uuid=made["uuid"]), store, BackupMethod.NORMAL)
    plan = plan_for(vm_backup)
    if per_disk:
        plan.sr_by_disk["vbd1"] = StorageRepository.objects.filter(pool=pool, name__startswith="Local").first()
    before = vms_and_vdis(pool_reader)
    sim.control.drop_transfer(after_bytes=1 << 20, count=5)

    run = restore(plan)

    assert run.status == RunStatus.FAILED
    assert run.error
    run.refresh_from_db()
    assert run.phase == "streaming" and run.phase_text == "Failed while streaming disks"   # not "Done"
    assert vms_and_vdis(pool_reader) == before


def test_a_cancelled_restore_stops_and_leaves_nothing(sim, vm_named, store, pool_reader, plan_for):
    vm_backup = back_up(vm_named("test-vm-4"), store, BackupMethod.NORMAL)
    before = vms_and_vdis(pool_reader)
    sim.control.rate_limit(1 << 20)
    from backups.choices import Trigger
    from backups.restore.plan import request_restore, run_restore
    run = request_restore(plan_for(vm_backup), trigger=Trigger.CLI, queue=False)
    thread = threading.Thread(target=run_restore, args=(run.pk,))
    thread.start()
    deadline = time.monotonic() + 60
    # Mid-stream: disk bytes have been restored, and the stream (1 MiB/s) is far from the end.
    while not (0 < RestoreRun.objects.get(pk=run.pk).bytes_done) and time.monotonic() < deadline:
        time.sleep(0.05)
    streaming = RestoreRun.objects.get(pk=run.pk)
    assert streaming.phase == "streaming" and 0 < streaming.bytes_done < streaming.bytes_total, \
        (streaming.phase, streaming.bytes_done, streaming.bytes_total)
    cancel_restore(run)
    thread.join(120)

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED, run.error
    assert run.bytes_done < run.bytes_total  # the stream stopped; it did not run to its end first
    assert vms_and_vdis(pool_reader) == before


def test_a_cancel_before_the_start_stops_the_queued_restore(vm_named, store, plan_for):
    from backups.choices import Trigger
    from backups.restore.plan import request_restore, run_restore
    vm_backup = back_up(vm_named("test-vm-4"), store, BackupMethod.NORMAL)
    run = request_restore(plan_for(vm_backup), trigger=Trigger.CLI, queue=False)

    cancel_restore(run)

    assert run.status == RunStatus.CANCELLED
    assert run_restore(run.pk) is None


def test_what_an_interrupted_restore_left_is_removed_by_the_next_restore(pool, vm_named, store, pool_reader, plan_for):
    from django.utils import timezone

    from backups.restore.engine import fail_abandoned_restores
    vm_backup = back_up(vm_named("test-vm-4"), store, BackupMethod.NORMAL)
    killed = RestoreRun.objects.create(store_point_id="x/y", status=RunStatus.RUNNING, target_pool=pool,
                                       lease_heartbeat=timezone.now() - timezone.timedelta(minutes=10))
    xenapi = pool_reader.xenapi
    sr = xenapi.SR.get_by_uuid(StorageRepository.objects.get(pool=pool, name="Shared NFS storage").uuid)
    orphan = xenapi.VDI.create({"name_label": "half restored", "SR": sr, "virtual_size": str(1 << 20), "type": "user",
                                "sharable": False, "read_only": False, "other_config": {"sesamweb_restore": str(killed.pk)},
                                "xenstore_data": {}, "sm_config": {}, "tags": []})
    orphan_uuid = xenapi.VDI.get_uuid(orphan)

    assert fail_abandoned_restores() == 1
    run = restore(plan_for(vm_backup))

    assert run.status == RunStatus.WARNING, run.error
    assert any("interrupted restores" in w for w in run.warnings)
    assert orphan_uuid not in vms_and_vdis(pool_reader)[1]


def test_a_wrong_key_fails_before_the_pool_is_touched(vm_named, store, pool_reader, plan_for, tmp_path):
    from backups.restore.plan import request_restore, run_restore
    from backups.stores import create_store
    from backups.choices import Trigger
    vm_backup = back_up(vm_named("test-vm-4"), store, BackupMethod.NORMAL)
    run = request_restore(plan_for(vm_backup), trigger=Trigger.CLI, queue=False)
    other = create_store(name="other", path=str(tmp_path / "other"), passphrase="another passphrase here")
    store.set_data_key(other.data_key())
    store.save()
    before = vms_and_vdis(pool_reader)

    run = run_restore(run.pk)

    assert run.status == RunStatus.FAILED
    assert "cannot open data store local" in run.error
    assert vms_and_vdis(pool_reader) == before
