"""Cron schedules in a time zone: next runs across DST, and django-q2's rows keep the
schedule's zone whoever saves them (django-q2 itself computes in the console's zone)."""
from datetime import datetime, timedelta, timezone as dt_timezone
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from django_q.scheduler import scheduler

from backups.jobs.schedules import (
    WATCHDOG_TASK, ScheduleError, ensure_watchdog, next_times, sync_maintenance, sync_schedule, validate,
)
from backups.models import BackupJob, DataStore, JobSchedule, StoreMaintenanceSchedule

UTC = dt_timezone.utc


@pytest.mark.parametrize("after, expected_utc", [
    (datetime(2026, 1, 15, 12, 0, tzinfo=UTC), datetime(2026, 1, 15, 21, 0, tzinfo=UTC)),    # CET, UTC+1
    (datetime(2026, 7, 15, 12, 0, tzinfo=UTC), datetime(2026, 7, 15, 20, 0, tzinfo=UTC)),    # CEST, UTC+2
])
def test_22_00_in_berlin_is_21_or_20_utc_depending_on_dst(after, expected_utc):
    (first,) = next_times("0 22 * * *", "Europe/Berlin", 1, after=after)
    assert first == expected_utc
    assert first.astimezone(ZoneInfo("Europe/Berlin")).hour == 22


def test_the_night_dst_ends_keeps_22_00_local():
    # 2026-10-25: Berlin goes from UTC+2 to UTC+1 at 03:00 local.
    times = next_times("0 22 * * *", "Europe/Berlin", 2, after=datetime(2026, 10, 24, 12, 0, tzinfo=UTC))
    assert times == [datetime(2026, 10, 24, 20, 0, tzinfo=UTC), datetime(2026, 10, 25, 21, 0, tzinfo=UTC)]


def test_bad_expressions_and_zones_are_refused_with_the_reason():
    with pytest.raises(ScheduleError, match="five fields"):
        validate("0 22 * *")
    with pytest.raises(ScheduleError, match="not a valid cron"):
        validate("0 25 * * *")
    with pytest.raises(ScheduleError, match="unknown time zone"):
        validate("0 22 * * *", "Mars/Olympus")


@pytest.fixture
def berlin_schedule(db, tmp_path):
    store = DataStore.objects.create(name="s", path=str(tmp_path))
    job = BackupJob.objects.create(name="nightly", store=store)
    return JobSchedule.objects.create(job=job, cron="0 22 * * *", timezone="Europe/Berlin")


def test_a_new_schedule_row_gets_its_next_run_in_the_schedules_zone(berlin_schedule):
    # django-q2's Schedule.save() computes a new CRON row's next run in the console's zone (UTC).
    sync_schedule(berlin_schedule, now=datetime(2026, 7, 15, 12, 0, tzinfo=UTC))
    row = Schedule.objects.get(pk=berlin_schedule.q_schedule_id)
    assert row.next_run == datetime(2026, 7, 15, 20, 0, tzinfo=UTC)
    assert (row.func, row.cron, row.intended_date_kwarg) == ("backups.jobs.tasks.run_job", "0 22 * * *", "slot")


@override_settings(TIME_ZONE="America/New_York")
def test_after_django_q2s_scheduler_fires_the_row_its_next_run_is_in_the_schedules_zone(transactional_db, berlin_schedule):
    sync_schedule(berlin_schedule, now=timezone.now() - timedelta(days=2))    # due (missed)
    scheduler()                          # django-q2's own pass, as the cluster runs it
    fired = [q.task for q in OrmQ.objects.all() if q.task["func"] == "backups.jobs.tasks.run_job"]
    assert len(fired) == 1 and fired[0]["kwargs"]["schedule_id"] == berlin_schedule.pk
    row = Schedule.objects.get(pk=berlin_schedule.q_schedule_id)
    assert row.next_run == next_times("0 22 * * *", "Europe/Berlin", 1)[0]
    assert row.next_run.astimezone(ZoneInfo("Europe/Berlin")).hour == 22


def test_a_store_on_its_own_cluster_gets_a_watchdog_there(db, tmp_path):
    ensure_watchdog()
    DataStore.objects.create(name="remote", path=str(tmp_path), cluster="site-b")
    rows = {r.cluster: r for r in Schedule.objects.filter(func=WATCHDOG_TASK)}
    assert set(rows) == {None, "site-b"}
    assert "local_only" in rows["site-b"].kwargs and rows["site-b"].minutes == 1
    DataStore.objects.create(name="remote-2", path=str(tmp_path / "2"), cluster="site-b")
    assert Schedule.objects.filter(func=WATCHDOG_TASK).count() == 2


def test_a_stores_maintenance_fires_on_the_cluster_that_serves_the_store(db, tmp_path):
    store = DataStore.objects.create(name="remote", path=str(tmp_path))
    verify = StoreMaintenanceSchedule.objects.create(store=store, action="verify", cron="0 3 * * 0")
    sync_maintenance(verify)
    assert Schedule.objects.get(pk=verify.q_schedule_id).cluster is None
    store.cluster = "site-b"
    store.save()
    assert Schedule.objects.get(pk=verify.q_schedule_id).cluster == "site-b"


def test_a_new_schedule_row_runs_at_the_time_in_the_schedules_zone(tmp_path, db):
    from backups.stores import create_store

    store = create_store(name="nas", path=str(tmp_path / "store"), passphrase="correct horse battery staple")
    job = BackupJob.objects.create(name="nightly", store=store)
    schedule = JobSchedule.objects.create(job=job, cron="15 23 * * *", timezone="America/New_York")
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)

    q = sync_schedule(schedule, now=now)

    q.refresh_from_db()
    # 23:15 in New York (EST, UTC-5), not 23:15 in the console's zone (UTC)
    assert q.next_run == datetime(2026, 12, 3, 4, 15, tzinfo=UTC)
