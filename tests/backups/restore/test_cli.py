"""manage.py restore: defaults, options, progress, problems listed, non-zero exit on failure."""
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from backups.choices import BackupMethod, RunStatus
from backups.models_restore import RestoreRun

from .conftest import back_up, restored_disks

pytestmark = pytest.mark.slow


def test_restore_from_the_command_line(vm_named, store, pool_reader):
    vm = vm_named("test-vm-2")
    expected = restored_disks(pool_reader, vm.uuid)
    point = back_up(vm, store, BackupMethod.NORMAL).restore_point
    out = io.StringIO()

    call_command("restore", "--backup", point.point_id, "--pool", "lab", "--sr", "Shared NFS storage",
                 "--name", "cli copy", "--start", "running", "--network", "0=Backup LAN", stdout=out)

    run = RestoreRun.objects.get()
    assert run.status == RunStatus.SUCCESS and run.trigger == "cli"
    assert "restored to pool lab as 'cli copy'" in out.getvalue()
    assert restored_disks(pool_reader, run.restored_vm_uuid) == expected
    assert pool_reader.xenapi.VM.get_power_state(pool_reader.vm(run.restored_vm_uuid)) == "Running"
    vif = pool_reader.xenapi.VM.get_VIFs(pool_reader.vm(run.restored_vm_uuid))[0]
    assert pool_reader.xenapi.network.get_name_label(pool_reader.xenapi.VIF.get_network(vif)) == "Backup LAN"


def test_the_command_lists_the_plan_problems(vm_named, store):
    point = back_up(vm_named("test-vm-2"), store, BackupMethod.NORMAL).restore_point

    with pytest.raises(CommandError) as refused:
        call_command("restore", "--backup", f"local:{point.point_id}", "--pool", "lab", "--keep-identity",
                     "--name", "test-vm-1", stdout=io.StringIO())

    message = str(refused.value)
    assert "still exists" in message and "already exists" in message
    assert not RestoreRun.objects.exists()


def test_the_command_names_what_it_cannot_find(vm_named, store):
    point = back_up(vm_named("test-vm-2"), store, BackupMethod.NORMAL).restore_point
    with pytest.raises(CommandError, match="no restore point"):
        call_command("restore", "--backup", "nope/20260101T000000Z", "--pool", "lab")
    with pytest.raises(CommandError, match="no pool named 'atlantis'"):
        call_command("restore", "--backup", point.point_id, "--pool", "atlantis")
    with pytest.raises(CommandError, match="no SR in pool lab named 'tape'"):
        call_command("restore", "--backup", point.point_id, "--pool", "lab", "--sr", "tape")


def test_a_failed_restore_exits_with_the_error(vm_named, store, sim):
    point = back_up(vm_named("test-vm-4"), store, BackupMethod.NORMAL).restore_point
    sim.control.drop_transfer(after_bytes=1 << 20, count=5)

    with pytest.raises(CommandError, match="restore of test-vm-4 failed"):
        call_command("restore", "--backup", point.point_id, "--pool", "lab", stdout=io.StringIO())


def test_download_disk_writes_the_disk_to_a_file(vm_named, store, pool_reader, tmp_path):
    vm = vm_named("test-vm-2")
    expected = restored_disks(pool_reader, vm.uuid)["0"]
    point = back_up(vm, store, BackupMethod.NORMAL).restore_point
    target = tmp_path / "disk.raw"

    call_command("download_disk", "--backup", point.point_id, "--output", str(target), stdout=io.StringIO())

    assert target.read_bytes() == expected
    with pytest.raises(CommandError, match="exists already"):
        call_command("download_disk", "--backup", point.point_id, "--output", str(target), stdout=io.StringIO())
