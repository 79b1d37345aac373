"""Store maintenance that runs itself: verify, garbage collection and the catalog refresh on
their own cron schedules, fired by a real django-q2 cluster; the last result is kept on the
schedule row, and damaged points found by a scheduled verify are a dashboard alert."""
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from django_q.models import Schedule

from backups.choices import BackupMethod, Trigger, VerifyState
from backups.jobs.schedules import sync_maintenance
from backups.models import RestorePoint, StoreMaintenanceSchedule
from backups.services import request_backup, run_in_this_process
from backups.tasks import run_store_maintenance
from sesamweb.dashboard.summary import dashboard_summary
from tests.backups.jobs.test_cluster import broker  # noqa: F401 - the ORM / Redis broker cases

pytestmark = pytest.mark.slow


def back_up(vm, store):
    run = request_backup(vm=vm, store=store, method=BackupMethod.NORMAL, trigger=Trigger.CLI)
    return run_in_this_process(run).vm_backups.get().restore_point


def damage_a_chunk(store):
    from pathlib import Path

    chunk = max((p for p in (Path(store.path) / "chunks").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x40
    chunk.write_bytes(bytes(data))


def scheduled(store, action, cron="0 3 * * 0", due=True, **options):
    maintenance = StoreMaintenanceSchedule.objects.create(store=store, action=action, cron=cron,
                                                          timezone="Europe/Berlin", options=options)
    sync_maintenance(maintenance, now=timezone.now() - timedelta(days=8) if due else None)
    maintenance.refresh_from_db()
    return maintenance


def test_scheduled_verify_and_gc_run_on_the_cluster_and_damage_is_an_alert(broker, qcluster, vm_named, store):  # noqa: F811
    back_up(vm_named("test-vm-1"), store)
    damage_a_chunk(store)
    verify = scheduled(store, "verify")
    gc = scheduled(store, "gc")
    refresh = scheduled(store, "refresh")
    later = scheduled(store, "gc", cron="0 4 1 1 *", due=False)      # not due: must not run
    assert verify.q_schedule.next_run < timezone.now() and verify.q_schedule.func == "backups.tasks.run_store_maintenance"

    qcluster.start()
    done = qcluster.wait_for(
        lambda: StoreMaintenanceSchedule.objects.filter(last_finished_at__isnull=False).count() == 3 or None,
        "the three due maintenance tasks to finish")
    assert done

    verify.refresh_from_db()
    assert verify.last_ok is False and "1 damaged" in verify.last_result, verify.last_result
    assert verify.last_started_at <= verify.last_finished_at
    assert RestorePoint.objects.get().verify_state == VerifyState.DAMAGED
    gc.refresh_from_db()
    assert gc.last_ok is True and gc.last_result.startswith("removed "), gc.last_result
    refresh.refresh_from_db()
    assert refresh.last_ok is True and refresh.last_result.startswith("catalog refreshed"), refresh.last_result
    later.refresh_from_db()
    assert later.last_started_at is None
    for row in (verify, gc, refresh):
        next_run = Schedule.objects.get(pk=row.q_schedule_id).next_run
        assert next_run > timezone.now()
        local = next_run.astimezone(ZoneInfo("Europe/Berlin"))
        assert (local.hour, local.minute, local.weekday()) == (3, 0, 6)       # Sundays 03:00 in Berlin

    alerts = [a for a in dashboard_summary().alerts if "damaged restore point" in a.title]
    assert [a.title for a in alerts] == ["1 damaged restore point(s) on local"]
    assert f"store={store.pk}" in alerts[0].url and "verify_state=damaged" in alerts[0].url


def test_verify_of_points_not_verified_for_n_days_skips_the_recent_ones(vm_named, store):
    old = back_up(vm_named("test-vm-1"), store)
    recent = back_up(vm_named("test-vm-2"), store)
    never = back_up(vm_named("test-vm-3"), store)
    RestorePoint.objects.filter(pk=old.pk).update(verified_at=timezone.now() - timedelta(days=40), verify_state="ok")
    RestorePoint.objects.filter(pk=recent.pk).update(verified_at=timezone.now() - timedelta(days=2), verify_state="ok")
    maintenance = scheduled(store, "verify", older_than_days=30)

    result = run_store_maintenance(maintenance.pk)

    assert result.startswith("verified 2 restore point(s) not verified for 30 day(s)"), result
    verified = {p.pk: p.verified_at for p in RestorePoint.objects.all()}
    assert verified[old.pk] > timezone.now() - timedelta(minutes=5)
    assert verified[never.pk] > timezone.now() - timedelta(minutes=5)
    assert verified[recent.pk] < timezone.now() - timedelta(days=1)
    maintenance.refresh_from_db()
    assert maintenance.last_ok is True and maintenance.last_result == result


def test_a_failing_maintenance_task_records_the_failure_and_warns_on_the_dashboard(store):
    maintenance = scheduled(store, "gc")
    store.path = store.path + "-gone"
    store.save()

    with pytest.raises(Exception):
        run_store_maintenance(maintenance.pk)

    maintenance.refresh_from_db()
    assert maintenance.last_ok is False and maintenance.last_result.startswith("failed: ")
    titles = [a.title for a in dashboard_summary().alerts]
    assert "Scheduled garbage collection of local failed" in titles


def test_a_device_servers_cluster_runs_its_stores_maintenance_and_its_own_watchdog_only(
        broker, qcluster, store):  # noqa: F811
    from backups.jobs.schedules import WATCHDOG_TASK, ensure_watchdog, sync_schedule
    from backups.models import BackupJob, BackupRun, JobSchedule

    store.cluster = "site-b"              # served by a remote device server's cluster
    store.save()
    gc = scheduled(store, "gc")
    job = BackupJob.objects.create(name="nightly", store=store, rule_name_pattern="none-*")
    job_schedule = JobSchedule.objects.create(job=job, cron="* * * * *")
    sync_schedule(job_schedule, now=timezone.now() - timedelta(minutes=2))        # due, for the default cluster
    job_schedule.refresh_from_db()
    job_slot = job_schedule.q_schedule.next_run
    default_watchdog = ensure_watchdog()
    Schedule.objects.filter(func=WATCHDOG_TASK).update(next_run=timezone.now() - timedelta(seconds=1))

    qcluster.start(Q_CLUSTER_NAME="site-b")   # same site name (SESAM_CLUSTER), another cluster name
    qcluster.wait_for(lambda: StoreMaintenanceSchedule.objects.filter(pk=gc.pk, last_ok=True).exists(),
                      "the store's gc to run on its cluster")
    site_watchdog = Schedule.objects.get(func=WATCHDOG_TASK, cluster="site-b")
    qcluster.wait_for(lambda: Schedule.objects.get(pk=site_watchdog.pk).next_run > timezone.now(),
                      "the device server's own watchdog to fire")
    # The same scheduler pass left the default cluster's rows alone.
    assert Schedule.objects.get(pk=job_schedule.q_schedule_id).next_run == job_slot
    assert Schedule.objects.get(pk=default_watchdog.pk).next_run < timezone.now()
    assert not BackupRun.objects.exists()
