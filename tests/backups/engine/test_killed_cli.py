"""`manage.py backup` killed with SIGKILL in the middle of a backup: a new backup of the same
VM can be requested at once on the same host (the dead process is known dead, no waiting for
its heartbeat to go stale), on SQLite as on PostgreSQL."""
import os
import signal
import subprocess
import sys

import pytest

from backups.choices import RunStatus
from backups.engine import backup as engine
from backups.models import VmBackup
from tests.fixtures.cluster import REPO, shared_database_env, wait_for

pytestmark = pytest.mark.slow


def backup_command(vm, store):
    return [sys.executable, "manage.py", "backup", "--vm", vm.uuid, "--store", store.name, "--method", "normal"]


def test_a_killed_cli_backup_does_not_block_the_next_one(sim, vm_named, store, pool_reader):
    assert engine.LEASE_STALE_AFTER >= 120
    vm = vm_named("test-vm-4")
    env = shared_database_env()
    sim.control.rate_limit(4 * 1024 * 1024)
    first = subprocess.Popen(backup_command(vm, store), cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        running = wait_for(lambda: VmBackup.objects.filter(vm_uuid=vm.uuid, phase="streaming", bytes_read__gt=0).first()
                           or (first.poll() is not None and pytest.fail(first.stdout.read().decode())),
                           "the CLI backup to stream")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    sim.control.clear_faults()

    second = subprocess.run(backup_command(vm, store), cwd=REPO, env=env, capture_output=True, text=True, timeout=240)

    assert second.returncode == 0, second.stdout + second.stderr
    assert "backup of test-vm-4 done" in second.stdout
    killed = VmBackup.objects.get(pk=running.pk)
    assert killed.status == RunStatus.FAILED and "stopped during the backup" in killed.error
    new = VmBackup.objects.exclude(pk=running.pk).get(vm_uuid=vm.uuid)
    assert new.status in (RunStatus.SUCCESS, RunStatus.WARNING) and new.restore_point is not None
    assert pool_reader.snapshots() == []            # the killed run's snapshot went with the next run
