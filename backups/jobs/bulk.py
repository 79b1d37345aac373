"""Actions on several VMs at once, from the VM list: add them to a job, back them up now."""
from dataclasses import dataclass, field

from django.db import transaction

from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import record_event

from ..choices import BackupMethod, Trigger
from ..services import BackupRequestError, queue_run, request_backup
from .choices import SelectionMode


class BulkActionError(ValueError):
    """The action cannot be done as asked; the message says why."""


@dataclass
class BulkResult:
    done: list = field(default_factory=list)          # VMs added, or (VM, run) queued
    skipped: list = field(default_factory=list)       # (VM, reason)


@transaction.atomic
def add_vms_to_job(job, vms, user=None) -> BulkResult:
    """Add VMs to a job that backs up chosen VMs (a rule job selects its own; adding to it
    would be silently ignored by the rule)."""
    if job.selection != SelectionMode.EXPLICIT:
        raise BulkActionError(f"job {job.name} selects VMs by a rule; edit its rule instead")
    result = BulkResult()
    already = set(job.vms.values_list("pk", flat=True))
    for vm in vms:
        if vm.removed_at is not None:
            result.skipped.append((vm, "no longer exists in its pool"))
        elif vm.pk in already:
            result.skipped.append((vm, f"already in job {job.name}"))
        else:
            result.done.append(vm)
    if result.done:
        job.vms.add(*result.done)
        record_event(AuditAction.UPDATE, target=job, actor=user,
                     before={"vms": sorted(already)}, after={"vms": sorted(already | {vm.pk for vm in result.done})},
                     message=f"{len(result.done)} VM(s) added to job {job.name}: "
                             + ", ".join(vm.name for vm in result.done))
    return result


def back_up_now(vms, *, store, user=None, incremental=True) -> BulkResult:
    """One backup per VM to `store` (normal snapshot, incremental where a chain exists);
    VMs that cannot be backed up now (already busy, deleted) are skipped with the reason."""
    result = BulkResult()
    for vm in vms:
        try:
            run = request_backup(vm=vm, store=store, method=BackupMethod.NORMAL, incremental=incremental,
                                 trigger=Trigger.MANUAL, user=user)
        except BackupRequestError as exc:
            result.skipped.append((vm, str(exc)))
            continue
        queue_run(run)
        result.done.append((vm, run))
    return result
