"""django-q2 entry points for jobs (thin: load the rows, call runs/retention, say what happened)."""
import logging
from datetime import datetime

from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import record_event
from xenpools.connection import PoolConnection, PoolError
from xenpools.models import Pool

from ..choices import RunStatus, Trigger
from ..devices.routing import check_device_servers
from ..engine.backup import cleanup_leftovers, fail_abandoned_backups, finish_run_if_done
from ..models import BackupJob, BackupRun, JobSchedule
from ..notifications import check_stores, rpo_missed
from .runs import JobRunError, dispatch, dispatch_waiting, finish_job_run, start_job_run
from .schedules import WATCHDOG_TASK, rearm  # noqa: F401 - WATCHDOG_TASK was defined here

log = logging.getLogger(__name__)


def run_job(job_id: int, schedule_id: int | None = None, slot: str | None = None, trigger: str = Trigger.SCHEDULE,
            user_id: int | None = None) -> str:
    """What a job's schedule (or Run now) calls: start a run of the job."""
    job = BackupJob.objects.select_related("store").filter(pk=job_id).first()
    if job is None:
        return f"job #{job_id} no longer exists"
    schedule = JobSchedule.objects.filter(pk=schedule_id, job=job).first() if schedule_id else None
    if schedule is not None:
        rearm(schedule)
    if trigger == Trigger.SCHEDULE and not job.enabled:
        return f"job {job.name} is disabled"
    user = None
    if user_id:
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.filter(pk=user_id).first()
    slot_time = datetime.fromisoformat(slot) if slot else None
    try:
        run = start_job_run(job, trigger=trigger, user=user, schedule=schedule, slot=slot_time)
    except JobRunError as exc:
        return f"job {job.name} did not run: {exc}"
    return f"job {job.name}: run #{run.pk} with {run.vm_backups.count()} VM(s)"


def job_watchdog(local_only: bool = False) -> str:
    """Every minute: backups whose worker died are failed (at once when it was a process on
    this host), their snapshots removed from the pool, and job runs with free slots or a
    closed window moved on. Nothing stays "running" forever.

    local_only: the watchdog of a store's own cluster (schedules.ensure_watchdog) only fails
    its host's dead workers; the default cluster's watchdog does the rest."""
    failed = fail_abandoned_backups()
    if local_only:
        return f"{len(failed)} abandoned backup(s) failed"
    cleaned = 0
    pool_ids = set()
    if failed:
        from ..models import VmBackup

        pool_ids = set(VmBackup.objects.filter(pk__in=failed).exclude(pool=None).values_list("pool_id", flat=True))
    for pool in Pool.objects.filter(pk__in=pool_ids):
        try:
            with PoolConnection.open(pool) as conn:
                cleaned += cleanup_leftovers(conn)
        except PoolError as exc:
            log.info("watchdog: cannot clean up pool %s yet: %s", pool, exc)
    moved = len(dispatch_waiting())     # VMs waiting for a stream slot (slots of dead workers expire)
    for run in BackupRun.objects.filter(job__isnull=False, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]):
        moved += len(dispatch(run.pk))
        finish_run_if_done(run.pk)
        run.refresh_from_db()
        if run.is_finished:
            finish_job_run(run)
    check_device_servers()  # device servers that went down; their queued VMs fail after the wait
    rpo_missed()            # VMs that just missed their RPO are reported (once per lapse)
    check_stores()          # data stores unreachable or nearly full are reported (once per crossing)
    return f"{len(failed)} abandoned backup(s) failed, {cleaned} leftover(s) removed, {moved} VM(s) dispatched"


def queue_job_run(job, user=None) -> str:
    """Run now: the run starts on a worker (the page follows it live). The request is audited
    here; the run itself when a worker starts it."""
    from django_q.tasks import async_task

    actor = user if user is not None and user.is_authenticated else None
    task_id = async_task(
        "backups.jobs.tasks.run_job", job.pk, trigger=Trigger.MANUAL, user_id=actor.pk if actor else None,
        task_name=f"run of job {job.name}", group=f"job-{job.pk}",
    )
    record_event(AuditAction.JOB_START, target=job, actor=actor,
                 message=f"job {job.name}: Run now requested (task {task_id})")
    return task_id

