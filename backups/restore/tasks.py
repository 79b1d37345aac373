"""django-q2 entry point for restores (thin: load the row, run the engine, report)."""
from .plan import run_restore


def run_restore_task(restore_run_id: int) -> str:
    run = run_restore(restore_run_id)
    if run is None:
        return f"restore #{restore_run_id} is already being run by another worker"
    return f"{run}: {run.status}" + (f" ({run.error})" if run.error else "")
