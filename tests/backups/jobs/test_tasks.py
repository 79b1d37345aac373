"""The job watchdog through a real django-q2 cluster: a worker SIGKILLed in the middle of a
job's backup is failed by the watchdog's Schedule row at once (its process on this host is
gone; no waiting for the heartbeat to go stale), its snapshot is removed, and the next run of
the same VM starts at once."""
import os
import signal
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule, Task

from backups.choices import RunStatus
from backups.engine import backup as engine
from backups.jobs.schedules import WATCHDOG_TASK, ensure_watchdog
from backups.jobs.tasks import queue_job_run
from backups.models import BackupRun, VmBackup
from tests.backups.jobs.test_cluster import broker  # noqa: F401 - the ORM / Redis broker cases

pytestmark = pytest.mark.slow


def test_the_watchdog_fails_a_killed_workers_backup_and_the_vm_runs_again_at_once(
        broker, qcluster, make_job, vm_named, sim, pool_reader):  # noqa: F811
    assert engine.LEASE_STALE_AFTER >= 120          # the heartbeat alone would keep it for minutes
    watchdog = ensure_watchdog()
    Schedule.objects.filter(pk=watchdog.pk).update(next_run=timezone.now() + timedelta(days=1))
    vm = vm_named("test-vm-4")
    job = make_job(rule_name_pattern="test-vm-4")
    sim.control.rate_limit(4 * 1024 * 1024)
    qcluster.start()
    queue_job_run(job)

    running = qcluster.wait_for(
        lambda: VmBackup.objects.filter(vm_uuid=vm.uuid, phase="streaming", bytes_read__gt=0).first(),
        "the job's backup to stream on a worker")
    host, _, pid = running.lease_owner.rpartition(":")
    assert int(pid) != os.getpid()
    os.kill(int(pid), signal.SIGKILL)
    Schedule.objects.filter(pk=watchdog.pk).update(next_run=timezone.now())   # its minute comes

    killed = qcluster.wait_for(
        lambda: VmBackup.objects.filter(pk=running.pk, status=RunStatus.FAILED).first(),
        "the watchdog to fail the killed worker's backup")
    assert "stopped during the backup" in killed.error
    assert qcluster.wait_for(
        lambda: [t for t in Task.objects.filter(func=WATCHDOG_TASK) if str(t.result).startswith("1 abandoned backup(s) failed")],
        "the watchdog task's result")
    assert qcluster.wait_for(lambda: pool_reader.snapshots() == [], "the killed backup's snapshot to be removed")
    assert BackupRun.objects.get(pk=running.run_id).status == RunStatus.FAILED

    sim.control.clear_faults()
    queue_job_run(job)
    again = qcluster.wait_for(
        lambda: BackupRun.objects.filter(job=job, status__in=RunStatus.finished()).exclude(pk=running.run_id).first(),
        "the next run of the job")
    backup = again.vm_backups.get()
    assert backup.status in (RunStatus.SUCCESS, RunStatus.WARNING), backup.error
    assert backup.restore_point is not None


def test_a_store_clusters_own_watchdog_fails_its_hosts_dead_workers_and_nothing_else(make_job, vm_named, monkeypatch):
    import subprocess

    from backups.devices import routing

    from backups.jobs.runs import start_job_run
    from backups.jobs.tasks import job_watchdog

    sent = []
    monkeypatch.setattr(routing, "async_task", lambda func, pk, **kwargs: sent.append(pk))
    job = make_job(selection="explicit", max_parallel_vms=1)
    job.vms.add(vm_named("test-vm-1"), vm_named("test-vm-2"))
    start_job_run(job, trigger="manual")
    gone = subprocess.Popen(["true"])
    gone.wait()                                              # a pid that no longer exists here
    VmBackup.objects.filter(pk=sent[0]).update(status=RunStatus.RUNNING, lease_heartbeat=timezone.now(),
                                               lease_owner=f"{engine.socket.gethostname()}:{gone.pid}")

    assert job_watchdog(local_only=True) == "1 abandoned backup(s) failed"
    assert VmBackup.objects.get(pk=sent[0]).status == RunStatus.FAILED
    assert len(sent) == 1                                    # dispatching is left to the default cluster's watchdog
    assert job_watchdog().endswith("1 VM(s) dispatched") and len(sent) == 2
