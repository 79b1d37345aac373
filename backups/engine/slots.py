"""Where a VM backup takes its slots (backups/streams.py).

- Stream slots, before anything is done to the VM: one in the job's scope, one in the data
  store's and one in the scope of the pool host that will serve the export and NBD reads.
  A worker that finds one full puts the VM back in the queue with the reason ("waiting for a
  stream (host xcp-host-2: 2 of 2 busy)") and is free for other work; dispatch sends it
  again once that scope has a free slot (backups/jobs/runs.py). A process running backups
  itself (`manage.py backup`, `job run`) waits in place instead.
- A snapshot slot around each snapshot call: the pool's snapshot queue, a bounded number at a
  time (xapi has no queue of its own); the backup waits for it in place, as it is short.

Both are held with a heartbeat and released in `finally`; a killed worker's slots come back
when their lease runs out.
"""
import time

from django.utils import timezone

from sesamweb.live.publish import publish

from .. import streams
from ..choices import BackupPhase, RunStatus
from ..models import VmBackup
from .progress import BackupCancelled
from .snapshots import NULL_REF

WAIT_POLL = 0.5         # seconds between tries of a waiting backup that waits in place



class WaitForStream(Exception):
    """No free stream slot for this VM now; `busy` says which scope is full."""

    def __init__(self, busy):
        self.busy = busy
        super().__init__(f"waiting for a stream ({busy})")


def holder(vm_backup_id) -> str:
    return f"vm-backup:{vm_backup_id}"


def export_host(xenapi, vm_ref) -> tuple[str, str]:
    """(uuid, name) of the host that serves the VM's export: the host the request goes to (the
    master) when it sees every SR holding the VM's disks, otherwise a live host that does
    (xapi export.ml `handler`: check_vm_host_SRs on localhost, else find_host_for_VM and a
    302 redirect). For disks on local storage that is the disk's host, which also serves its
    NBD reads."""
    srs = set()
    for vbd in xenapi.VM.get_VBDs(vm_ref):
        record = xenapi.VBD.get_record(vbd)
        if record["type"] == "Disk" and record["VDI"] != NULL_REF:
            srs.add(xenapi.VDI.get_SR(record["VDI"]))
    master = xenapi.pool.get_master(xenapi.pool.get_all()[0])
    seeing = None
    for sr in srs:
        hosts = {xenapi.PBD.get_host(pbd) for pbd in xenapi.SR.get_PBDs(sr) if xenapi.PBD.get_currently_attached(pbd)}
        seeing = hosts if seeing is None else seeing & hosts
    if seeing is None or master in seeing:
        chosen = master
    else:
        live = sorted((xenapi.host.get_address(h), h) for h in seeing
                      if xenapi.host_metrics.get_live(xenapi.host.get_metrics(h)))
        chosen = live[0][1] if live else master
    return xenapi.host.get_uuid(chosen), xenapi.host.get_name_label(chosen)


def stream_scopes(vm_backup, host_uuid) -> list[str]:
    scopes = [f"store:{vm_backup.store_id}", f"host:{host_uuid}"]
    if vm_backup.run.job_id:
        scopes.append(f"job:{vm_backup.run.job_id}")
    if vm_backup.store.device_server_id:
        scopes.append(f"device:{vm_backup.store.device_server_id}")
    return scopes


class StreamSlots:
    """The stream slots of one running VM backup: `take` after connecting, `release` in finally."""

    def __init__(self, vm_backup, *, wait=False):
        self.vm_backup = vm_backup
        self.wait = wait
        self.holding = None

    def take(self, conn, vm_ref):
        host_uuid, _name = export_host(conn.xenapi, vm_ref)
        scopes = stream_scopes(self.vm_backup, host_uuid)
        name = holder(self.vm_backup.pk)
        shown = None
        while True:
            busy = streams.try_acquire(streams.limits_for(scopes), name, owner=self.vm_backup.lease_owner)
            if busy is None:
                break
            if not self.wait:
                raise WaitForStream(busy)
            if str(busy) != shown:
                shown = str(busy)
                show_waiting(self.vm_backup, f"waiting for a stream ({busy})", busy.scope)
            check_cancelled(self.vm_backup)
            time.sleep(WAIT_POLL)
        if shown:
            show_waiting(self.vm_backup, "", "")
        self.holding = streams.Holding(name).start()

    def release(self):
        if self.holding is not None:
            self.holding.release()
            self.holding = None
        else:
            streams.release(holder(self.vm_backup.pk))


class snapshot_slot:  # noqa: N801 - used as a context manager, like contextlib's
    """`with snapshot_slot(vm_backup):` around a snapshot call: waits for the pool's snapshot
    queue, shows that it waits, holds the slot with a heartbeat and releases it."""

    def __init__(self, vm_backup):
        self.vm_backup = vm_backup
        self.holding = None

    def __enter__(self):
        vm_backup = self.vm_backup
        if not getattr(vm_backup, "pk", None) or not getattr(vm_backup, "pool_id", None):
            return self
        scope = f"pool-snapshot:{vm_backup.pool_id}"
        name = f"{holder(vm_backup.pk)}:snapshot"
        shown = False
        while (busy := streams.try_acquire(streams.limits_for([scope]), name, owner=vm_backup.lease_owner)) is not None:
            if not shown:
                shown = True
                show_waiting(vm_backup, f"waiting for a snapshot ({busy})", scope)
            check_cancelled(vm_backup)
            time.sleep(WAIT_POLL)
        if shown:
            show_waiting(vm_backup, "", "")
        self.holding = streams.Holding(name).start()
        return self

    def __exit__(self, *exc):
        if self.holding is not None:
            self.holding.release()


def release_all(vm_backup_id):
    """The slots of a backup whose worker died (the watchdog found it): back at once, without
    waiting for their lease to run out."""
    return streams.release(holder(vm_backup_id)) + streams.release(f"{holder(vm_backup_id)}:snapshot")


def check_cancelled(vm_backup):
    if VmBackup.objects.filter(pk=vm_backup.pk, cancel_requested=True).exists():
        raise BackupCancelled("cancelled by an operator")


def show_waiting(vm_backup, text, scope):
    """Say on the row and live on the run page why the VM waits (empty: it no longer does)."""
    VmBackup.objects.filter(pk=vm_backup.pk).update(waiting=text[:300], waiting_scope=scope,
                                                    lease_heartbeat=timezone.now())
    vm_backup.waiting, vm_backup.waiting_scope = text[:300], scope
    event = {"type": "vm_backup.waiting", "vm_backup": vm_backup.pk, "run": vm_backup.run_id,
             "vm_uuid": vm_backup.vm_uuid, "vm_name": vm_backup.vm_name, "phase": vm_backup.phase, "message": text}
    publish(f"run:{vm_backup.run_id}", event)
    publish("runs", event)


def requeue_waiting(vm_backup, exc: WaitForStream):
    """A worker found no free stream slot: the VM goes back to the queue, not handed out,
    with the reason; dispatch sends it again once its scope has room."""
    VmBackup.objects.filter(pk=vm_backup.pk, status=RunStatus.RUNNING).update(
        status=RunStatus.QUEUED, phase=BackupPhase.QUEUED, dispatched_at=None, started_at=None,
        lease_owner="", lease_heartbeat=None)
    vm_backup.status, vm_backup.phase = RunStatus.QUEUED, BackupPhase.QUEUED
    show_waiting(vm_backup, str(exc), exc.busy.scope)
    return vm_backup
