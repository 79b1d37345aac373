"""A VM whose host, store or job has no free stream goes back to the queue and says why, on
the run page and in the API; dispatch sends it again once its scope has room, and not before.
The snapshot queue of a pool lets one snapshot through at a time by default."""
import threading

import pytest

from backups import streams
from backups.choices import RunStatus, Trigger
from backups.engine.slots import export_host, snapshot_slot
from backups.jobs.runs import dispatch, dispatch_waiting, start_job_run
from backups.models import StreamSlot, VmBackup
from xenpools.connection import PoolConnection
from xenpools.models import Host

pytestmark = pytest.mark.slow


def test_a_vm_waits_for_its_host_and_goes_once_the_slot_frees(make_job, pool, vm_named, run_queued_tasks,
                                                              operator_client):
    vm = vm_named("test-vm-1")
    job = make_job(selection="explicit", max_parallel_vms=2)
    job.vms.add(vm)
    with PoolConnection.open(pool) as conn:
        host_uuid, host_name = export_host(conn.xenapi, conn.xenapi.VM.get_by_uuid(vm.uuid))
    assert Host.objects.get(uuid=host_uuid).is_master         # a shared SR: the master serves the export
    scope = f"host:{host_uuid}"
    for other in ("other-1", "other-2"):                      # another job's backups hold the host's 2 slots
        assert streams.try_acquire(streams.limits_for([scope]), other) is None

    run = start_job_run(job, trigger=Trigger.MANUAL)
    run_queued_tasks()

    backup = run.vm_backups.get()
    assert (backup.status, backup.dispatched_at) == (RunStatus.QUEUED, None)
    assert backup.waiting == f"waiting for a stream (host {host_name}: 2 of 2 busy)"
    assert backup.waiting_scope == scope
    assert not StreamSlot.objects.filter(holder=f"vm-backup:{backup.pk}").exists()
    assert dispatch(run.pk) == [] and dispatch_waiting() == []        # still full: not sent again
    api = operator_client.get(f"/api/vm-backups/{backup.pk}/").json()
    assert api["waiting"] == backup.waiting and api["status"] == "queued"
    page = operator_client.get(run.get_absolute_url()).content.decode()
    assert f"Waiting for a stream (host {host_name}: 2 of 2 busy)" in page

    streams.release("other-1")
    assert dispatch_waiting() == [backup.pk]
    run_queued_tasks()
    backup.refresh_from_db()
    assert backup.status == RunStatus.SUCCESS, backup.error
    assert backup.waiting == ""
    assert not StreamSlot.objects.filter(holder__startswith=f"vm-backup:{backup.pk}").exists()


def test_the_pool_snapshot_queue_lets_one_snapshot_through_at_a_time(make_job, pool, vm_named):
    vm = vm_named("test-vm-1")
    job = make_job(selection="explicit")
    job.vms.add(vm)
    run = start_job_run(job, trigger=Trigger.MANUAL, to_workers=False)
    first, second = VmBackup.objects.get(run=run), None
    second = VmBackup.objects.create(run=run, vm=vm, pool=pool, vm_uuid=vm.uuid, vm_name=vm.name, store=job.store,
                                     method=first.method)
    inside = threading.Event()
    leave = threading.Event()
    entered = []

    def hold():
        with snapshot_slot(first):
            inside.set()
            leave.wait(30)

    def wait_then_enter():
        with snapshot_slot(second):
            entered.append(True)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(30)
    waiter = threading.Thread(target=wait_then_enter)
    waiter.start()
    deadline = threading.Event()
    for _ in range(300):
        second.refresh_from_db()
        if second.waiting:
            break
        deadline.wait(0.1)
    assert second.waiting == f"waiting for a snapshot (pool {pool.name}: 1 of 1 busy)"
    assert entered == []
    leave.set()
    holder.join(30)
    waiter.join(30)
    second.refresh_from_db()
    assert entered == [True] and second.waiting == ""
    assert not StreamSlot.objects.exists()
