"""Syncs asked for by a person ("Sync now", the API, a newly added pool) run on a worker.

    request_sync(pool, user)  -> claims the pool (one sync at a time) and queues the task
    run_requested_sync(pool)  -> on the worker: sync_pool with live progress, outcome, audit

The claim is a conditional UPDATE of Pool.sync_state, so two requests (two browsers, two web
processes) never queue two syncs of one pool: the second is told one is running. A worker
that dies mid-sync stops the heartbeat; after SYNC_STALE_AFTER the claim may be taken again.
Progress (phase; hosts, VMs, SRs and VDIs read) is kept on the pool row and published on the
pool's live topic ("pool:<id>", event type "pool.sync"), so the page shows it as it happens
and after a reload.
"""
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from sesamweb.audit.choices import AuditAction, AuditOutcome
from sesamweb.audit.log import acting_as, record_event
from sesamweb.live.publish import publish

from .broadcast import publish_pool_state
from .choices import SyncPhase, SyncState
from .connection import PoolAuthenticationFailed, PoolCertificateError, PoolError, PoolUnreachable
from .inventory import SyncResult, is_mirrored_vm, sync_pool
from .models import Pool

SYNC_STALE_AFTER = timedelta(minutes=10)     # no heartbeat for this long: the worker is gone
SYNC_TASK = "xenpools.tasks.sync_pool_task"
# What the progress line counts, by XenAPI class.
COUNTED = {"host": "hosts", "VM": "vms", "SR": "srs", "VDI": "vdis"}


class SyncAlreadyRunning(Exception):
    pass


def request_sync(pool: Pool, user=None, *, now=None) -> None:
    """Claim the pool's sync and queue it on a worker; raises SyncAlreadyRunning if one is
    queued or running (and still alive)."""
    from django_q.tasks import async_task

    now = now or timezone.now()
    progress = {"phase": SyncPhase.QUEUED, "counts": {}}
    claimed = Pool.objects.filter(pk=pool.pk).filter(
        Q(sync_state=SyncState.IDLE) | Q(sync_heartbeat__lt=now - SYNC_STALE_AFTER) | Q(sync_heartbeat=None),
    ).update(sync_state=SyncState.QUEUED, sync_heartbeat=now, sync_progress=progress)
    if not claimed:
        raise SyncAlreadyRunning(f"A sync of pool {pool.name} is already running; wait for it to finish.")
    try:
        async_task(SYNC_TASK, pool.pk, user.pk if user is not None and user.is_authenticated else None,
                   task_name=f"sync pool {pool.name}", group="pool-sync")
    except Exception:
        # The broker refused (Redis down): release the claim so the next request may try again.
        Pool.objects.filter(pk=pool.pk, sync_state=SyncState.QUEUED).update(sync_state=SyncState.IDLE, sync_progress={})
        raise
    pool.refresh_from_db(fields=["sync_state", "sync_heartbeat", "sync_progress"])
    publish_sync_state(pool)


class SyncProgress:
    """What sync_pool tells us, written to the pool row (heartbeat) and published live."""

    def __init__(self, pool: Pool):
        self.pool = pool
        self.counts = {name: 0 for name in COUNTED.values()}

    def connected(self):
        self._save(SyncPhase.READING)

    def read(self, cls, records):
        if cls in COUNTED:
            if cls == "VM":
                records = {ref: r for ref, r in records.items() if is_mirrored_vm(r) and not r.get("is_a_snapshot")}
            self.counts[COUNTED[cls]] = len(records)
            self._save(SyncPhase.READING, reading=cls)

    def writing(self):
        self._save(SyncPhase.WRITING)

    def _save(self, phase, reading=""):
        self.pool.sync_progress = {"phase": phase, "counts": dict(self.counts), "reading": reading}
        self.pool.sync_heartbeat = timezone.now()
        Pool.objects.filter(pk=self.pool.pk).update(sync_progress=self.pool.sync_progress,
                                                     sync_heartbeat=self.pool.sync_heartbeat)
        publish_sync_state(self.pool)


def run_requested_sync(pool: Pool, user=None, *, source="worker") -> SyncResult | None:
    """The queued sync: runs it, keeps the outcome on the pool, audits it (as `user`).
    Returns the result, None when the pool could not be synced (the outcome says why)."""
    Pool.objects.filter(pk=pool.pk).update(sync_state=SyncState.RUNNING, sync_heartbeat=timezone.now())
    pool.sync_state = SyncState.RUNNING
    master_before = pool.master_address
    progress = SyncProgress(pool)
    progress._save(SyncPhase.CONNECTING)
    result, ok = None, False
    try:
        result = sync_pool(pool, progress)
    except PoolError as exc:
        outcome = describe_sync_failure(exc)
    except Exception as exc:
        _finish(pool, progress, False, f"The sync stopped on an unexpected error: {exc.__class__.__name__}: {exc}")
        raise
    else:
        ok = True
        c = progress.counts
        outcome = (f"Synced: {c['hosts']} hosts, {c['vms']} VMs, {c['srs']} storage repositories and {c['vdis']} disks "
                   f"read; {sum(result.counts.values())} records changed.")
        if pool.master_address != master_before and master_before:
            outcome += f" The pool master moved from {master_before} to {pool.master_address}; the console follows it."
    publish_pool_state(pool)               # health and counts first, then the outcome beside them
    _finish(pool, progress, ok, outcome)
    with acting_as(user, source=source):
        record_event(AuditAction.SYNC, target=pool, outcome=AuditOutcome.SUCCESS if ok else AuditOutcome.FAILURE,
                     message=f"sync of pool {pool.name}: {outcome}")
    return result


def describe_sync_failure(exc: PoolError) -> str:
    """Plain words for why a sync failed (the connection's own message gives the detail)."""
    if isinstance(exc, PoolAuthenticationFailed):
        return f"Wrong user name or password: the pool master refused the login ({exc}). Edit the pool to fix them."
    if isinstance(exc, PoolCertificateError):
        return f"Certificate problem: {exc}"
    if isinstance(exc, PoolUnreachable):
        return f"The pool could not be reached: {exc}"
    return f"The pool refused the sync: {exc}"


def _finish(pool, progress, ok, outcome):
    now = timezone.now()
    pool.sync_state, pool.sync_ok, pool.sync_outcome, pool.sync_finished_at = SyncState.IDLE, ok, outcome, now
    pool.sync_progress = {"phase": SyncPhase.DONE, "counts": dict(progress.counts), "reading": ""}
    Pool.objects.filter(pk=pool.pk).update(sync_state=SyncState.IDLE, sync_ok=ok, sync_outcome=outcome,
                                           sync_finished_at=now, sync_heartbeat=now, sync_progress=pool.sync_progress)
    publish_sync_state(pool)


def sync_state(pool: Pool) -> dict:
    """The sync's state as the page, the live event and the API show it."""
    progress = pool.sync_progress or {}
    phase = progress.get("phase", "")
    return {
        "id": pool.pk,
        "state": pool.sync_state,
        "state_label": SyncState(pool.sync_state).label,
        "phase": phase,
        "phase_label": SyncPhase(phase).label if phase in SyncPhase.values else "",
        "counts": progress.get("counts", {}),
        "ok": pool.sync_ok,
        "outcome": pool.sync_outcome,
        "finished_at": pool.sync_finished_at.isoformat() if pool.sync_finished_at else None,
    }


def publish_sync_state(pool: Pool) -> None:
    publish(f"pool:{pool.pk}", {"type": "pool.sync", **sync_state(pool)})
