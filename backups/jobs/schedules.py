"""Cron expressions in a time zone, and the django-q2 Schedule rows that fire them.

django-q2 evaluates a CRON schedule in the console's own time zone and, with catch_up off,
fires a schedule whose time passed once, then computes the next time from now: missed runs
run once. A job's schedule has a time zone of its own, so after each firing (and whenever
the schedule is saved) the row's next_run is set from the job's zone here (DST-correct).

croniter (kept up, and what django-q2 itself uses for cron) computes times;
cron-descriptor turns an expression into words for the forms and pages.
"""
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cron_descriptor import Options, get_description
from croniter import croniter
from django.utils import timezone
from django_q.models import Schedule

RUN_JOB_TASK = "backups.jobs.tasks.run_job"
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
    try:
        times = next_times(cron, tz, count=200)
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
    active = job_schedule.enabled and job.enabled
    q = job_schedule.q_schedule
    if not active:
        if q is not None:
            job_schedule.q_schedule = None
            job_schedule.save(update_fields=["q_schedule"])
            q.delete()
        return None
    next_run = next_times(job_schedule.cron, job_schedule.timezone, 1, after=now)[0]
    fields = dict(
        name=f"job {job.pk} schedule {job_schedule.pk}", func=RUN_JOB_TASK,
        args=repr((job.pk,)), kwargs=repr({"schedule_id": job_schedule.pk}),
        schedule_type=Schedule.CRON, cron=job_schedule.cron, repeats=-1,
        next_run=next_run, intended_date_kwarg="slot",
    )
    if q is None:
        q = Schedule.objects.create(**fields)
        # Schedule.save() recomputes a new CRON row's next_run in the console's zone; ours is
        # in the schedule's zone, so it is written again past save().
        Schedule.objects.filter(pk=q.pk).update(next_run=next_run)
        q.next_run = next_run
        job_schedule.q_schedule = q
        job_schedule.save(update_fields=["q_schedule"])
    else:
        Schedule.objects.filter(pk=q.pk).update(**fields)
    return q


def rearm(job_schedule, now: datetime | None = None):
    """After a firing: the next run from now in the schedule's zone (django-q2 computed it in
    the console's zone)."""
    if job_schedule.q_schedule_id:
        next_run = next_times(job_schedule.cron, job_schedule.timezone, 1, after=now)[0]
        Schedule.objects.filter(pk=job_schedule.q_schedule_id).update(next_run=next_run)
