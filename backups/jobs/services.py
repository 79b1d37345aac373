"""Changes to jobs, their schedules and restore point protection, each audited; the pages call
these (thin views), and the schedules' django-q2 rows are kept in step here."""
from django.db import transaction

from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import model_snapshot, record_event

from .schedules import sync_schedule
from .tasks import queue_job_run


def _sync_all(job):
    for schedule in job.schedules.all():
        sync_schedule(schedule)


@transaction.atomic
def save_job(form, user=None):
    """Create or update a job from a valid BackupJobForm (or RetentionForm)."""
    job = form.instance
    before = model_snapshot(type(job).objects.get(pk=job.pk)) if job.pk else None
    job = form.save()
    _sync_all(job)      # enabled may have changed: schedules follow
    record_event(AuditAction.UPDATE if before else AuditAction.CREATE, target=job, actor=user,
                 before=before, after=model_snapshot(job),
                 message=f"backup job {job.name} {'updated' if before else 'created'}")
    return job


@transaction.atomic
def delete_job(job, user=None):
    before = model_snapshot(job)
    for schedule in job.schedules.select_related("q_schedule"):
        if schedule.q_schedule is not None:
            schedule.q_schedule.delete()
    record_event(AuditAction.DELETE, target=job, actor=user, before=before, message=f"backup job {job.name} deleted")
    job.delete()


@transaction.atomic
def set_enabled(job, enabled, user=None):
    if job.enabled == enabled:
        return job
    job.enabled = enabled
    job.save(update_fields=["enabled", "updated_at"])
    _sync_all(job)
    record_event(AuditAction.UPDATE, target=job, actor=user, before={"enabled": not enabled},
                 after={"enabled": enabled}, message=f"backup job {job.name} {'enabled' if enabled else 'disabled'}")
    return job


@transaction.atomic
def save_schedule(form, job, user=None):
    """Create or update a schedule from a valid ScheduleForm; its django-q2 row follows."""
    schedule = form.instance
    before = model_snapshot(type(schedule).objects.get(pk=schedule.pk)) if schedule.pk else None
    schedule.job = job
    schedule = form.save()
    sync_schedule(schedule)
    record_event(AuditAction.UPDATE if before else AuditAction.CREATE, target=schedule, actor=user,
                 before=before, after=model_snapshot(schedule),
                 message=f"backup job {job.name}: schedule {schedule} {'updated' if before else 'added'}")
    return schedule


@transaction.atomic
def delete_schedule(schedule, user=None):
    before = model_snapshot(schedule)
    record_event(AuditAction.DELETE, target=schedule, actor=user, before=before,
                 message=f"backup job {schedule.job.name}: schedule {schedule} removed")
    if schedule.q_schedule is not None:
        schedule.q_schedule.delete()
    schedule.delete()


def run_now(job, user=None):
    """Queue a run of the job on the workers (the run itself is audited when it starts)."""
    task_id = queue_job_run(job, user=user)
    record_event(AuditAction.JOB_START, target=job, actor=user, message=f"backup job {job.name}: run now requested")
    return task_id


@transaction.atomic
def set_protected(point, protected, note="", user=None):
    """Protect a restore point (never pruned, never deleted) or lift the protection."""
    before = {"protected": point.protected, "protected_note": point.protected_note}
    point.protected = protected
    point.protected_note = note[:200] if protected else ""
    point.save(update_fields=["protected", "protected_note"])
    what = "protected" + (f" ({note})" if protected and note else "") if protected else "unprotected"
    record_event(AuditAction.UPDATE, target=point, actor=user, before=before,
                 after={"protected": point.protected, "protected_note": point.protected_note},
                 message=f"restore point {point.point_id} of {point.vm_name} {what}")
    return point
