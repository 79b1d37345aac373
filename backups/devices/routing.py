"""Which worker cluster runs a data store's tasks, and what happens while a device server is
down. Every task of a store (VM backups of jobs and of Back up now, verify / prune / GC /
catalog refresh, restores from it, its maintenance schedules) is queued through here.

A store owned by a device server runs only on that server's cluster. Before queueing there
from the console, the store's secrets are sealed for the server (sealing.py). A VM backup
for a device server that is down (no heartbeat for SESAM_DEVICE_DOWN_AFTER_SECONDS) is held
back and shown as waiting; after SESAM_DEVICE_WAIT_SECONDS it fails with the reason."""
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from sesamweb.audit.choices import AuditAction, AuditOutcome
from sesamweb.audit.log import record_event

from ..choices import RunStatus
from ..notifications import device_server_down
from .models import DeviceServer
from .sealing import is_device_server_process, share_pool_secret, share_store_secrets

VM_BACKUP_TASK = "backups.tasks.run_vm_backup_task"


class DeviceServerRevoked(RuntimeError):
    """The store's device server was revoked: nothing is sent to it."""


def cluster_for_store(store) -> str:
    """The django-q2 cluster name of the store's tasks. The default is named too: django-q2
    reads no cluster as the queueing process's own, which on a device server is its own."""
    if store.device_server_id:
        return store.device_server.cluster_name
    return store.cluster or settings.Q_CLUSTER["name"]


def schedule_cluster_for_store(store) -> str | None:
    """The cluster of the store's django-q2 Schedule rows: None for the default one (the rows
    that only the default cluster fires, whatever it is named), else as cluster_for_store."""
    cluster = cluster_for_store(store)
    return None if cluster == settings.Q_CLUSTER["name"] else cluster


def enqueue_for_store(store, func: str, *args, pools=(), **kwargs) -> str:
    """async_task on the store's cluster; for a device server's store its secrets (and the
    passwords of `pools`, which the task connects to) are sealed for it first. Returns the
    task id."""
    server = DeviceServer.objects.filter(pk=store.device_server_id).first() if store.device_server_id else None
    if server is not None:
        if server.is_revoked:
            raise DeviceServerRevoked(f"device server {server.name} of data store {store.name} was revoked")
        if not is_device_server_process():
            share_store_secrets(store)
            for pool in pools:
                share_pool_secret(server, pool)
    return async_task(func, *args, cluster=cluster_for_store(store), **kwargs)


# --- VM backups and a device server that is down --------------------------------------------

def wait_deadline(server: DeviceServer, queued_at: datetime) -> datetime:
    """A VM queued at `queued_at` waits for the down server until this time."""
    return max(queued_at, server.went_down_at()) + timedelta(seconds=settings.SESAM_DEVICE_WAIT_SECONDS)


def down_reason(server: DeviceServer) -> str:
    heard = (f"last heartbeat {timezone.localtime(server.last_heartbeat):%Y-%m-%d %H:%M:%S %Z}"
             if server.last_heartbeat else "never heard from")
    site = f" at site {server.site}" if server.site else ""
    return f"device server {server.name}{site} is down ({heard})"


def send_vm_backups(store, vm_backup_ids, *, group: str, task_name, now=None) -> list[int]:
    """Queue claimed VM backups (their dispatched_at is set) on the store's cluster. With the
    store's device server down they are handed back (waiting) or, after the configured wait,
    failed with the reason; returns the ids actually queued."""
    from ..models import VmBackup

    now = now or timezone.now()
    server = store.device_server if store.device_server_id else None
    if server is not None:
        server.refresh_from_db()
    if server is not None and server.is_revoked:
        _fail(vm_backup_ids, f"device server {server.name} of data store {store.name} was revoked", now)
        return []
    if server is not None and not server.is_up(now):
        note_down(server, now)
        late = _fail_after_wait(server, VmBackup.objects.filter(pk__in=vm_backup_ids), now)
        # Handed back: the watchdog (every minute) or the next finished VM dispatches them again.
        VmBackup.objects.filter(pk__in=set(vm_backup_ids) - set(late), status=RunStatus.QUEUED).update(dispatched_at=None)
        return []
    if server is not None and not is_device_server_process():
        # The pools of every VM of these runs, not only of the VMs sent now: the next ones are
        # sent by the device server itself when one finishes, and it cannot seal anything.
        from xenpools.models import Pool

        share_store_secrets(store)
        runs = VmBackup.objects.filter(pk__in=vm_backup_ids).values("run_id")
        for pool in Pool.objects.filter(pk__in=VmBackup.objects.filter(run_id__in=runs).values("pool_id")):
            share_pool_secret(server, pool)
    for pk in vm_backup_ids:
        async_task(VM_BACKUP_TASK, pk, cluster=cluster_for_store(store), group=group, task_name=task_name(pk))
    return list(vm_backup_ids)


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds // 60} min" if seconds >= 120 else f"{seconds} s"


def _fail_after_wait(server, vm_backups, now):
    """Fail those of `vm_backups` whose wait for the down `server` is over; returns their ids."""
    late = [pk for pk, created in vm_backups.values_list("pk", "created_at") if now >= wait_deadline(server, created)]
    waited = timedelta(seconds=settings.SESAM_DEVICE_WAIT_SECONDS)
    _fail(late, f"{down_reason(server)}; waited {_span(waited)} for it", now)
    return late


def _fail(vm_backup_ids, reason, now):
    from ..engine.backup import finish_run_if_done
    from ..models import VmBackup

    if not vm_backup_ids:
        return
    with transaction.atomic():
        rows = list(VmBackup.objects.filter(pk__in=vm_backup_ids, status=RunStatus.QUEUED))
        VmBackup.objects.filter(pk__in=[r.pk for r in rows], status=RunStatus.QUEUED).update(
            status=RunStatus.FAILED, finished_at=now, error=reason)
        for row in rows:
            record_event(AuditAction.BACKUP, target=row, outcome=AuditOutcome.FAILURE,
                         message=f"backup of {row.vm_name} (run #{row.run_id}) failed: {reason}")
    for run_id in {r.run_id for r in rows}:
        finish_run_if_done(run_id)


def note_down(server: DeviceServer, now=None) -> bool:
    """Record (once per outage) that a device server is down; True the first time."""
    now = now or timezone.now()
    if not DeviceServer.objects.filter(pk=server.pk, down_since=None).update(down_since=server.went_down_at()):
        return False
    server.refresh_from_db()
    record_event(AuditAction.UPDATE, target=server, outcome=AuditOutcome.FAILURE,
                 message=f"{down_reason(server)}; its stores' backups wait up to "
                         f"{_span(timedelta(seconds=settings.SESAM_DEVICE_WAIT_SECONDS))}")
    device_server_down(name=server.name, site=server.site, last_heartbeat=server.last_heartbeat,
                       url=server.get_absolute_url())
    return True


def check_device_servers(now=None) -> int:
    """The watchdog's pass: note servers that went down, and fail VM backups already queued on
    a down server's cluster once their wait is over. Returns the number failed."""
    from ..models import VmBackup

    now = now or timezone.now()
    failed = 0
    for server in DeviceServer.objects.filter(revoked_at=None):
        if server.is_up(now):
            continue
        note_down(server, now)
        failed += len(_fail_after_wait(server, VmBackup.objects.filter(
            store__device_server=server, status=RunStatus.QUEUED, dispatched_at__isnull=False), now))
    resend_held_backups(now)
    return failed


def resend_held_backups(now=None) -> int:
    """Back up now (a run without a job) on a device server that was down: its VMs were handed
    back; send them again (or fail them once their wait is over). A job's run is moved on by
    the watchdog's dispatch."""
    from ..models import VmBackup

    now = now or timezone.now()
    sent = 0
    held = (VmBackup.objects.filter(run__job=None, status=RunStatus.QUEUED, dispatched_at=None,
                                    store__device_server__isnull=False).select_related("store__device_server"))
    for row in held:
        if VmBackup.objects.filter(pk=row.pk, dispatched_at=None).update(dispatched_at=now):
            sent += len(send_vm_backups(row.store, [row.pk], group=f"backup-run-{row.run_id}",
                                        task_name=lambda pk, name=row.vm_name: f"backup {name} #{pk}", now=now))
    return sent


@dataclass
class Waiting:
    """VM backups held back because their device server is down (run page, dashboard)."""

    server: DeviceServer
    vm_count: int
    deadline: datetime
    run_ids: list

    @property
    def message(self):
        return (f"waiting for {down_reason(self.server)}: {self.vm_count} VM backup(s) wait until "
                f"{timezone.localtime(self.deadline):%H:%M:%S %Z}, then fail")


def waiting_on_device_servers(run=None, now=None) -> list[Waiting]:
    """Queued VM backups (of one run, or of all runs) whose device server is down."""
    from ..models import VmBackup

    now = now or timezone.now()
    rows = VmBackup.objects.filter(status=RunStatus.QUEUED, store__device_server__isnull=False)
    if run is not None:
        rows = rows.filter(run=run)
    by_server = {}
    for server_id, created, run_id in rows.values_list("store__device_server", "created_at", "run_id"):
        by_server.setdefault(server_id, []).append((created, run_id))
    waiting = []
    for server in DeviceServer.objects.filter(pk__in=by_server):
        if server.is_up(now):
            continue
        entries = by_server[server.pk]
        deadline = min(wait_deadline(server, created) for created, _ in entries)
        waiting.append(Waiting(server, len(entries), deadline, sorted({r for _, r in entries})))
    return waiting
