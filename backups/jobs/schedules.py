"""Cron expressions in a time zone, and the django-q2 Schedule rows that fire them.

django-q2 evaluates a CRON schedule in the console's own time zone and, with catch_up off,
fires a schedule whose time passed once, then computes the next time from now: missed runs
run once. A job's (or a data store's maintenance) schedule has a time zone of its own, and
django-q2 computes next_run in the console's zone both when the row is created and when its
scheduler saves the row after firing. So next_run is set from the schedule's own zone after
create (sync_schedule), and a pre_save hook on Schedule (keep_own_zone, connected in
backups/apps.py) corrects what the scheduler computed, in whichever process saves the row
and whatever the broker (the worker that runs the task may even finish before the
scheduler's save). rearm does the same from the task, for rows saved by older code.

croniter (kept up, and what django-q2 itself uses for cron) computes times;
cron-descriptor turns an expression into words for the forms and pages.
"""
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cron_descriptor import Options, get_description
from croniter import croniter
from django.utils import timezone
from django_q.models import Schedule
from ..devices.routing import schedule_cluster_for_store

RUN_JOB_TASK = "backups.jobs.tasks.run_job"
WATCHDOG_TASK = "backups.jobs.tasks.job_watchdog"
MAINTENANCE_TASK = "backups.tasks.run_store_maintenance"
WEEKDAY_CRON = ["1", "2", "3", "4", "5", "6", "0"]       # Monday=0 here, Sunday=0 in cron


class ScheduleError(ValueError):
    """An expression or time zone that cannot be used; the message says why."""


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {name!r}; use a name such as UTC or Europe/Berlin") from None


def time_zone_names():
    return sorted(available_timezones())


def validate(cron: str, tz: str = "UTC") -> str:
    cron = " ".join((cron or "").split())
    if len(cron.split()) != 5:
        raise ScheduleError("a cron expression has five fields: minute hour day-of-month month day-of-week")
    if not croniter.is_valid(cron):
        raise ScheduleError(f"{cron!r} is not a valid cron expression")
    zone(tz)
    return cron


def describe(cron: str) -> str:
    try:
        options = Options()
        options.use_24hour_time_format = True
        return get_description(cron, options)
    except Exception:  # noqa: BLE001 - a description is only a help text
        return cron


def next_times(cron: str, tz: str, count: int = 5, after: datetime | None = None) -> list[datetime]:
    """The next `count` times (aware, in the schedule's zone) after `after` (default: now)."""
    start = (after or timezone.now()).astimezone(zone(tz))
    times = croniter(cron, start)
    return [times.get_next(datetime) for _ in range(count)]


def times_between(cron: str, tz: str, start: datetime, end: datetime, limit: int = 10000) -> list[datetime]:
    """Slot times in (start, end]: the runs missed while nothing fired."""
    times = croniter(cron, start.astimezone(zone(tz)))
    found = []
    while len(found) < limit:
        slot = times.get_next(datetime)
        if slot > end:
            break
        found.append(slot)
    return found


def longest_gap(cron: str, tz: str) -> timedelta | None:
    """The longest time between two consecutive runs over the next eight days."""
    # Pages read every job's RPO (protection status of each VM): the gaps are computed once
    # per expression and hour, not 200 cron steps per job per page.
    return _longest_gap_from(cron, tz, timezone.now().replace(minute=0, second=0, microsecond=0))


def rpo_of(rpo_hours, schedules) -> timedelta | None:
    """A job's RPO: `rpo_hours` when set, else the longest gap between two runs of its
    enabled schedules [(cron, tz)] plus an hour of grace (a nightly job: 25 hours)."""
    if rpo_hours:
        return timedelta(hours=rpo_hours)
    gaps = [gap for gap in (longest_gap(cron, tz) for cron, tz in schedules) if gap is not None]
    return max(gaps) + timedelta(hours=1) if gaps else None


@lru_cache(maxsize=1024)
def _longest_gap_from(cron: str, tz: str, start: datetime) -> timedelta | None:
    try:
        times = next_times(cron, tz, count=200, after=start)
    except (ScheduleError, ValueError):
        return None
    horizon = times[0] + timedelta(days=8)
    times = [t for t in times if t <= horizon] or times[:2]
    if len(times) < 2:
        return None
    return max(b - a for a, b in zip(times, times[1:]))


# -- the simple forms an administrator picks, and the cron they produce -----------------------
def daily_at(hour: int, minute: int = 0) -> str:
    return f"{minute} {hour} * * *"


def weekly_on(weekdays, hour: int, minute: int = 0) -> str:
    days = ",".join(WEEKDAY_CRON[int(d)] for d in sorted(set(weekdays)))
    if not days:
        raise ScheduleError("choose at least one weekday")
    return f"{minute} {hour} * * {days}"


def every_hours(hours: int, minute: int = 0) -> str:
    if not 1 <= hours <= 23:
        raise ScheduleError("every N hours needs N between 1 and 23")
    return f"{minute} */{hours} * * *" if hours > 1 else f"{minute} * * * *"


# -- django-q2 rows -------------------------------------------------------------------------
def sync_schedule(job_schedule, now: datetime | None = None):
    """Create, update or remove the django-q2 Schedule row behind a job schedule; its next
    run is computed in the schedule's own time zone."""
    job = job_schedule.job
    if not (job_schedule.enabled and job.enabled):
        return _remove_row(job_schedule)
    next_run = next_times(job_schedule.cron, job_schedule.timezone, 1, after=now)[0]
    fields = dict(
        name=f"job {job.pk} schedule {job_schedule.pk}", func=RUN_JOB_TASK,
        args=repr((job.pk,)), kwargs=repr({"schedule_id": job_schedule.pk}),
        schedule_type=Schedule.CRON, cron=job_schedule.cron, repeats=-1,
        next_run=next_run, intended_date_kwarg="slot",
    )
    return _save_row(job_schedule, fields)


def sync_maintenance(maintenance, now: datetime | None = None):
    """The same for a data store's maintenance schedule; the row fires on the store's cluster
    (a remote device server holds its own stores' keys)."""
    if not maintenance.enabled:
        return _remove_row(maintenance)
    store = maintenance.store
    fields = dict(
        name=f"store {store.pk} {maintenance.action} {maintenance.pk}", func=MAINTENANCE_TASK,
        args=repr((maintenance.pk,)), kwargs="", cluster=schedule_cluster_for_store(store),
        schedule_type=Schedule.CRON, cron=maintenance.cron, repeats=-1,
        next_run=next_times(maintenance.cron, maintenance.timezone, 1, after=now)[0],
    )
    return _save_row(maintenance, fields)


def _remove_row(owner):
    q = owner.q_schedule
    if q is not None:
        owner.q_schedule = None
        owner.save(update_fields=["q_schedule"])
        q.delete()
    return None


def _save_row(owner, fields):
    """Create or update the Schedule row of a zoned schedule (job or store maintenance)."""
    q = owner.q_schedule
    if q is None:
        q = Schedule.objects.create(**fields)
        # Schedule.save() computed next_run in the console's zone on create: set ours.
        Schedule.objects.filter(pk=q.pk).update(next_run=fields["next_run"])
        q.next_run = fields["next_run"]
        owner.q_schedule = q
        owner.save(update_fields=["q_schedule"])
    else:
        Schedule.objects.filter(pk=q.pk).update(**fields)
    return q


def zoned_owner(q_schedule_id):
    """The job schedule or store maintenance schedule behind a Schedule row, or None."""
    from django.apps import apps

    for model in (apps.get_model("backups", "JobSchedule"), apps.get_model("backups", "StoreMaintenanceSchedule")):
        owner = model.objects.filter(q_schedule_id=q_schedule_id).only("cron", "timezone").first()
        if owner is not None:
            return owner
    return None


def keep_own_zone(sender, instance, **kwargs):
    """pre_save of django-q2's Schedule: a row behind a zoned schedule gets its next run in
    that zone (django-q2's scheduler computed it in the console's zone)."""
    if instance.pk is None or instance.schedule_type != Schedule.CRON or not instance.cron:
        return
    owner = zoned_owner(instance.pk)
    if owner is not None and owner.cron == instance.cron:
        instance.next_run = next_times(owner.cron, owner.timezone, 1)[0]


def rearm(job_schedule, now: datetime | None = None):
    """After a firing: the next run from now in the schedule's zone (django-q2 computed it in
    the console's zone)."""
    if job_schedule.q_schedule_id:
        next_run = next_times(job_schedule.cron, job_schedule.timezone, 1, after=now)[0]
        Schedule.objects.filter(pk=job_schedule.q_schedule_id).update(next_run=next_run)


# -- the watchdog ----------------------------------------------------------------------------
def ensure_watchdog(cluster: str | None = None):
    """The every-minute watchdog row of a cluster. The default cluster's (migration 0004) does
    everything; a store's own cluster (a remote device server) gets one too, because only a
    watchdog on the workers' host knows at once that a worker process is gone."""
    name = "sesamweb job watchdog" + (f" on {cluster}" if cluster else "")
    row, _ = Schedule.objects.get_or_create(
        func=WATCHDOG_TASK, cluster=cluster or None,
        defaults=dict(name=name, schedule_type=Schedule.MINUTES, minutes=1, repeats=-1, next_run=timezone.now(),
                      kwargs=repr({"local_only": True}) if cluster else ""),
    )
    return row


def follow_store_cluster(sender, instance, raw=False, **kwargs):
    """post_save of DataStore: a store served by a named cluster gets that cluster's watchdog,
    and its maintenance rows fire on the cluster it is served by now."""
    if raw:
        return
    cluster = schedule_cluster_for_store(instance)
    if cluster:
        ensure_watchdog(cluster)
    rows = instance.maintenance_schedules.exclude(q_schedule=None).values("q_schedule_id")
    Schedule.objects.filter(pk__in=rows).exclude(cluster=cluster).update(cluster=cluster)
