"""Two django-q2 clusters on PostgreSQL + Redis on this machine: the console's default
cluster and a device server's (`manage.py device_server run branch`, another process tree
with its own cluster name, no SESAM_SECRET_KEY, only its sealed secrets). A store owned by
the device server has its backups run only there; with the device server stopped, its run
waits and says so, then fails after the configured time."""
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from django_q.models import Task

from backups.choices import RunStatus, Trigger
from backups.devices.registration import issue_token, register
from backups.devices.sealing import create_key_file
from backups.devices.stores import assign_store
from backups.jobs.runs import start_job_run
from backups.jobs.tasks import job_watchdog
from backups.models import BackupJob, BackupRun, DeviceServer, VmBackup
from backups.stores import create_store, open_repository
from sesamweb.accounts.roles import Role
from tests.fixtures.cluster import REPO, Cluster, shared_database_env, wait_for
from tests.fixtures.users import make_user

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PASSPHRASE = "correct horse battery staple"
AUDIT_KEY = "two-cluster-test-audit-key"
TIMINGS = {"SESAM_DEVICE_DOWN_AFTER_SECONDS": "8", "SESAM_DEVICE_WAIT_SECONDS": "4", "SESAM_DEVICE_STOP_SECONDS": "40"}


@pytest.fixture
def postgres_and_redis(transactional_db):
    if not os.environ.get("REDIS_URL") or connection.vendor != "postgresql":
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("REDIS_URL and a PostgreSQL DATABASE_URL are required when CI=true")
        pytest.skip("needs PostgreSQL and REDIS_URL: run with make test-integration")


class DeviceServerRunner(Cluster):
    """`manage.py device_server run NAME` as its systemd unit starts it."""

    def __init__(self, log_path, name, key_file):
        super().__init__(log_path)
        self.name, self.key_file = name, key_file

    def start(self, **env):
        from django_q.brokers import get_broker

        get_broker(DeviceServer.objects.get(name=self.name).cluster_name).purge_queue()
        environment = {**shared_database_env(), "DJANGO_SETTINGS_MODULE": "tests.fixtures.cluster_settings",
                       # not the console's key: this node reads only what was sealed for it
                       "SESAM_SECRET_KEY": secrets.token_urlsafe(32), "SESAM_DEVICE_KEY_FILE": str(self.key_file),
                       **env}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "device_server", "run", self.name, "--heartbeat-seconds", "0.5"],
                cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self


    def stop(self):
        """SIGTERM to the runner alone, as systemd's stop does: it stops its cluster, then exits."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=150)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def ancestors(pid):
    """The pids above `pid` (from /proc), nearest first."""
    chain = []
    while pid > 1:
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        chain.append(pid)
    return chain


def worker_pid(vm_backup):
    return int(vm_backup.lease_owner.rpartition(":")[2])


def finished(run):
    run.refresh_from_db()
    return run.is_finished


def test_a_device_servers_store_backs_up_only_on_its_cluster_and_waits_while_it_is_down(
        postgres_and_redis, settings, tmp_path, vm_named, qcluster):
    settings.SESAM_AUDIT_KEY = AUDIT_KEY
    for name, value in TIMINGS.items():
        setattr(settings, name, float(value))
    env = {"SESAM_AUDIT_KEY": AUDIT_KEY, **TIMINGS}

    key_file = tmp_path / "branch.key"
    _row, token = issue_token("branch", site="Hamburg")
    server = register(token=token, name="branch", public_key=create_key_file(key_file))
    hq = create_store(name="hq-nas", path=str(tmp_path / "hq"), passphrase=PASSPHRASE)
    branch = assign_store(create_store(name="branch-nas", path=str(tmp_path / "branch"), passphrase=PASSPHRASE), server)
    hq_job = BackupJob.objects.create(name="hq", store=hq, selection="rule", rule_name_pattern="test-vm-1")
    branch_job = BackupJob.objects.create(name="branch", store=branch, selection="rule", rule_name_pattern="test-vm-2")
    vm1, vm2 = vm_named("test-vm-1"), vm_named("test-vm-2")

    device = DeviceServerRunner(tmp_path / "device.log", "branch", key_file)
    qcluster.start(**env)
    device.start(**env)
    try:
        device.wait_for(lambda: DeviceServer.objects.get(pk=server.pk).is_up(), "the device server's first heartbeat")
        hq_run = start_job_run(hq_job, trigger=Trigger.MANUAL)
        branch_run = start_job_run(branch_job, trigger=Trigger.MANUAL)
        device.wait_for(lambda: finished(branch_run), "the device server's backup")
        qcluster.wait_for(lambda: finished(hq_run), "the console cluster's backup")

        hq_backup, branch_backup = hq_run.vm_backups.get(), branch_run.vm_backups.get()
        assert (hq_backup.status, branch_backup.status) == (RunStatus.SUCCESS, RunStatus.SUCCESS), \
            (hq_backup.error, branch_backup.error, device.log())
        # Each ran in its own cluster's process tree, and the task went through that cluster's queue.
        assert device.process.pid in ancestors(worker_pid(branch_backup))
        assert qcluster.process.pid in ancestors(worker_pid(hq_backup))
        assert device.process.pid not in ancestors(worker_pid(hq_backup))
        task = device.wait_for(lambda: Task.objects.filter(group=f"backup-run-{branch_run.pk}").first(),
                               "the device cluster to save the task's result")
        assert task.cluster == "device-branch" and task.success
        assert [p.id for p in open_repository(branch).list_backups(vm2.uuid)] == [branch_backup.restore_point.point_id]
        assert open_repository(branch).list_backups(vm1.uuid) == []
        heard = DeviceServer.objects.get(pk=server.pk)
        assert heard.version and heard.load["cpus"] == os.cpu_count()
    finally:
        device.stop()
    assert device.process.returncode == 0, device.log()

    # The device server is stopped: once its heartbeat is stale the next run waits, says so,
    # and fails after the configured wait.
    wait_for(lambda: not DeviceServer.objects.get(pk=server.pk).is_up(), "the device server to count as down", timeout=60)
    waiting_run = start_job_run(branch_job, trigger=Trigger.MANUAL)
    row = waiting_run.vm_backups.get()
    assert (row.status, row.dispatched_at) == (RunStatus.QUEUED, None)
    client = Client()
    client.force_login(make_user("admin", Role.ADMINISTRATOR))
    page = client.get(waiting_run.get_absolute_url()).content.decode()
    assert "Waiting for device server branch at site Hamburg is down" in page
    dashboard = client.get("/").content.decode()
    assert "Backups wait for device server branch" in dashboard

    def failed_with_reason():
        job_watchdog()
        row.refresh_from_db()
        return row.status == RunStatus.FAILED
    wait_for(failed_with_reason, "the waiting VM to fail after the configured wait", timeout=60, interval=0.5)
    assert "device server branch at site Hamburg is down" in row.error and "waited 4 s" in row.error
    assert BackupRun.objects.get(pk=waiting_run.pk).status == RunStatus.FAILED
    assert not VmBackup.objects.filter(run=waiting_run, lease_owner__gt="").exists()     # no worker ever ran it


def test_a_revoked_device_server_is_refused_at_start(postgres_and_redis, tmp_path):
    key_file = tmp_path / "branch.key"
    _row, token = issue_token("branch")
    server = register(token=token, name="branch", public_key=create_key_file(key_file))
    from backups.devices.registration import revoke_server

    revoke_server(server)
    device = DeviceServerRunner(tmp_path / "device.log", "branch", key_file).start()
    device.process.wait(timeout=120)
    assert device.process.returncode == 2 and "was revoked" in device.log()


def test_a_running_device_server_stops_when_revoked(postgres_and_redis, tmp_path):
    key_file = tmp_path / "branch.key"
    _row, token = issue_token("branch")
    server = register(token=token, name="branch", public_key=create_key_file(key_file))
    device = DeviceServerRunner(tmp_path / "device.log", "branch", key_file).start()
    try:
        device.wait_for(lambda: DeviceServer.objects.get(pk=server.pk).last_heartbeat, "the first heartbeat")
        from backups.devices.registration import revoke_server

        revoke_server(server)
        wait_for(lambda: device.process.poll() is not None, "the runner to stop", timeout=60, log=device.log)
    finally:
        device.stop()
    assert device.process.returncode == 3 and "revoked: stopping its cluster" in device.log()
