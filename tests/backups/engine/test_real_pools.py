"""What real pools do that a lax simulator hid (issue 16): slow snapshots, storage-manager
refusals other than a full SR, LVM storage."""
import time

import pytest

from backups.choices import RunStatus
from xenpools.connection import PoolConnection

from .test_failures import back_up

pytestmark = pytest.mark.slow


def test_a_snapshot_slower_than_one_xmlrpc_call_may_wait_succeeds_and_leaves_no_stray_snapshot(
        sim, vm_named, store, pool_reader, monkeypatch):
    # A snapshot takes as long as the storage needs; one XML-RPC call has a time-out
    # (RPC_TIMEOUT). Waiting on a synchronous VM.snapshot timed out, failed the backup and left
    # the snapshot the pool finished afterwards.
    sim.control.call("set_timing", snapshot=3)
    opened = PoolConnection.open.__func__
    monkeypatch.setattr(PoolConnection, "open",
                        classmethod(lambda cls, pool, **kw: opened(cls, pool, rpc_timeout=1)))
    vm = vm_named("test-vm-1")

    vm_backup = back_up(vm, store)

    assert vm_backup.status == RunStatus.SUCCESS, vm_backup.error
    assert pool_reader.snapshots() == []


def test_a_snapshot_chain_too_long_is_reported_as_such_with_the_advice_to_coalesce(sim, vm_named, store, pool_reader):
    # LVHDSR._snapshot: SnapshotChainTooLong (109) when the VHD chain is 30 deep; it is not a
    # full SR, and more free space would not help.
    vm = vm_named("test-vm-1")
    sim.control.fail_next_call("VM.snapshot", ["SR_BACKEND_FAILURE_109", "", "The snapshot chain is too long", ""])

    vm_backup = back_up(vm, store)

    assert vm_backup.status == RunStatus.FAILED
    assert "snapshot chain of a disk is too long" in vm_backup.error
    assert "coalesce" in vm_backup.error and "full" not in vm_backup.error
    assert pool_reader.snapshots() == []


def test_a_snapshot_that_would_not_fit_a_thick_lvm_sr_is_skipped_before_it_is_taken(sim, pool, store, pool_reader):
    # LVHDVDI._snapshot needs the data written since the last snapshot in 4 MiB-rounded logical
    # volumes (with 4 KiB of bitmap per 2 MiB block and the metadata of a 2 TiB VHD), an 8 MiB
    # snapshot volume and two 4 MiB journals: 88 MiB for a fully written 64 MiB disk, which the
    # old estimate (disk size + 8 MiB) put at 72 MiB.
    from xenpools.inventory import sync_pool
    from xenpools.models import VM

    lvm = sim.control.create_sr(name="iSCSI LVM", type="lvmoiscsi", size=4 << 30)
    made = sim.control.create_vm("on-lvm", [64 << 20], sr=lvm["uuid"], power_state="Running")
    sim.control.guest_write(blocks=1024, vdi=made["vdis"][0], seed=5)      # every block
    sim.control.fill_sr(sr=lvm["uuid"], free_bytes=80 << 20)
    sync_pool(pool)
    vm = VM.objects.get(pool=pool, uuid=made["uuid"])

    vm_backup = back_up(vm, store)

    assert vm_backup.status == RunStatus.SKIPPED, vm_backup.error
    assert "storage repository iSCSI LVM has 83.9 MB free; the snapshot needs about 92.3 MB" in vm_backup.error
    assert "thick LVM: up to the full disk size" in vm_backup.error
    assert pool_reader.snapshots() == []


def test_a_vm_whose_lvm_disk_has_a_chain_30_deep_fails_with_the_advice_to_coalesce(sim, pool, store, pool_reader):
    # LVHDVDI._snapshot refuses a disk whose VHD chain is MAX_CHAIN_SIZE (30) deep: here 29
    # snapshots another tool left behind. Deleting them lets the SR coalesce; then it works.
    from xenpools.inventory import sync_pool
    from xenpools.models import VM

    lvm = sim.control.create_sr(name="iSCSI LVM", type="lvmoiscsi", size=4 << 30)
    made = sim.control.create_vm("on-lvm", [16 << 20], sr=lvm["uuid"], power_state="Running", written_blocks=8)
    x = pool_reader.xenapi
    vdi = x.VDI.get_by_uuid(made["vdis"][0])
    left_behind = [x.VDI.snapshot(vdi, {}) for _ in range(29)]
    sync_pool(pool)
    vm = VM.objects.get(pool=pool, uuid=made["uuid"])

    failed = back_up(vm, store)

    assert failed.status == RunStatus.FAILED
    assert "snapshot chain of a disk is too long" in failed.error and "coalesce" in failed.error
    assert "SR_BACKEND_FAILURE_109" in failed.error and "full" not in failed.error
    assert pool_reader.snapshots() == []
    for snapshot in left_behind:
        x.VDI.destroy(snapshot)
    deadline = time.monotonic() + 30                  # the garbage collector coalesces
    while any(not r["managed"] for r in x.VDI.get_all_records().values()):
        assert time.monotonic() < deadline, "the SR never coalesced"
        time.sleep(0.05)
    assert back_up(vm, store).status == RunStatus.SUCCESS


def test_a_snapshot_that_never_finishes_is_cancelled_and_reported(sim, vm_named, store, pool_reader, monkeypatch):
    # task.cancel only marks the task (xapi_task.ml cancel); the snapshot stops at its next
    # check (TaskHelper.exn_if_cancelling) and leaves nothing.
    from backups.engine import prepare

    sim.control.call("set_timing", snapshot=600)
    monkeypatch.setattr(prepare, "SNAPSHOT_TIMEOUT", 1)
    vm = vm_named("test-vm-1")

    vm_backup = back_up(vm, store)

    assert vm_backup.status == RunStatus.FAILED
    assert "did not finish the snapshot within 1 s; it was cancelled" in vm_backup.error
    deadline = time.monotonic() + 30
    while pool_reader.xenapi.VM.get_current_operations(pool_reader.vm(vm.uuid)):
        assert time.monotonic() < deadline, "the snapshot did not stop"
        time.sleep(0.05)
    assert pool_reader.snapshots() == []
