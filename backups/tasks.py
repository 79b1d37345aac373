"""django-q2 entry points (thin: load the row, call the engine, report the outcome)."""
from django.utils import timezone
from .devices.routing import enqueue_for_store
from .engine.backup import run_vm_backup
from .jobs.runs import after_vm_backup, skip_if_window_closed
from .maintenance import collect_garbage, points_to_verify, prune_store, refresh_catalog, verify_points
from .models import DataStore
from .repository import RetentionPolicy
from .store_progress import StoreTaskProgress
from .cli import human_bytes


def run_vm_backup_task(vm_backup_id: int) -> str:
    if skip_if_window_closed(vm_backup_id):
        return f"backup #{vm_backup_id} skipped: the run window closed before it started"
    try:
        vm_backup = run_vm_backup(vm_backup_id, requeue_when_busy=True)
    finally:
        after_vm_backup(vm_backup_id)        # a job's next VM starts, retention after the last
    if vm_backup is None:
        return f"backup #{vm_backup_id} is already being run by another worker"
    if vm_backup.waiting:
        return f"{vm_backup.vm_name}: back in the queue, {vm_backup.waiting}"
    return f"{vm_backup.vm_name}: {vm_backup.status}" + (f" ({vm_backup.error})" if vm_backup.error else "")


# --- store maintenance, queued from the data store page ---------------------------------

def verify_store_task(store_id: int, older_than_days: int = 0) -> str:
    store = DataStore.objects.get(pk=store_id)
    points = points_to_verify(store, older_than_days) if older_than_days else None
    with StoreTaskProgress(store, "verify") as progress:
        report = verify_points(store, points, on_progress=lambda done, total: progress.update(
            done, total, f"{done} of {total} chunks checked"))
        damaged = report.damaged
        scope = f" not verified for {older_than_days} day(s)" if older_than_days else ""
        return progress.done(f"verified {len(report.backups)} restore point(s){scope}, {report.chunks_checked} "
                             "chunks: " + (f"{len(damaged)} damaged ({', '.join(b.id for b in damaged)})"
                                           if damaged else "all good"))


def prune_store_task(store_id: int, keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0,
                     confirm_last=False) -> str:
    policy = RetentionPolicy(keep_last=keep_last, keep_daily=keep_daily, keep_weekly=keep_weekly,
                             keep_monthly=keep_monthly)
    plan = prune_store(DataStore.objects.get(pk=store_id), policy, confirm_last=confirm_last)
    return f"removed {len(plan.remove)} restore point(s), kept {len(plan.keep)}"


def collect_garbage_task(store_id: int) -> str:
    store = DataStore.objects.get(pk=store_id)
    with StoreTaskProgress(store, "gc") as progress:
        report = collect_garbage(store, on_progress=lambda scanned, removed: progress.update(
            None, None, f"{scanned} chunks scanned, {removed} removed"))
        return progress.done(f"removed {report.deleted_chunks} chunk(s), {human_bytes(report.deleted_bytes)}")


def refresh_catalog_task(store_id: int) -> str:
    added, removed = refresh_catalog(DataStore.objects.get(pk=store_id))
    return f"catalog refreshed: {added} restore point(s) added, {removed} removed"


STORE_TASKS = {
    "verify": (verify_store_task, "Verify"),
    "prune": (prune_store_task, "Prune"),
    "gc": (collect_garbage_task, "Garbage collection"),
    "refresh": (refresh_catalog_task, "Catalog refresh"),
}


def run_store_maintenance(maintenance_id: int) -> str:
    """What a data store's maintenance schedule calls: its action, the result kept on the row
    (the store page shows it; damaged points found by verify raise a dashboard alert)."""
    from .models import StoreMaintenanceSchedule

    maintenance = StoreMaintenanceSchedule.objects.select_related("store").filter(pk=maintenance_id).first()
    if maintenance is None:
        return f"maintenance schedule #{maintenance_id} no longer exists"
    StoreMaintenanceSchedule.objects.filter(pk=maintenance.pk).update(last_started_at=timezone.now())
    function, _label = STORE_TASKS[maintenance.action]
    options = {"older_than_days": maintenance.verify_older_than_days} if maintenance.action == "verify" else {}
    try:
        result = function(maintenance.store_id, **options)
        ok = not (maintenance.action == "verify" and "damaged" in result)
    except Exception as exc:  # noqa: BLE001 - recorded on the row for the store page, then re-raised
        StoreMaintenanceSchedule.objects.filter(pk=maintenance.pk).update(
            last_finished_at=timezone.now(), last_ok=False, last_result=f"failed: {exc}"[:2000])
        raise
    StoreMaintenanceSchedule.objects.filter(pk=maintenance.pk).update(
        last_finished_at=timezone.now(), last_ok=ok, last_result=result[:2000])
    return result


def store_task_group(store: DataStore) -> str:
    return f"store-{store.pk}"


def queue_store_task(store: DataStore, action: str, **options) -> str:
    """Queue verify / prune / gc / refresh on the store's worker cluster; returns the task id."""
    function, label = STORE_TASKS[action]
    return enqueue_for_store(store, f"backups.tasks.{function.__name__}", store.pk, **options,
                             group=store_task_group(store), task_name=f"{label.lower()} of data store {store.name}")


# --- pool clean-up: leftovers of interrupted backups and restores (pool_cleanup.py) --------

def clean_pool_task(cleanup_id: int) -> str:
    """"Clean up now" on a pool page: one queued pass."""
    from .models import PoolCleanup
    from .pool_cleanup import run_cleanup

    cleanup = PoolCleanup.objects.select_related("pool", "requested_by").filter(pk=cleanup_id).first()
    if cleanup is None:
        return f"clean-up #{cleanup_id} no longer exists (its pool was removed)"
    cleanup = run_cleanup(cleanup)
    return f"pool {cleanup.pool.name}: {cleanup.summary}"


def clean_pools_task() -> str:
    """The periodic clean-up of every pool (its schedule row: migration 0011)."""
    from .pool_cleanup import clean_all_pools

    passes = clean_all_pools()
    return "; ".join(f"{c.pool.name}: {c.summary}" for c in passes) or "no pools"
