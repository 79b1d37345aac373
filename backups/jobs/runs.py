"""Running a job: one BackupRun, one VmBackup per selected VM, at most max_parallel_vms at a
time, a run window, retention at the end.

Reads like a backup (backups/engine/backup.py): start_job_run decides everything up front
(which VMs, full or incremental and why, which are skipped and why), dispatch hands VM tasks
to the store's worker cluster as slots free up, and finish_job_run applies retention once
the last VM is done. A worker that died leaves its VM "running" only until its lease goes
stale (fail_abandoned_backups); the watchdog task then dispatches what is left.
"""
import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import record_event
from sesamweb.live.publish import publish

from .. import streams
from ..choices import BackupKind, RunStatus, Trigger
from ..devices.routing import send_vm_backups
from ..models import BackupRun, RestorePoint, VmBackup, VmChangeTracking
from .schedules import times_between, zone
from .selection import missing_explicit_vms, select_vms

log = logging.getLogger(__name__)

ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
MISSED_AFTER = timedelta(minutes=5)      # a run that starts this late after its slot was missed


class JobRunError(ValueError):
    """The job cannot run as asked; the message says why."""


def decide_kind(job, vm_uuid, *, schedule=None, now=None):
    """(incremental?, reason) for one VM in the next run of the job."""
    now = now or timezone.now()
    if not job.incremental:
        return False, "full: the job makes full backups only"
    if schedule is not None and schedule.kind == "full":
        return False, "full: this schedule makes full backups"
    local = now.astimezone(zone(schedule.timezone if schedule else "UTC"))
    if local.weekday() in [int(d) for d in job.full_on_weekdays or []]:
        return False, f"full: the job forces full backups on {local:%A}s"
    refused = VmChangeTracking.objects.filter(vm_uuid=vm_uuid).values_list("reason", flat=True).first()
    if refused:
        # Still asked for: the engine tries CBT again each time and forgets the reason once it works.
        return True, f"full: incrementals are not possible: {refused}"
    points = list(RestorePoint.objects.filter(store=job.store, vm_uuid=vm_uuid)
                  .order_by("-taken_at").values_list("kind", "chain")[:max(job.full_every, 1) + 1])
    if not points:
        return True, "full: no earlier restore point on this data store"
    if not any(chain for _kind, chain in points[:1]):
        return True, "full: the last restore point keeps no snapshot to compare with"
    if job.full_every:
        in_a_row = 0
        for kind, _chain in points:
            if kind != BackupKind.INCREMENTAL:
                break
            in_a_row += 1
        if in_a_row >= job.full_every:
            return False, f"full: {in_a_row} incrementals in a row (the job forces a full every {job.full_every + 1} runs)"
    return True, "incremental: changed blocks since the last restore point"


def predict_kind(job, vm_uuid, *, schedule=None, now=None):
    """(BackupKind, reason) of the next backup of one VM, as the job page and the API show it.
    decide_kind's flag asks for an incremental; with nothing to compare with the backup is full
    all the same, which its reason says."""
    _incremental, reason = decide_kind(job, vm_uuid, schedule=schedule, now=now)
    return (BackupKind.INCREMENTAL if reason.startswith("incremental") else BackupKind.FULL), reason


@transaction.atomic
def start_job_run(job, *, trigger=Trigger.SCHEDULE, user=None, schedule=None, slot=None, now=None,
                  to_workers=True) -> BackupRun:
    """Create the run and its VM backups (skipped ones with their reason), then dispatch.
    to_workers=False: the caller runs the VMs itself (`manage.py job run`), claiming them with
    claim_next so that the job's limit and run window hold there too."""
    now = now or timezone.now()
    if not job.store.key_encrypted and job.store.encrypted:
        raise JobRunError(f"data store {job.store} has no key in the console; import it first")
    if job.store.offline:
        raise JobRunError(f"data store {job.store} is offline; bring it back online on its page first")
    run = BackupRun.objects.create(
        trigger=trigger, requested_by=user if user is not None and user.is_authenticated else None,
        job=job, schedule=schedule, slot=slot, status=RunStatus.QUEUED,
        window_ends_at=now + timedelta(minutes=job.window_minutes) if job.window_minutes else None,
    )
    notes = []
    if schedule is not None and slot is not None:
        notes += _missed_slots(schedule, slot, now)
    busy = set(VmBackup.objects.filter(status__in=ACTIVE).values_list("vm_uuid", flat=True))
    vms = list(select_vms(job))
    excluded = excluded_positions(job, vms)
    rows = []
    for vm in vms:
        incremental, reason = decide_kind(job, vm.uuid, schedule=schedule, now=now)
        row = VmBackup(
            run=run, vm=vm, pool=vm.pool, vm_uuid=vm.uuid, vm_name=vm.name, store=job.store, method=job.method,
            excluded_disks=excluded.get(vm.pk, []),
            incremental=incremental, kind_reason=reason, quiesce_fallback=job.quiesce_fallback,
            restart_after_snapshot=job.restart_after_snapshot, allow_hard_shutdown=job.allow_hard_shutdown,
            shutdown_timeout=job.shutdown_timeout, transfer_compression=job.transfer_compression,
        )
        if vm.uuid in busy:
            row.status, row.finished_at = RunStatus.SKIPPED, now
            row.error = "skipped: a backup of this VM was already queued or running"
        rows.append(row)
    for vm in missing_explicit_vms(job):
        rows.append(VmBackup(run=run, vm=vm, pool=vm.pool, vm_uuid=vm.uuid, vm_name=vm.name, store=job.store,
                             method=job.method, status=RunStatus.SKIPPED, finished_at=now,
                             error="skipped: the VM no longer exists in its pool"))
    VmBackup.objects.bulk_create(rows)
    if not rows:
        notes.append("no VM matches the job's selection")
    run.message = "; ".join(notes)
    run.save(update_fields=["message"])
    record_event(AuditAction.JOB_START, target=run, actor=user if user is not None and user.is_authenticated else None,
                 message=f"job {job.name}: run #{run.pk} started ({Trigger(trigger).label}), "
                         f"{sum(r.status == RunStatus.QUEUED for r in rows)} VM(s)"
                         + (f"; {run.message}" if run.message else ""))
    transaction.on_commit(lambda: _after_start(run.pk, to_workers=to_workers))
    return run


def excluded_positions(job, vms):
    """{vm pk: [userdevice, ...]} of the job's excluded disks among these VMs' disks."""
    if not job.excluded_disks:
        return {}
    from xenpools.models import VirtualDisk

    positions = {}
    for vm_id, userdevice in (VirtualDisk.objects.filter(vm__in=vms, vdi__uuid__in=job.excluded_disks)
                              .values_list("vm_id", "userdevice")):
        positions.setdefault(vm_id, []).append(userdevice)
    return positions


def _after_start(run_id, to_workers=True):
    from ..engine.backup import finish_run_if_done

    publish("runs", {"type": "run.queued", "run": run_id})
    publish("dashboard", {"type": "run.queued", "run": run_id})
    if to_workers:
        dispatch(run_id)
    finish_run_if_done(run_id)        # a run with nothing to do is finished at once


def _missed_slots(schedule, slot, now):
    """A schedule that fired late (console or workers down) runs once; say what was missed."""
    if now - slot < MISSED_AFTER:
        return []
    missed = [m for m in [slot, *times_between(schedule.cron, schedule.timezone, slot, now)] if now - m >= MISSED_AFTER]
    type(schedule).objects.filter(pk=schedule.pk).update(last_missed_at=missed[0], last_missed_count=len(missed))
    first = missed[0].astimezone(zone(schedule.timezone))
    return [f"{len(missed)} scheduled run(s) were missed since {first:%Y-%m-%d %H:%M %Z} "
            "(the console or its workers were down); this run catches up once"]


def claim_next(run_id, now=None) -> list[int]:
    """The queued VM backups that may start now, marked as handed out: no more than the job's
    (and its data store's) free slots; none once the run window closed (those VMs are skipped with the reason). A VM
    that came back waiting for a stream stays queued while that scope is still full (its
    place is kept; VMs behind it may go)."""
    run = BackupRun.objects.select_related("job__store").get(pk=run_id)
    now = now or timezone.now()
    if run.window_ends_at and now >= run.window_ends_at:
        skip_after_window(run, now)
        return []
    # No more in flight than the store takes streams either: a VM handed out beyond that
    # would only come back waiting (the host's limit is known once a worker has connected).
    limit = max(1, min(run.job.max_parallel_vms, run.job.store.max_parallel_streams) if run.job else 1)
    claimed = []
    with transaction.atomic():
        in_flight = VmBackup.objects.filter(run=run, dispatched_at__isnull=False, status__in=ACTIVE).count()
        queued = (VmBackup.objects.filter(run=run, dispatched_at__isnull=True, status=RunStatus.QUEUED)
                  .order_by("pk").values_list("pk", "waiting_scope"))
        still_full = {}
        for pk, scope in queued:
            if in_flight + len(claimed) >= limit:
                break
            if scope:
                if scope not in still_full:
                    still_full[scope] = streams.full([scope], now) is not None
                if still_full[scope]:
                    continue
            # Claimed with a conditional UPDATE: two dispatchers never send the same VM twice.
            if VmBackup.objects.filter(pk=pk, dispatched_at__isnull=True).update(dispatched_at=now):
                claimed.append(pk)
    return claimed


def dispatch(run_id):
    """Hand queued VM backups to the workers while fewer than the job's limit are in flight;
    VMs whose run window closed are skipped with the reason. Each goes to the worker cluster
    of its data store."""
    sent = claim_next(run_id)
    if not sent:
        return []
    run = BackupRun.objects.select_related("job__store__device_server").get(pk=run_id)
    # Routed to the store's cluster; held back (or failed after the wait) while its device server is down.
    return send_vm_backups(run.job.store, sent, group=f"backup-run-{run.pk}",
                           task_name=lambda pk: f"backup #{pk} of run #{run.pk}")


def dispatch_waiting():
    """A stream slot came free: every run with VMs waiting for one (any job, or a single
    VM's Back up now) dispatches again; those whose scope is still full stay queued."""
    runs = (VmBackup.objects.filter(status=RunStatus.QUEUED, dispatched_at__isnull=True).exclude(waiting_scope="")
            .values_list("run_id", flat=True).distinct())
    return [pk for run_id in sorted(set(runs)) for pk in dispatch(run_id)]


def skip_after_window(run, now=None):
    """VMs that had not started when the run window closed: skipped and reported."""
    from ..engine.backup import finish_run_if_done

    now = now or timezone.now()
    closed = run.window_ends_at
    skipped = VmBackup.objects.filter(run=run, status=RunStatus.QUEUED).update(
        status=RunStatus.SKIPPED, finished_at=now, waiting="", waiting_scope="",
        error=f"skipped: the run window closed at {closed:%Y-%m-%d %H:%M %Z} before this VM's backup started")
    if skipped:
        record_event(AuditAction.JOB_CANCEL, target=run,
                     message=f"{run}: {skipped} VM(s) skipped, the run window closed before they started")
        finish_run_if_done(run.pk)
    return skipped


def skip_if_window_closed(vm_backup_id, now=None) -> bool:
    """Called by the worker before it claims a VM: a task that waited in the queue past the
    window does not start."""
    row = VmBackup.objects.select_related("run").get(pk=vm_backup_id)
    if row.status == RunStatus.QUEUED and row.run.window_ends_at and (now or timezone.now()) >= row.run.window_ends_at:
        skip_after_window(row.run, now)
        return True
    return False


def retry_failed(run, user=None) -> BackupRun:
    """A new run of the same job for the VMs that failed or were skipped in `run`."""
    if run.job is None:
        raise JobRunError("only a job's run can be retried; use Back up now for a single VM")
    if not run.is_finished:
        raise JobRunError("the run is still going; retry once it has finished")
    failed = list(run.vm_backups.filter(status__in=[RunStatus.FAILED, RunStatus.SKIPPED, RunStatus.CANCELLED])
                  .exclude(vm=None).select_related("vm", "vm__pool"))
    if not failed:
        raise JobRunError("no VM of this run failed")
    job = run.job
    now = timezone.now()
    with transaction.atomic():
        retry = BackupRun.objects.create(trigger=Trigger.MANUAL, requested_by=user if user is not None and user.is_authenticated else None,
                                         job=job, message=f"retry of the failed VMs of run #{run.pk}")
        rows = []
        excluded = excluded_positions(job, [old.vm for old in failed])
        for old in failed:
            incremental, reason = decide_kind(job, old.vm_uuid, now=now)
            rows.append(VmBackup(
                run=retry, vm=old.vm, pool=old.vm.pool, vm_uuid=old.vm_uuid, vm_name=old.vm.name, store=job.store,
                excluded_disks=excluded.get(old.vm.pk, []),
                method=job.method, incremental=incremental, kind_reason=reason,
                quiesce_fallback=job.quiesce_fallback, restart_after_snapshot=job.restart_after_snapshot,
                allow_hard_shutdown=job.allow_hard_shutdown, shutdown_timeout=job.shutdown_timeout,
                transfer_compression=job.transfer_compression,
            ))
        VmBackup.objects.bulk_create(rows)
        record_event(AuditAction.JOB_START, target=retry, actor=user if user is not None and user.is_authenticated else None,
                     message=f"job {job.name}: retry of {len(rows)} failed VM(s) of run #{run.pk} as run #{retry.pk}")
        transaction.on_commit(lambda: _after_start(retry.pk))
    return retry


def cancel_vm(vm_backup, user=None):
    """Cancel one VM of a run: a queued one at once, a running one at its next progress step."""
    from ..engine.backup import finish_run_if_done

    with transaction.atomic():
        VmBackup.objects.filter(pk=vm_backup.pk, status=RunStatus.QUEUED).update(
            status=RunStatus.CANCELLED, finished_at=timezone.now(), error="cancelled before it started",
            waiting="", waiting_scope="")
        VmBackup.objects.filter(pk=vm_backup.pk, status=RunStatus.RUNNING).update(cancel_requested=True)
        record_event(AuditAction.JOB_CANCEL, target=vm_backup, actor=user, message=f"backup of {vm_backup.vm_name} cancelled")
    finish_run_if_done(vm_backup.run_id)
    if vm_backup.run.trigger != Trigger.CLI:      # `manage.py job run` claims the next VM in its own process
        dispatch(vm_backup.run_id)


def after_vm_backup(vm_backup_id):
    """A VM of a job's run finished: start the next one; after the last, apply retention."""
    row = VmBackup.objects.select_related("run").filter(pk=vm_backup_id).first()
    if row is None:
        return
    dispatch_waiting()                   # its slots are free: VMs of any run waiting for them
    if row.run.job_id is None:
        return
    dispatch(row.run_id)
    run = BackupRun.objects.get(pk=row.run_id)
    if run.is_finished:
        finish_job_run(run)


def finish_job_run(run):
    """Retention after the run (its own step, never inside a backup's transaction)."""
    from .retention import apply_retention

    if run.job is None:
        return None
    try:
        plan = apply_retention(run.job)
    except Exception as exc:  # noqa: BLE001 - a store problem must not hide the run's own result
        log.warning("retention after run %s failed: %s", run.pk, exc)
        BackupRun.objects.filter(pk=run.pk).update(
            message=(run.message + "; " if run.message else "") + f"retention failed: {exc}")
        return None
    if plan.remove:
        BackupRun.objects.filter(pk=run.pk).update(
            message=(run.message + "; " if run.message else "") + f"retention removed {len(plan.remove)} restore point(s)")
    return plan
