"""django-q2 entry points (thin: load the row, call the engine, report the outcome)."""
from django_q.tasks import async_task

from .engine.backup import run_vm_backup
from .jobs.runs import after_vm_backup, skip_if_window_closed
from .maintenance import collect_garbage, prune_store, refresh_catalog, verify_points
from .models import DataStore
from .repository import RetentionPolicy


def run_vm_backup_task(vm_backup_id: int) -> str:
    if skip_if_window_closed(vm_backup_id):
        return f"backup #{vm_backup_id} skipped: the run window closed before it started"
    try:
        vm_backup = run_vm_backup(vm_backup_id)
    finally:
        after_vm_backup(vm_backup_id)        # a job's next VM starts, retention after the last
    if vm_backup is None:
        return f"backup #{vm_backup_id} is already being run by another worker"
    return f"{vm_backup.vm_name}: {vm_backup.status}" + (f" ({vm_backup.error})" if vm_backup.error else "")


# --- store maintenance, queued from the data store page ---------------------------------

def verify_store_task(store_id: int) -> str:
    report = verify_points(DataStore.objects.get(pk=store_id))
    damaged = report.damaged
    return (f"verified {len(report.backups)} restore point(s), {report.chunks_checked} chunks: "
            + (f"{len(damaged)} damaged" if damaged else "all good"))


def prune_store_task(store_id: int, keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0,
                     confirm_last=False) -> str:
    policy = RetentionPolicy(keep_last=keep_last, keep_daily=keep_daily, keep_weekly=keep_weekly,
                             keep_monthly=keep_monthly)
    plan = prune_store(DataStore.objects.get(pk=store_id), policy, confirm_last=confirm_last)
    return f"removed {len(plan.remove)} restore point(s), kept {len(plan.keep)}"


def collect_garbage_task(store_id: int) -> str:
    report = collect_garbage(DataStore.objects.get(pk=store_id))
    return f"removed {report.deleted_chunks} chunk(s), {report.deleted_bytes} bytes"


def refresh_catalog_task(store_id: int) -> str:
    added, removed = refresh_catalog(DataStore.objects.get(pk=store_id))
    return f"catalog refreshed: {added} restore point(s) added, {removed} removed"


STORE_TASKS = {
    "verify": (verify_store_task, "Verify"),
    "prune": (prune_store_task, "Prune"),
    "gc": (collect_garbage_task, "Garbage collection"),
    "refresh": (refresh_catalog_task, "Catalog refresh"),
}


def store_task_group(store: DataStore) -> str:
    return f"store-{store.pk}"


def queue_store_task(store: DataStore, action: str, **options) -> str:
    """Queue verify / prune / gc / refresh on the store's worker cluster; returns the task id."""
    function, label = STORE_TASKS[action]
    return async_task(f"backups.tasks.{function.__name__}", store.pk, **options,
                      cluster=store.cluster or None, group=store_task_group(store),
                      task_name=f"{label.lower()} of data store {store.name}")
