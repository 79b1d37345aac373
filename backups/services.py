"""Backups as the console asks for them: request, queue, run, cancel.

One engine, three doors: the CLI (`manage.py backup`), the REST API and the "Back up now"
button all call request_backup(); the CLI then runs it in its own process, the others queue
it on the worker cluster of the data store (a remote device server has its own cluster).
"""
from django.db import transaction
from django.utils import timezone

from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import record_event
from sesamweb.live.publish import publish

from .choices import BackupMethod, QuiesceFallback, RunStatus, Trigger
from .devices.routing import send_vm_backups
from .engine.backup import LEASE_STALE_AFTER, fail_abandoned_backups, finish_run_if_done, run_vm_backup
from .models import BackupRun, VmBackup


class BackupRequestError(ValueError):
    """The backup cannot be requested as asked; the message says why."""


def request_backup(*, vm, store, method, incremental=False, trigger=Trigger.MANUAL, user=None,
                   quiesce_fallback=QuiesceFallback.FAIL, restart_after_snapshot=True,
                   allow_hard_shutdown=False, shutdown_timeout=600, transfer_compression="none") -> BackupRun:
    if method not in BackupMethod.values:
        raise BackupRequestError(f"unknown backup method {method!r}; choose one of {', '.join(BackupMethod.values)}")
    if vm.removed_at is not None:
        raise BackupRequestError(f"VM {vm.name} no longer exists in pool {vm.pool}")
    if vm.is_snapshot:
        raise BackupRequestError(f"{vm.name} is a snapshot, not a VM")
    if store.offline:
        raise BackupRequestError(f"data store {store.name} is offline; bring it back online on its page first")
    fail_abandoned_backups()
    busy = VmBackup.objects.filter(vm_uuid=vm.uuid, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).first()
    if busy is not None:
        raise BackupRequestError(busy_message(busy))
    with transaction.atomic():
        run = BackupRun.objects.create(trigger=trigger, requested_by=user if user and user.is_authenticated else None)
        vm_backup = VmBackup.objects.create(
            run=run, vm=vm, pool=vm.pool, vm_uuid=vm.uuid, vm_name=vm.name, store=store, method=method,
            incremental=incremental, quiesce_fallback=quiesce_fallback,
            restart_after_snapshot=restart_after_snapshot, allow_hard_shutdown=allow_hard_shutdown,
            shutdown_timeout=shutdown_timeout, transfer_compression=transfer_compression,
        )
        record_event(AuditAction.JOB_START, target=vm_backup, actor=user,
                     message=f"{vm_backup.get_method_display()} backup of {vm.name} to {store} requested "
                             f"({Trigger(trigger).label})")
    publish("runs", {"type": "run.queued", "run": run.pk, "vm_name": vm.name})
    publish("dashboard", {"type": "run.queued", "run": run.pk})
    return run


def busy_message(busy: VmBackup, now=None) -> str:
    """Why another backup of the VM cannot start now, and when it can."""
    if busy.status == RunStatus.QUEUED:
        return f"a backup of {busy.vm_name} is already queued (run #{busy.run_id})"
    now = now or timezone.now()
    silent = (now - busy.lease_heartbeat).total_seconds() if busy.lease_heartbeat else 0
    if silent < 30:
        return f"a backup of {busy.vm_name} is already running (run #{busy.run_id}, worker {busy.lease_owner})"
    takeover = busy.lease_heartbeat + timezone.timedelta(seconds=LEASE_STALE_AFTER)
    return (f"a backup of {busy.vm_name} (run #{busy.run_id}) has been silent since "
            f"{timezone.localtime(busy.lease_heartbeat):%H:%M:%S} (worker {busy.lease_owner}); "
            f"it will be taken over at {timezone.localtime(takeover):%H:%M:%S} if it stays silent")


def queue_run(run: BackupRun):
    """Hand every VM backup of the run to the workers of its data store's cluster."""
    for vm_backup in run.vm_backups.select_related("store__device_server"):
        VmBackup.objects.filter(pk=vm_backup.pk, dispatched_at=None).update(dispatched_at=timezone.now())
        send_vm_backups(vm_backup.store, [vm_backup.pk], group=f"backup-run-{run.pk}",
                        task_name=lambda pk, name=vm_backup.vm_name: f"backup {name} #{pk}")


def run_in_this_process(run: BackupRun):
    for vm_backup in run.vm_backups.all():
        run_vm_backup(vm_backup.pk)
    run.refresh_from_db()
    return run


def cancel_run(run: BackupRun, user=None):
    """Queued backups stop at once; running ones stop at their next progress step and clean up."""
    now = timezone.now()
    with transaction.atomic():
        VmBackup.objects.filter(run=run, status=RunStatus.QUEUED).update(
            status=RunStatus.CANCELLED, finished_at=now, error="cancelled before it started")
        VmBackup.objects.filter(run=run, status=RunStatus.RUNNING).update(cancel_requested=True)
        record_event(AuditAction.JOB_CANCEL, target=run, actor=user, message=f"{run} cancelled")
    finish_run_if_done(run.pk)


def add_run_totals(runs):
    """Sets on each run the sums of its VM backups (a job run backs up several VMs), in one
    query however many runs: vm_count, vms_done, total_processed, total_read, total_stored
    (None when the run has no VM backups), and failure_reason (the run's message, else the
    first error of a VM backup that failed), for run lists and job pages."""
    runs = list(runs)
    per_run = {run.pk: [] for run in runs}
    rows = (VmBackup.objects.filter(run__in=[run.pk for run in runs]).order_by("pk")
            .values("run_id", "status", "error", "bytes_processed", "bytes_read", "bytes_stored"))
    for row in rows:
        per_run[row["run_id"]].append(row)
    for run in runs:
        backups = per_run[run.pk]
        run.vm_count = len(backups)
        run.vms_done = sum(row["status"] in RunStatus.finished() for row in backups)
        for total, column in (("total_processed", "bytes_processed"), ("total_read", "bytes_read"),
                              ("total_stored", "bytes_stored")):
            setattr(run, total, sum(row[column] for row in backups) if backups else None)
        errors = [row["error"] for row in backups if row["status"] == RunStatus.FAILED and row["error"]]
        run.failure_reason = (run.message or (errors[0] if errors else "")) if run.status == RunStatus.FAILED else ""
    return runs
