"""Schedules run the console by themselves: a real django-q2 cluster (`manage.py qcluster`,
another process sharing the test database) fires the job's schedule row and its workers back
the VM up against the simulator.

Each case runs with the ORM broker (SQLite, or PostgreSQL in the PostgreSQL tier) and, in the
integration tier, with PostgreSQL and the Redis broker as production does. The cluster's
scheduler makes a pass as soon as it is up (tests/fixtures/cluster_settings.py), so a test
arranges its rows first, as if the console came back after being down.
"""
import os
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule

from backups.choices import RunStatus, Trigger
from backups.jobs.schedules import sync_schedule
from backups.models import BackupRun, JobSchedule
from backups.stores import open_repository

pytestmark = pytest.mark.slow

BROKERS = [
    pytest.param("orm", id="orm-broker"),
    pytest.param("redis", id="redis-broker", marks=pytest.mark.integration),
]


@pytest.fixture(params=BROKERS)
def broker(request, transactional_db):
    if request.param == "redis":
        if not os.environ.get("REDIS_URL") or connection.vendor != "postgresql":
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail("REDIS_URL and a PostgreSQL DATABASE_URL are required when CI=true")
            pytest.skip("needs PostgreSQL and REDIS_URL: run with make test-integration")
    elif os.environ.get("REDIS_URL"):
        pytest.skip("the ORM-broker case runs in the SQLite and PostgreSQL tiers")
    return request.param


def finished_runs(job):
    return list(BackupRun.objects.filter(job=job, status__in=RunStatus.finished()))


def test_a_due_cron_schedule_fires_and_the_clusters_worker_backs_the_vm_up(broker, qcluster, make_job, vm_named):
    vm = vm_named("test-vm-1")
    job = make_job(rule_name_pattern="test-vm-1")
    schedule = JobSchedule.objects.create(job=job, cron="* * * * *", timezone="UTC")
    sync_schedule(schedule, now=timezone.now() - timedelta(minutes=2))     # its minute has come
    schedule.refresh_from_db()
    slot = schedule.q_schedule.next_run
    assert slot < timezone.now()

    qcluster.start()
    (run,) = qcluster.wait_for(lambda: finished_runs(job), "the scheduled run to finish")

    assert (run.trigger, run.schedule_id, run.slot) == (Trigger.SCHEDULE, schedule.pk, slot)
    backup = run.vm_backups.get()
    assert (backup.vm_uuid, backup.status) == (vm.uuid, RunStatus.SUCCESS), backup.error
    host_pid = backup.lease_owner.rpartition(":")[2]
    assert host_pid.isdigit() and int(host_pid) != os.getpid()        # a worker of the cluster ran it
    assert [p.id for p in open_repository(job.store).list_backups(vm.uuid)] == [backup.restore_point.point_id]
    assert run.status == RunStatus.SUCCESS
    assert Schedule.objects.get(pk=schedule.q_schedule_id).next_run > timezone.now()


def test_missed_runs_after_downtime_run_once_and_say_how_many_were_missed(broker, qcluster, make_job):
    kolkata = ZoneInfo("Asia/Kolkata")         # +05:30: its hours start at half past in UTC
    job = make_job(rule_name_pattern="no-such-vm-*")
    schedule = JobSchedule.objects.create(job=job, cron="0 * * * *", timezone="Asia/Kolkata")
    sync_schedule(schedule, now=timezone.now() - timedelta(hours=3, minutes=20))   # the console was down
    schedule.refresh_from_db()
    first_missed = schedule.q_schedule.next_run
    assert first_missed.astimezone(kolkata).minute == 0

    # The console's own zone is another one, with whole-hour offsets: django-q2 computes its
    # next run there, and the job's zone must win.
    qcluster.start(TZ="America/New_York")
    (run,) = qcluster.wait_for(lambda: finished_runs(job), "the catch-up run to finish")

    assert BackupRun.objects.filter(job=job).count() == 1
    started = run.created_at
    missed = [first_missed + timedelta(hours=k) for k in range(6)
              if first_missed + timedelta(hours=k) <= started - timedelta(minutes=5)]
    assert len(missed) >= 3
    schedule.refresh_from_db()
    assert schedule.last_missed_count == len(missed)
    assert schedule.last_missed_at == first_missed
    assert f"{len(missed)} scheduled run(s) were missed since " in run.message
    assert run.trigger == Trigger.SCHEDULE and run.slot == first_missed

    next_run = Schedule.objects.get(pk=schedule.q_schedule_id).next_run
    assert timezone.now() < next_run <= timezone.now() + timedelta(hours=1)
    assert next_run.astimezone(kolkata).minute == 0, next_run       # on the hour in Kolkata, not New York
