"""The clean-up pass over a pool: snapshots, chain disks and restored objects that interrupted
backups and restores left there are removed, and the audit log lists them.

    request_cleanup(pool, user)  -> "Clean up now": a queued pass (one per pool at a time)
    clean_all_pools()            -> the periodic task (a django-q2 schedule, migration 0007)
    run_cleanup(cleanup)         -> one pass, on a worker

Before looking, backups and restores whose worker died are failed (their lease went stale),
so what a killed worker left is found at once. What is found and removed is the shared code
of backups/engine/leftovers.py (the next backup and the next restore use it too); an owner
that showed life within CLEANUP_MIN_AGE is left for the next pass (a worker judged dead that
is only slow keeps its snapshot a while longer; what a worker surely dead left is removed by
the minute watchdog already, backups/jobs/tasks.py). A leftover xapi refuses to
remove (VDI_IN_USE: a disk still attached to dom0) is listed with the reason and retried.

One audit event per pass that removed or kept something (and per pass someone asked for),
on the pool, listing each object: an auditor reads one entry per pool and hour, not hundreds.
"""
import logging
from datetime import timedelta

import XenAPI
from django.utils import timezone

from sesamweb.audit.choices import AuditAction, AuditOutcome
from sesamweb.audit.log import acting_as, record_event
from sesamweb.live.publish import publish
from xenpools.connection import PoolConnection, PoolError
from xenpools.models import Pool

from .choices import CleanupStatus, CleanupTrigger
from .engine.backup import LEASE_STALE_AFTER, fail_abandoned_backups
from .engine.leftovers import CleanupReport, clean_backup_leftovers, clean_restore_leftovers
from .engine.prepare import describe_failure
from .models import PoolCleanup
from .restore.engine import fail_abandoned_restores

log = logging.getLogger(__name__)

CLEANUP_MIN_AGE = timedelta(seconds=LEASE_STALE_AFTER)   # an owner's heartbeat newer than this: left alone
CLEANUP_STALE_AFTER = timedelta(minutes=30)               # a pass not finished by then is presumed dead
CLEANUP_TASK = "backups.tasks.clean_pool_task"
KEEP_PASSES = 50                                          # per pool; older rows are deleted


class CleanupAlreadyRunning(Exception):
    pass


def _busy(pool, now):
    return PoolCleanup.objects.filter(pool=pool, status__in=[CleanupStatus.QUEUED, CleanupStatus.RUNNING],
                                      created_at__gt=now - CLEANUP_STALE_AFTER).first()


def request_cleanup(pool: Pool, user=None) -> PoolCleanup:
    """Queue a pass on a worker ("Clean up now"); refused while one is queued or running."""
    from django_q.tasks import async_task

    if _busy(pool, timezone.now()):
        raise CleanupAlreadyRunning(f"A clean-up of pool {pool.name} is already running; wait for it to finish.")
    cleanup = PoolCleanup.objects.create(pool=pool, trigger=CleanupTrigger.MANUAL, requested_by=user)
    try:
        async_task(CLEANUP_TASK, cleanup.pk, task_name=f"clean up pool {pool.name}", group="pool-cleanup")
    except Exception:
        cleanup.delete()                   # the broker refused: nothing is waiting, the next request may try
        raise
    return cleanup


def clean_all_pools(now=None) -> list[PoolCleanup]:
    """The periodic pass: every pool, one after the other; a pool already being cleaned is skipped."""
    now = now or timezone.now()
    passes = []
    for pool in Pool.objects.all():
        if _busy(pool, now):
            continue
        passes.append(run_cleanup(PoolCleanup.objects.create(pool=pool, trigger=CleanupTrigger.SCHEDULE), now=now))
    return passes


def run_cleanup(cleanup: PoolCleanup, now=None) -> PoolCleanup:
    """One pass over one pool: fail dead owners, find and remove leftovers, record, audit."""
    claimed = PoolCleanup.objects.filter(pk=cleanup.pk, status=CleanupStatus.QUEUED).update(
        status=CleanupStatus.RUNNING, started_at=timezone.now())
    if not claimed:
        return cleanup                     # a re-delivered task: the pass ran already
    cleanup.status = CleanupStatus.RUNNING
    publish_cleanup_state(cleanup)
    fail_abandoned_backups()
    fail_abandoned_restores()
    pool = cleanup.pool
    report = CleanupReport()
    try:
        with PoolConnection.open(pool) as conn:
            report.add(clean_backup_leftovers(conn.xenapi, min_age=CLEANUP_MIN_AGE, now=now))
            report.add(clean_restore_leftovers(conn.xenapi, min_age=CLEANUP_MIN_AGE, now=now))
    except PoolError as exc:
        cleanup.error = f"pool {pool.name} could not be reached: {exc}; the next pass retries"
    except XenAPI.Failure as exc:
        cleanup.error = f"pool {pool.name} refused: {describe_failure(exc)}; the next pass retries"
    cleanup.removed = [leftover.as_dict() for leftover in report.removed]
    cleanup.kept = [{**leftover.as_dict(), "reason": reason} for leftover, reason in report.kept]
    cleanup.waiting = report.waiting
    cleanup.status = (CleanupStatus.FAILED if cleanup.error else CleanupStatus.KEPT if cleanup.kept
                      else CleanupStatus.DONE)
    cleanup.finished_at = timezone.now()
    cleanup.save(update_fields=["removed", "kept", "waiting", "status", "error", "finished_at"])
    _audit(cleanup)
    publish_cleanup_state(cleanup)
    _forget_old_passes(pool)
    return cleanup


def publish_cleanup_state(cleanup: PoolCleanup) -> None:
    """The pool page's clean-up card follows the pass live (topic "pool:<id>")."""
    publish(f"pool:{cleanup.pool_id}", {
        "type": "pool.cleanup", "id": cleanup.pool_id, "status": cleanup.status,
        "status_label": CleanupStatus(cleanup.status).label, "badge": cleanup.status_badge,
        "summary": cleanup.summary, "listed": len(cleanup.removed) + len(cleanup.kept),
    })


def _audit(cleanup: PoolCleanup):
    manual = cleanup.trigger == CleanupTrigger.MANUAL
    if not (cleanup.removed or cleanup.kept or manual):
        return                             # a periodic pass that changed nothing is no event
    lines = [f"removed {item['kind']} '{item['name']}' ({item['uuid']}) of {item['owner']}" for item in cleanup.removed]
    lines += [f"could not remove {item['kind']} '{item['name']}' ({item['uuid']}) of {item['owner']}: {item['reason']}"
              for item in cleanup.kept]
    message = f"clean-up of pool {cleanup.pool.name}: {cleanup.summary}"
    if lines:
        message += "\n" + "\n".join(lines)
    with acting_as(cleanup.requested_by, source="worker" if manual else "scheduler"):
        record_event(AuditAction.DELETE, target=cleanup.pool, message=message,
                     before={"removed": cleanup.removed, "kept": cleanup.kept} if lines else None,
                     outcome=AuditOutcome.FAILURE if cleanup.error or cleanup.kept else AuditOutcome.SUCCESS)


def _forget_old_passes(pool):
    old = PoolCleanup.objects.filter(pool=pool).order_by("-created_at", "-pk").values_list("pk", flat=True)[KEEP_PASSES:]
    PoolCleanup.objects.filter(pk__in=list(old)).delete()


def last_cleanup(pool: Pool) -> PoolCleanup | None:
    return PoolCleanup.objects.filter(pool=pool).first()
