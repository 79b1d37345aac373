"""A job schedule's django-q2 row fires at the schedule's time in the schedule's own zone."""
from datetime import datetime, timezone as dt_timezone

from backups.jobs.schedules import sync_schedule
from backups.models import BackupJob, JobSchedule
from backups.stores import create_store


def test_a_new_schedule_row_runs_at_the_time_in_the_schedules_zone(tmp_path, db):
    store = create_store(name="nas", path=str(tmp_path / "store"), passphrase="correct horse battery staple")
    job = BackupJob.objects.create(name="nightly", store=store)
    schedule = JobSchedule.objects.create(job=job, cron="15 23 * * *", timezone="America/New_York")
    now = datetime(2026, 12, 2, 12, 0, tzinfo=dt_timezone.utc)

    q = sync_schedule(schedule, now=now)

    q.refresh_from_db()
    # 23:15 in New York (EST, UTC-5), not 23:15 in the console's zone (UTC)
    assert q.next_run == datetime(2026, 12, 3, 4, 15, tzinfo=dt_timezone.utc)
