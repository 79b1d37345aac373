"""Changes to jobs, their schedules and protected restore points, as the API and the command
line make them: each one audited, and the django-q2 rows kept in step with the schedules.

Validation lives in the API serializers (backups/jobs/api_serializers.py), which the command
line uses too; these functions run after a valid change is saved (or instead of the delete).
"""
from django.db import transaction

from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import model_snapshot, record_event

from ..models import BackupJob, JobSchedule, RestorePoint
from .schedules import describe, sync_schedule


def job_saved(job: BackupJob, *, before: dict | None = None, user=None):
    """After a job was created (before=None) or changed: audit it and arm or disarm its
    schedules (a disabled job's schedules do not fire)."""
    record_event(AuditAction.CREATE if before is None else AuditAction.UPDATE, target=job, actor=user,
                 before=before, after=model_snapshot(job),
                 message=f"backup job {job.name} {'created' if before is None else 'changed'}")
    for schedule in job.schedules.select_related("q_schedule"):
        sync_schedule(schedule)


@transaction.atomic
def delete_job(job: BackupJob, user=None):
    """Delete a job with its schedules and their django-q2 rows; its runs and restore points stay."""
    before = model_snapshot(job)
    for schedule in list(job.schedules.all()):
        _drop_q_row(schedule)
    record_event(AuditAction.DELETE, target=job, actor=user, before=before, message=f"backup job {job.name} deleted")
    job.delete()


def schedule_saved(schedule: JobSchedule, *, before: dict | None = None, user=None):
    """After a schedule was created or changed: its django-q2 row follows, then the audit."""
    sync_schedule(schedule)
    record_event(AuditAction.CREATE if before is None else AuditAction.UPDATE, target=schedule.job, actor=user,
                 before=before, after=model_snapshot(schedule),
                 message=f"backup job {schedule.job.name}: schedule #{schedule.pk} "
                         f"{'added' if before is None else 'changed'}: {describe(schedule.cron)} ({schedule.timezone})")


@transaction.atomic
def delete_schedule(schedule: JobSchedule, user=None):
    before = model_snapshot(schedule)
    _drop_q_row(schedule)
    record_event(AuditAction.DELETE, target=schedule.job, actor=user, before=before,
                 message=f"backup job {schedule.job.name}: schedule #{schedule.pk} removed "
                         f"({describe(schedule.cron)}, {schedule.timezone})")
    schedule.delete()


def _drop_q_row(schedule):
    q = schedule.q_schedule
    if q is not None:
        JobSchedule.objects.filter(pk=schedule.pk).update(q_schedule=None)
        q.delete()


@transaction.atomic
def set_protected(point: RestorePoint, protected: bool, *, note: str = "", user=None) -> RestorePoint:
    """Protect a restore point by hand (never pruned, never deleted) or lift the protection."""
    before = {"protected": point.protected, "protected_note": point.protected_note}
    point.protected = protected
    point.protected_note = note[:200] if protected else ""
    point.save(update_fields=["protected", "protected_note"])
    verb = "protected" if protected else "unprotected"
    record_event(AuditAction.UPDATE, target=point, actor=user, before=before,
                 after={"protected": point.protected, "protected_note": point.protected_note},
                 message=f"restore point {point.point_id} on {point.store} {verb}" + (f": {note}" if note else ""))
    return point


__all__ = ["delete_job", "delete_schedule", "job_saved", "schedule_saved", "set_protected"]
