"""django-q2 entry points (thin: load the row, call the engine, report the outcome)."""
from .engine.backup import run_vm_backup


def run_vm_backup_task(vm_backup_id: int) -> str:
    vm_backup = run_vm_backup(vm_backup_id)
    if vm_backup is None:
        return f"backup #{vm_backup_id} is already being run by another worker"
    return f"{vm_backup.vm_name}: {vm_backup.status}" + (f" ({vm_backup.error})" if vm_backup.error else "")
