"""Replication: each backup of a covered VM queues a halted replica; only `keep` replicas stay."""
import pytest

from backups.choices import BackupMethod, RunStatus
from backups.models_restore import ReplicationPolicy, RestoreRun
from backups.restore.plan import run_restore
from backups.restore.replication import replication_status
from xenpools.models import StorageRepository

from .conftest import back_up, restored_disks

pytestmark = pytest.mark.slow


def replicas(reader, source_uuid):
    return sorted((r["name_label"], r["uuid"], r["power_state"], r["other_config"].get("sesamweb_replica_of"))
                  for r in reader.xenapi.VM.get_all_records().values()
                  if r["other_config"].get("sesamweb_replica_of") == source_uuid)


def run_queued_replicas():
    return [run_restore(run.pk) for run in RestoreRun.objects.filter(status=RunStatus.QUEUED, kind="replica")]


def test_each_backup_makes_a_halted_replica_and_only_the_newest_two_stay(vm_named, store, pool_reader, second_pool, sim):
    other_pool, other_reader, _ = second_pool
    vm = vm_named("test-vm-1")
    policy = ReplicationPolicy.objects.create(
        name="standby", vm_uuids=[vm.uuid], target_pool=other_pool, keep=2,
        target_sr=StorageRepository.objects.get(pool=other_pool, name="Shared NFS storage"),
        network_map={"Pool-wide network associated with eth0": "Backup LAN"})

    made = []
    for _ in range(3):
        sim.control.guest_write(4, vm=vm.uuid)
        expected = restored_disks(pool_reader, vm.uuid)
        vm_backup = back_up(vm, store, BackupMethod.NORMAL)
        assert vm_backup.status == RunStatus.SUCCESS, vm_backup.warnings
        [run] = run_queued_replicas()
        assert run.status == RunStatus.SUCCESS, run.error
        assert restored_disks(other_reader, run.restored_vm_uuid) == expected
        made.append(run.restored_vm_uuid)

    kept = replicas(other_reader, vm.uuid)
    assert [uuid for _, uuid, _, _ in kept] and {uuid for _, uuid, _, _ in kept} == set(made[1:])
    assert all(state == "Halted" and name.startswith("test-vm-1 (replica) ") for name, _, state, _ in kept)
    vif = other_reader.xenapi.VM.get_VIFs(other_reader.vm(made[-1]))[0]
    assert other_reader.xenapi.network.get_name_label(other_reader.xenapi.VIF.get_network(vif)) == "Backup LAN"
    [status] = replication_status()
    assert (status["policy"], status["vm_uuid"], status["state"]) == (policy, vm.uuid, RunStatus.SUCCESS)
    assert status["last_replica_uuid"] == made[-1] and status["age_seconds"] >= 0


def test_vms_of_other_stores_or_disabled_policies_are_not_replicated(vm_named, store, second_pool, tmp_path):
    other_pool, _, _ = second_pool
    ReplicationPolicy.objects.create(name="off", vm_uuids=[vm_named("test-vm-2").uuid], target_pool=other_pool,
                                     enabled=False)
    back_up(vm_named("test-vm-2"), store, BackupMethod.NORMAL)
    assert not RestoreRun.objects.exists()


def test_a_replica_that_cannot_be_made_is_a_warning_on_the_backup(vm_named, store, second_pool):
    other_pool, _, _ = second_pool
    full = StorageRepository.objects.get(pool=other_pool, name="Shared NFS storage")
    StorageRepository.objects.filter(pk=full.pk).update(physical_utilisation=full.physical_size)
    ReplicationPolicy.objects.create(name="everything", source_store=store, target_pool=other_pool, target_sr=full)

    vm_backup = back_up(vm_named("test-vm-2"), store, BackupMethod.NORMAL)

    assert vm_backup.status == RunStatus.WARNING
    assert vm_backup.restore_point is not None
    assert any("replication everything" in w and "free" in w for w in vm_backup.warnings)
    assert not RestoreRun.objects.exists()


def test_a_policy_made_on_the_command_line_shows_its_replicas_on_the_dashboard(vm_named, store, second_pool, admin_client):
    from io import StringIO

    from django.core.management import CommandError, call_command

    other_pool, _, _ = second_pool
    vm = vm_named("test-vm-2")
    out = StringIO()
    call_command("replication", "add", "dr-site", "--pool", other_pool.name, "--vm", vm.name, "--keep", "1",
                 "--network", "Pool-wide network associated with eth0=Backup LAN", stdout=out)
    assert "Replication policy dr-site" in out.getvalue()
    with pytest.raises(CommandError, match="exists already"):
        call_command("replication", "add", "dr-site", "--pool", other_pool.name, "--vm", vm.name)
    page = admin_client.get("/").content.decode()
    assert "No replica yet" in page

    back_up(vm, store, BackupMethod.NORMAL)
    [run] = run_queued_replicas()
    assert run.status == RunStatus.SUCCESS, run.error

    page = admin_client.get("/").content.decode()
    assert "dr-site" in page and "Succeeded" in page
    listing = StringIO()
    call_command("replication", "list", stdout=listing)
    assert "test-vm-2 [dr-site]: Succeeded" in listing.getvalue()
