"""Identity (keep / new / replace the original), disks to several SRs, network mapping."""
import pytest

from backups.choices import BackupMethod, RunStatus
from backups.restore.plan import RestorePlanError
from xenpools.inventory import sync_pool
from xenpools.models import Network, StorageRepository

from .conftest import back_up, restore, restored_disks, vm_config, vms_and_vdis

pytestmark = pytest.mark.slow


def test_keeping_the_identity_is_refused_while_the_original_exists(vm_named, store, plan_for):
    vm_backup = back_up(vm_named("test-vm-2"), store, BackupMethod.NORMAL)

    with pytest.raises(RestorePlanError) as refused:
        restore(plan_for(vm_backup, identity="keep"))

    problem = refused.value.problems[0]
    assert (problem.step, problem.field) == ("identity", "identity")
    assert "still exists" in problem.message and "test-vm-2" in problem.message


def test_replacing_a_running_original_is_refused_until_it_is_shut_down(vm_named, store, plan_for):
    vm_backup = back_up(vm_named("test-vm-1"), store, BackupMethod.NORMAL)

    with pytest.raises(RestorePlanError) as refused:
        restore(plan_for(vm_backup, identity="keep", replace_original=True))

    assert "shut it down first" in str(refused.value)


def test_replacing_a_halted_original_keeps_its_uuid_and_macs_and_drops_its_old_disks(
        sim, pool, vm_named, store, pool_reader, plan_for):
    vm = vm_named("test-vm-2")
    expected_disks = restored_disks(pool_reader, vm.uuid)
    expected = vm_config(pool_reader, vm.uuid)
    old_vdis = set(pool_reader.disks(vm.uuid).values())
    vm_backup = back_up(vm, store, BackupMethod.NORMAL)
    sim.control.guest_write(8, vm=vm.uuid)          # the original changes after the backup

    run = restore(plan_for(vm_backup, identity="keep", replace_original=True, name="test-vm-2"))

    assert run.status == RunStatus.SUCCESS, run.error
    assert run.restored_vm_uuid == vm.uuid
    assert restored_disks(pool_reader, vm.uuid) == expected_disks
    assert vm_config(pool_reader, vm.uuid)["vifs"] == expected["vifs"]          # MACs kept
    _, vdis = vms_and_vdis(pool_reader)
    assert not old_vdis & vdis
    assert len([r for r in pool_reader.xenapi.VM.get_all_records().values()
                if r["name_label"] == "test-vm-2" and not r["is_a_snapshot"]]) == 1


def test_keeping_the_identity_in_another_pool_keeps_uuid_and_macs(vm_named, store, pool_reader, plan_for, second_pool):
    other_pool, other_reader, _ = second_pool
    vm = vm_named("test-vm-1")
    expected = vm_config(pool_reader, vm.uuid)
    vm_backup = back_up(vm, store, BackupMethod.NORMAL)

    run = restore(plan_for(vm_backup, other_pool, identity="keep", name="test-vm-1 from lab"))

    assert run.status == RunStatus.SUCCESS, run.error
    assert run.restored_vm_uuid == vm.uuid
    assert vm_config(other_reader, vm.uuid)["vifs"] == expected["vifs"]


def test_disks_go_to_two_srs_through_the_per_disk_path(sim, pool, store, pool_reader, plan_for):
    made = sim.control.create_vm("two-disks", [8 << 20, 16 << 20], written_blocks=6)
    sync_pool(pool)
    from xenpools.models import VM
    vm = VM.objects.get(pool=pool, uuid=made["uuid"])
    expected_disks = restored_disks(pool_reader, vm.uuid)
    expected = vm_config(pool_reader, vm.uuid)
    vm_backup = back_up(vm, store, BackupMethod.NORMAL)
    local = StorageRepository.objects.filter(pool=pool, name__startswith="Local storage").first()
    plan = plan_for(vm_backup)
    plan.sr_by_disk["vbd1"] = local

    run = restore(plan)

    assert run.status == RunStatus.SUCCESS, run.error
    assert run.path == "per-disk"
    assert restored_disks(pool_reader, run.restored_vm_uuid) == expected_disks
    disks = pool_reader.disks(run.restored_vm_uuid)
    sr_of = {dev: pool_reader.xenapi.SR.get_uuid(pool_reader.xenapi.VDI.get_SR(pool_reader.xenapi.VDI.get_by_uuid(uuid)))
             for dev, uuid in disks.items()}
    assert sr_of["1"] == local.uuid and sr_of["0"] == plan.sr_by_disk["vbd0"].uuid
    config = vm_config(pool_reader, run.restored_vm_uuid)
    assert (config["memory"], config["vcpus"], sorted(config["vifs"])) == (expected["memory"], expected["vcpus"], sorted(expected["vifs"]))


def test_a_network_mapping_puts_the_vif_on_the_chosen_network(pool, vm_named, store, pool_reader, plan_for):
    vm_backup = back_up(vm_named("test-vm-2"), store, BackupMethod.NORMAL)
    backup_lan = Network.objects.get(pool=pool, name="Backup LAN")

    run = restore(plan_for(vm_backup, network_by_vif={"0": backup_lan}, disconnect_vifs=True))

    assert run.status == RunStatus.SUCCESS, run.error
    assert run.path == "xva-import"
    vif = pool_reader.xenapi.VM.get_VIFs(pool_reader.vm(run.restored_vm_uuid))[0]
    assert pool_reader.xenapi.network.get_uuid(pool_reader.xenapi.VIF.get_network(vif)) == backup_lan.uuid
    assert pool_reader.xenapi.VIF.get_locking_mode(vif) == "disabled"


def test_an_interface_mapped_to_no_network_is_left_out(vm_named, store, pool_reader, plan_for):
    vm_backup = back_up(vm_named("test-vm-2"), store, BackupMethod.NORMAL)

    run = restore(plan_for(vm_backup, network_by_vif={"0": None}))

    assert run.status == RunStatus.SUCCESS, run.error
    assert pool_reader.xenapi.VM.get_VIFs(pool_reader.vm(run.restored_vm_uuid)) == []


def test_a_failed_replace_keeps_the_original_disks_and_says_where_they_are(sim, vm_named, store, pool_reader, plan_for):
    vm = vm_named("test-vm-2")
    original_disks = restored_disks(pool_reader, vm.uuid)
    old_vdis = set(pool_reader.disks(vm.uuid).values())
    vm_backup = back_up(vm, store, BackupMethod.NORMAL)
    sim.control.drop_transfer(after_bytes=3 << 20, count=1)

    run = restore(plan_for(vm_backup, identity="keep", replace_original=True, name="test-vm-2"))

    assert run.status == RunStatus.FAILED
    _, vdis = vms_and_vdis(pool_reader)
    assert old_vdis <= vdis
    assert {pool_reader.raw(uuid) for uuid in old_vdis} == set(original_disks.values())
    # xapi (and the simulator) remove the halted original when a forced import begins
    assert vm.uuid not in vms_and_vdis(pool_reader)[0]
    assert any("kept untouched" in w and all(u in w for u in old_vdis) for w in run.warnings)


def test_an_original_started_after_the_check_is_left_running_and_the_restore_says_so(
        sim, vm_named, store, pool_reader, plan_for, monkeypatch):
    # import.ml VMHandler.precheck: a forced full restore over a VM of the same UUID that is
    # not halted skips it (left running); the import "succeeds" without a VM and leaves the
    # disks it imported behind.
    from backups.restore import engine

    vm = vm_named("test-vm-2")                       # halted when the restore checks it
    original_disks = pool_reader.disks(vm.uuid)
    vm_backup = back_up(vm, store, BackupMethod.NORMAL)
    before = vms_and_vdis(pool_reader)
    checked = engine._original_disks_to_replace

    def check_then_someone_starts_it(conn, plan, details):
        disks = checked(conn, plan, details)
        sim.control.set_power_state(vm=vm.uuid, power_state="Running")
        return disks

    monkeypatch.setattr(engine, "_original_disks_to_replace", check_then_someone_starts_it)

    run = restore(plan_for(vm_backup, identity="keep", replace_original=True, name="test-vm-2"))

    assert run.status == RunStatus.FAILED
    assert "test-vm-2" in run.error and "is running (it was started after the restore checked it)" in run.error
    assert "skipped the VM and left it running untouched: nothing was restored" in run.error
    assert pool_reader.xenapi.VM.get_power_state(pool_reader.vm(vm.uuid)) == "Running"
    assert pool_reader.disks(vm.uuid) == original_disks
    assert vms_and_vdis(pool_reader) == before      # the disks the pool imported were removed


def test_a_restore_to_a_pool_with_an_older_xapi_names_its_version_and_says_so(
        vm_named, store, pool_reader, plan_for, second_pool):
    # importexport.ml assert_compatible refuses an XVA whose header names a newer xapi build
    # (IMPORT_INCOMPATIBLE_VERSION, force or not); the header is all it compares.
    other_pool, other_reader, other = second_pool
    other.control.set_product_version("8.2.1")          # xapi 1.249; the backup's pool runs 24.39
    vm = vm_named("test-vm-2")
    expected = restored_disks(pool_reader, vm.uuid)
    vm_backup = back_up(vm, store, BackupMethod.NORMAL)

    run = restore(plan_for(vm_backup, other_pool, name="test-vm-2 on the 8.2 pool"))

    assert run.status == RunStatus.WARNING, run.error
    assert any("made by xapi 24.39" in w and "older xapi 1.249" in w for w in run.warnings), run.warnings
    assert restored_disks(other_reader, run.restored_vm_uuid) == expected
