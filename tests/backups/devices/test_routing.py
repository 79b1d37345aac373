"""One routing function for every task of a store: a device server's store runs only on its
cluster. While its device server is down a job's VMs wait (the run page and the dashboard say
so), then fail with the reason once the configured wait is over."""
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from backups.choices import BackupMethod, RunStatus
from backups.devices import routing
from backups.devices.registration import heartbeat, revoke_server
from backups.devices.stores import assign_store
from backups.jobs.runs import dispatch
from backups.jobs.tasks import job_watchdog
from backups.models import BackupJob, BackupRun, DeviceServer, VmBackup
from backups.stores import create_store
from backups.tasks import queue_store_task
from sesamweb.accounts.roles import Role
from sesamweb.audit.models import AuditEvent
from sesamweb.dashboard.summary import dashboard_summary
from tests.fixtures.users import make_user

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def queued(monkeypatch):
    sent = []
    monkeypatch.setattr(routing, "async_task", lambda func, *args, cluster=None, **kw: sent.append((func, args, cluster)) or "t")
    return sent


@pytest.fixture
def branch(make_device_server, tmp_path):
    server = make_device_server()
    heartbeat(server.name)
    store = assign_store(create_store(name="branch-nas", path=str(tmp_path / "s"), passphrase=PASSPHRASE), server)
    return server, store


def job_run(store, vms=2, **job_fields):
    job = BackupJob.objects.create(name=f"job-{BackupJob.objects.count()}", store=store, max_parallel_vms=vms, **job_fields)
    run = BackupRun.objects.create(job=job)
    for i in range(vms):
        VmBackup.objects.create(run=run, vm_uuid=f"00000000-0000-0000-0000-00000000000{i}", vm_name=f"vm-{i}",
                                store=store, method=BackupMethod.NORMAL)
    return run


def test_a_device_servers_store_runs_its_backups_and_maintenance_only_on_its_cluster(branch, queued, tmp_path):
    server, store = branch
    local = create_store(name="hq", path=str(tmp_path / "hq"), passphrase=PASSPHRASE)
    run, other = job_run(store), job_run(local, vms=1)

    assert len(dispatch(run.pk)) == 2 and len(dispatch(other.pk)) == 1
    queue_store_task(store, "verify")
    queue_store_task(local, "gc")
    assert [(func.rsplit(".", 1)[1], cluster) for func, _args, cluster in queued] == [
        ("run_vm_backup_task", "device-branch"), ("run_vm_backup_task", "device-branch"),
        ("run_vm_backup_task", "sesamweb"), ("verify_store_task", "device-branch"), ("collect_garbage_task", "sesamweb")]


def test_while_the_device_server_is_down_the_run_waits_says_so_then_fails_with_the_reason(branch, queued, settings):
    server, store = branch
    settings.SESAM_DEVICE_DOWN_AFTER_SECONDS = 60
    settings.SESAM_DEVICE_WAIT_SECONDS = 600
    last = timezone.now() - timedelta(minutes=5)
    DeviceServer.objects.filter(pk=server.pk).update(last_heartbeat=last)
    run = job_run(store)

    assert dispatch(run.pk) == [] and queued == []
    assert VmBackup.objects.filter(run=run, status=RunStatus.QUEUED, dispatched_at=None).count() == 2
    (waiting,) = routing.waiting_on_device_servers(run)
    assert waiting.vm_count == 2 and "device server branch at site Hamburg is down" in waiting.message
    admin = make_user("admin", Role.ADMINISTRATOR)
    client = Client()
    client.force_login(admin)
    page = client.get(run.get_absolute_url()).content.decode()
    assert "Waiting for device server branch at site Hamburg is down" in page
    alerts = [a for a in dashboard_summary().alerts if "branch" in a.title]
    assert [a.title for a in alerts] == ["Backups wait for device server branch"]
    assert AuditEvent.objects.filter(message__contains="device server branch at site Hamburg is down").count() == 1

    # The wait is over: the watchdog's pass fails both VMs with the reason, and the run ends.
    # (time passes: everything moved 30 minutes into the past)
    VmBackup.objects.filter(run=run).update(created_at=timezone.now() - timedelta(minutes=30))
    DeviceServer.objects.filter(pk=server.pk).update(last_heartbeat=last - timedelta(minutes=30))
    job_watchdog()
    rows = list(VmBackup.objects.filter(run=run))
    assert {r.status for r in rows} == {RunStatus.FAILED}
    assert all("device server branch at site Hamburg is down" in r.error and "waited 10 min" in r.error for r in rows)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and queued == []
    assert AuditEvent.objects.filter(message__contains="device server branch at site Hamburg is down").count() == 3


def test_when_it_comes_back_the_waiting_vms_are_sent(branch, queued, settings):
    server, store = branch
    DeviceServer.objects.filter(pk=server.pk).update(last_heartbeat=timezone.now() - timedelta(hours=1))
    run = job_run(store)
    assert dispatch(run.pk) == []
    heartbeat(server.name)
    job_watchdog()
    assert [cluster for _f, _a, cluster in queued] == ["device-branch", "device-branch"]
    assert DeviceServer.objects.get(pk=server.pk).down_since is None


def test_a_revoked_device_servers_store_gets_nothing_and_its_vms_fail(branch, queued):
    server, store = branch
    run = job_run(store, vms=1)
    revoke_server(server)
    assert dispatch(run.pk) == [] and queued == []
    assert "device server branch of data store branch-nas was revoked" in VmBackup.objects.get(run=run).error
    with pytest.raises(routing.DeviceServerRevoked):
        queue_store_task(store, "gc")


def test_sending_a_vm_seals_the_pool_password_for_the_device_server(branch, queued, db):
    from backups.models import DeviceSecret
    from xenpools.models import Pool

    server, store = branch
    pool = Pool.objects.create(name="branch-pool", address="127.0.0.1", port=1, uuid="p-uuid")
    pool.set_password("pool secret")
    pool.save()
    later = Pool.objects.create(name="second-pool", address="127.0.0.1", port=2, uuid="p2-uuid")
    later.set_password("second secret")
    later.save()
    Pool.objects.create(name="unrelated", address="127.0.0.1", port=3, uuid="p3-uuid", password_encrypted="x")
    run = job_run(store, vms=2)
    run.job.max_parallel_vms = 1
    run.job.save()
    first, second = VmBackup.objects.filter(run=run).order_by("pk")
    VmBackup.objects.filter(pk=first.pk).update(pool=pool)
    VmBackup.objects.filter(pk=second.pk).update(pool=later)
    assert dispatch(run.pk) == [first.pk]
    # The second VM's pool too: the device server sends that one itself, and cannot seal.
    assert set(DeviceSecret.objects.filter(server=server).values_list("context", flat=True)) == {
        "store-key:branch-nas", f"pool:{pool.pk}", f"pool:{later.pk}"}


def test_an_outage_is_a_notification_event_once_and_again_after_the_server_came_back(branch, queued, settings):
    from sesamweb.notify.models import Event

    server, _store = branch
    settings.SESAM_DEVICE_DOWN_AFTER_SECONDS = 60
    DeviceServer.objects.filter(pk=server.pk).update(last_heartbeat=timezone.now() - timedelta(minutes=5))
    job_watchdog()
    job_watchdog()                                   # still down: not reported again
    events = Event.objects.filter(name="device_server.down")
    assert [e.title for e in events] == [events[0].title] and "Device server branch at Hamburg is down" in events[0].title
    heartbeat(server.name)                           # back
    DeviceServer.objects.filter(pk=server.pk).update(last_heartbeat=timezone.now() - timedelta(minutes=5))
    job_watchdog()
    assert Event.objects.filter(name="device_server.down").count() == 2
