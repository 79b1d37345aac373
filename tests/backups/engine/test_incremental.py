"""Incremental backups read only the changed blocks (CBT + NBD, or a VHD delta), write a
complete restore point, and fall back to a full backup with a note when the chain is broken."""
import pytest

from backups.choices import BackupMethod, RunStatus, Trigger
from backups.services import request_backup, run_in_this_process
from backups.stores import open_repository

pytestmark = pytest.mark.slow
BLOCK = 64 * 1024


def back_up(vm, store, **options):
    run = request_backup(vm=vm, store=store, method=BackupMethod.NORMAL, incremental=True, trigger=Trigger.CLI, **options)
    return run_in_this_process(run).vm_backups.get()


def stored(store, point, key="vbd0"):
    return b"".join(data for _, data in open_repository(store).open_disk(point.point_id, key).stream())


def chain_vdis(pool_reader):
    return {r["uuid"]: r for r in pool_reader.xenapi.VDI.get_all_records().values()
            if "sesamweb_chain" in r["other_config"]}


def test_the_second_backup_reads_only_the_changed_blocks_over_nbd(sim, vm_named, store, pool_reader):
    vm = vm_named("test-vm-4")           # 64 MiB disk
    first = back_up(vm, store)
    assert first.status == RunStatus.SUCCESS, first.error
    assert first.kind == "full"
    kept = chain_vdis(pool_reader)
    assert len(kept) == 1
    assert next(iter(kept.values()))["type"] == "cbt_metadata"       # data destroyed, CBT kept
    assert pool_reader.snapshots() == []

    written = sim.control.guest_write(10, vm=vm.uuid)
    second = back_up(vm, store)

    assert second.status == RunStatus.SUCCESS, second.error
    assert second.kind == "incremental"
    assert second.bytes_read <= 1.5 * len(set(written["blocks"])) * BLOCK
    disk = pool_reader.disks(vm.uuid)["0"]
    assert stored(store, second.restore_point) == pool_reader.raw(disk)
    assert second.restore_point.parent_point_id == first.restore_point.point_id
    assert len(chain_vdis(pool_reader)) == 1           # the parent's kept disk was replaced
    assert pool_reader.snapshots() == []
    # The parent restore point is still complete and unchanged.
    assert len(stored(store, first.restore_point)) == len(pool_reader.raw(disk))


def test_without_an_nbd_network_the_changes_come_from_a_vhd_delta(sim, vm_named, store, pool_reader):
    xenapi = pool_reader.xenapi
    for ref, record in xenapi.network.get_all_records().items():
        for purpose in record["purpose"]:
            xenapi.network.remove_purpose(ref, purpose)
    vm = vm_named("test-vm-3")
    first = back_up(vm, store)
    assert first.status == RunStatus.SUCCESS, first.error
    assert next(iter(chain_vdis(pool_reader).values()))["type"] != "cbt_metadata"   # base keeps its data

    sim.control.guest_write(5, vm=vm.uuid)
    second = back_up(vm, store)

    assert second.status == RunStatus.SUCCESS, second.error
    assert second.kind == "incremental"
    disk = pool_reader.disks(vm.uuid)["0"]
    assert stored(store, second.restore_point) == pool_reader.raw(disk)


def test_a_deleted_chain_snapshot_gives_a_full_backup_with_a_note(sim, vm_named, store, pool_reader):
    vm = vm_named("test-vm-4")
    back_up(vm, store)
    for uuid in chain_vdis(pool_reader):
        pool_reader.xenapi.VDI.destroy(pool_reader.xenapi.VDI.get_by_uuid(uuid))

    again = back_up(vm, store)

    assert again.status == RunStatus.WARNING
    assert again.kind == "full"
    assert any("snapshot kept from the last backup was deleted" in w for w in again.warnings)
    disk = pool_reader.disks(vm.uuid)["0"]
    assert stored(store, again.restore_point) == pool_reader.raw(disk)


def test_disabled_cbt_gives_a_full_backup_with_a_note(sim, vm_named, store, pool_reader):
    vm = vm_named("test-vm-4")
    back_up(vm, store)
    xenapi = pool_reader.xenapi
    xenapi.VDI.disable_cbt(xenapi.VDI.get_by_uuid(pool_reader.disks(vm.uuid)["0"]))
    sim.control.guest_write(3, vm=vm.uuid)

    again = back_up(vm, store)

    assert again.kind == "full"
    assert any("changed block tracking was disabled" in w for w in again.warnings)
    assert len(chain_vdis(pool_reader)) == 1           # only the new chain disk is kept
    assert stored(store, again.restore_point) == pool_reader.raw(pool_reader.disks(vm.uuid)["0"])
