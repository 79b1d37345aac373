"""A worker killed with SIGKILL in the middle of a backup (PostgreSQL: the worker is another
process sharing the database): the backup is marked failed, its snapshot is removed by the
next run, and no partial restore point is ever listed."""
import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.db import connection

from backups.choices import BackupMethod, RunStatus, Trigger
from backups.engine import backup as engine
from backups.models import VmBackup
from backups.services import request_backup, run_in_this_process
from backups.stores import open_repository

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def database_url():
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def test_a_killed_worker_leaves_no_snapshot_and_no_partial_backup(sim, vm_named, store, pool_reader, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("needs a database shared between processes (PostgreSQL tier)")
    vm = vm_named("test-vm-4")
    sim.control.rate_limit(4 * 1024 * 1024)
    env = dict(os.environ, DATABASE_URL=database_url(), SESAM_SECRET_KEY=settings.SESAM_SECRET_KEY,
               DJANGO_SECRET_KEY=settings.SECRET_KEY)
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "backup", "--vm", vm.uuid, "--store", store.name, "--method", "normal"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = VmBackup.objects.filter(vm_uuid=vm.uuid, phase="streaming", bytes_read__gt=0).first()
            if running:
                break
            assert worker.poll() is None, worker.stdout.read().decode()
            time.sleep(0.1)
        else:
            raise AssertionError("the backup never started streaming")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert len(pool_reader.snapshots()) == 1          # the killed worker's snapshot is still there
    sim.control.clear_faults()

    monkeypatch.setattr(engine, "LEASE_STALE_AFTER", 1)
    time.sleep(2)
    run = request_backup(vm=vm, store=store, method=BackupMethod.NORMAL, trigger=Trigger.CLI)
    new = run_in_this_process(run).vm_backups.get()

    killed = VmBackup.objects.get(pk=running.pk)
    assert killed.status == RunStatus.FAILED and "stopped during the backup" in killed.error
    assert new.status == RunStatus.WARNING, new.error
    assert any("left on the pool by interrupted backups" in w for w in new.warnings)
    assert pool_reader.snapshots() == []
    assert [b.id for b in open_repository(store).list_backups(vm.uuid)] == [new.restore_point.point_id]
