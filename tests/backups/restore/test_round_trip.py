"""Back up with the engine, restore, and compare the restored VM with the VM at backup time."""
import pytest

from backups.choices import BackupMethod, RunStatus

from xenpools.inventory import sync_pool
from xenpools.models import VM

from .conftest import back_up, restore, restored_disks, vm_config

pytestmark = pytest.mark.slow


def test_a_normal_backup_restores_byte_identical_disks_and_the_same_configuration(vm_named, store, pool_reader, plan_for):
    vm = vm_named("test-vm-1")
    expected_disks = restored_disks(pool_reader, vm.uuid)
    expected = vm_config(pool_reader, vm.uuid)
    vm_backup = back_up(vm, store, BackupMethod.NORMAL)

    run = restore(plan_for(vm_backup))

    assert run.status == RunStatus.SUCCESS, run.error
    assert run.path == "xva-import"
    assert run.restored_vm_uuid and run.restored_vm_uuid != vm.uuid
    assert restored_disks(pool_reader, run.restored_vm_uuid) == expected_disks
    config = vm_config(pool_reader, run.restored_vm_uuid)
    assert (config["memory"], config["vcpus"], config["disks"]) == (expected["memory"], expected["vcpus"], expected["disks"])
    assert sorted(config["vifs"]) == sorted(expected["vifs"])
    assert set(config["vifs"].values()).isdisjoint(expected["vifs"].values())     # new MACs
    assert config["power_state"] == "Halted"
    assert pool_reader.xenapi.VM.get_name_label(pool_reader.vm(run.restored_vm_uuid)).startswith("test-vm-1 (restored ")


def test_an_offline_backup_restores_byte_identical(vm_named, store, pool_reader, plan_for):
    vm = vm_named("test-vm-3")
    expected_disks = restored_disks(pool_reader, vm.uuid)
    vm_backup = back_up(vm, store, BackupMethod.OFFLINE)

    run = restore(plan_for(vm_backup))

    assert run.status == RunStatus.SUCCESS, run.error
    assert restored_disks(pool_reader, run.restored_vm_uuid) == expected_disks


def test_a_quiesced_backup_of_a_windows_vm_on_an_8_0_pool_restores(sim, pool, vm_named, store, pool_reader, plan_for):
    sim.control.set_product_version("8.0.0")
    sync_pool(pool)
    pool.refresh_from_db()
    assert pool.product_version.startswith("8.0")     # the restore then writes SHA-1 checksum members
    vm = vm_named("test-vm-2")
    pool_reader.xenapi.VM.start(pool_reader.vm(vm.uuid), False, False)
    expected_disks = restored_disks(pool_reader, vm.uuid)
    expected = vm_config(pool_reader, vm.uuid)
    vm_backup = back_up(vm, store, BackupMethod.QUIESCED)

    run = restore(plan_for(vm_backup, start_mode="running"))

    assert run.status == RunStatus.SUCCESS, run.error
    assert restored_disks(pool_reader, run.restored_vm_uuid) == expected_disks
    config = vm_config(pool_reader, run.restored_vm_uuid)
    assert config["power_state"] == "Running"
    assert (config["memory"], config["vcpus"], config["disks"]) == (expected["memory"], expected["vcpus"], expected["disks"])


def test_a_live_memory_restore_comes_back_suspended_and_resumes(vm_named, store, pool_reader, plan_for):
    vm = vm_named("test-vm-1")
    expected_disks = restored_disks(pool_reader, vm.uuid)
    vm_backup = back_up(vm, store, BackupMethod.MEMORY)

    suspended = restore(plan_for(vm_backup, start_mode="suspended"))
    resumed = restore(plan_for(vm_backup, start_mode="resume", name="resumed copy"))

    assert suspended.status == RunStatus.SUCCESS, suspended.error
    ref = pool_reader.vm(suspended.restored_vm_uuid)
    assert pool_reader.xenapi.VM.get_power_state(ref) == "Suspended"
    assert pool_reader.xenapi.VM.get_suspend_VDI(ref) != "OpaqueRef:NULL"
    assert restored_disks(pool_reader, suspended.restored_vm_uuid) == expected_disks
    pool_reader.xenapi.VM.resume(ref, False, False)
    assert pool_reader.xenapi.VM.get_power_state(ref) == "Running"
    assert resumed.status == RunStatus.SUCCESS, resumed.error
    assert pool_reader.xenapi.VM.get_power_state(pool_reader.vm(resumed.restored_vm_uuid)) == "Running"


def test_a_memory_point_restored_halted_leaves_the_memory_image_out(vm_named, store, pool_reader, plan_for):
    vm_backup = back_up(vm_named("test-vm-1"), store, BackupMethod.MEMORY)

    run = restore(plan_for(vm_backup))

    assert run.status == RunStatus.SUCCESS, run.error
    ref = pool_reader.vm(run.restored_vm_uuid)
    assert pool_reader.xenapi.VM.get_power_state(ref) == "Halted"
    assert pool_reader.xenapi.VM.get_suspend_VDI(ref) == "OpaqueRef:NULL"


def test_an_incremental_point_restores_the_complete_disk(sim, vm_named, store, pool_reader, plan_for):
    vm = vm_named("test-vm-1")
    back_up(vm, store, BackupMethod.NORMAL, incremental=True)
    sim.control.guest_write(16, vm=vm.uuid)
    expected_disks = restored_disks(pool_reader, vm.uuid)
    second = back_up(vm, store, BackupMethod.NORMAL, incremental=True)
    assert second.kind == "incremental"

    run = restore(plan_for(second))

    assert run.status == RunStatus.SUCCESS, run.error
    assert restored_disks(pool_reader, run.restored_vm_uuid) == expected_disks


def test_a_point_restores_into_a_second_pool(vm_named, store, pool_reader, plan_for, second_pool):
    other_pool, other_reader, _ = second_pool
    vm = vm_named("test-vm-4")
    expected_disks = restored_disks(pool_reader, vm.uuid)
    vm_backup = back_up(vm, store, BackupMethod.NORMAL)

    plan = plan_for(vm_backup, other_pool)
    run = restore(plan)

    assert run.status == RunStatus.SUCCESS, run.error
    assert {sr.pool_id for sr in plan.sr_by_disk.values()} == {other_pool.pk}
    assert restored_disks(other_reader, run.restored_vm_uuid) == expected_disks
    assert VM.objects.filter(pool=other_pool, uuid=run.restored_vm_uuid).exists()     # inventory synced
    vif = other_reader.xenapi.VM.get_VIFs(other_reader.vm(run.restored_vm_uuid))[0]
    network = other_reader.xenapi.VIF.get_network(vif)
    assert other_reader.xenapi.network.get_uuid(network) == plan.network_by_vif["0"].uuid


def test_a_vm_that_cannot_be_started_stays_restored_with_a_warning(sim, vm_named, store, pool_reader, plan_for):
    vm_backup = back_up(vm_named("test-vm-2"), store, BackupMethod.NORMAL)
    sim.control.fail_next_call("VM.start", ["HOST_NOT_ENOUGH_FREE_MEMORY", "67108864", "0"])

    run = restore(plan_for(vm_backup, start_mode="running"))

    assert run.status == RunStatus.WARNING, run.error
    assert any("could not be started: HOST_NOT_ENOUGH_FREE_MEMORY" in w for w in run.warnings)
    assert pool_reader.xenapi.VM.get_power_state(pool_reader.vm(run.restored_vm_uuid)) == "Halted"
