"""Back up with the engine, restore, and compare the restored VM with the VM at backup time."""
import pytest

from backups.choices import BackupMethod, RunStatus

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
