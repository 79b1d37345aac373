import pytest
from django.urls import reverse

from sesamweb.dashboard.summary import dashboard_summary

pytestmark = pytest.mark.django_db


def make_inventory():
    from xenpools.models import VM, Pool

    healthy = Pool.objects.create(name="prod", address="10.0.0.1", health="healthy")
    broken = Pool.objects.create(name="lab", address="10.0.0.2", health="unreachable", last_error="connection refused")
    VM.objects.create(pool=healthy, uuid="u1", ref="r1", name="web", power_state="Running")
    VM.objects.create(pool=healthy, uuid="u2", ref="r2", name="db", power_state="Halted")
    VM.objects.create(pool=broken, uuid="u3", ref="r3", name="snap", power_state="Halted", is_snapshot=True)
    return healthy, broken


def test_the_summary_counts_pools_vms_and_raises_alerts_for_unhealthy_pools():
    make_inventory()
    summary = dashboard_summary()
    assert (summary.pools_total, summary.pools_healthy, summary.pools_unhealthy) == (2, 1, 1)
    assert (summary.vms_total, summary.vms_running, summary.vms_halted) == (2, 1, 1)  # snapshots are not VMs
    (alert,) = summary.alerts
    assert alert.title.startswith("Pool lab") and alert.detail == "connection refused"


def test_every_role_sees_the_dashboard_with_honest_empty_states(operator_client, auditor_client):
    for client in (operator_client, auditor_client):
        response = client.get(reverse("dashboard"))
        assert response.status_code == 200
        assert b"No backups yet" in response.content
        assert b"No pools registered yet." in response.content


def test_the_summary_endpoint_feeds_the_live_refresh(operator_client):
    make_inventory()
    data = operator_client.get(reverse("dashboard_summary")).json()
    assert data["pools_total"] == 2 and data["vms_running"] == 1
    assert "Pool lab" in data["alerts_html"]


def test_the_navigation_shows_users_to_administrators_only(admin_client, operator_client):
    admin_keys = [item["key"] for item in admin_client.get(reverse("dashboard")).context["nav_sections"]]
    assert admin_keys == ["dashboard", "pools", "vms", "backups", "jobs", "restore", "replication", "stores", "notifications", "audit", "users"]
    operator_page = operator_client.get(reverse("dashboard"))
    assert not [item for item in operator_page.context["nav_sections"] if item["key"] == "users"]
    assert not [item for item in operator_page.context["nav_sections"] if item["key"] == "audit"]
    active = [item["key"] for item in operator_client.get("/pools/vms/").context["nav_sections"] if item["active"]]
    assert active == ["vms"]


def make_backups(healthy_pool):
    from django.utils import timezone

    from backups.models import BackupRun, DataStore, RestorePoint, VmBackup
    from xenpools.models import VM

    store = DataStore.objects.create(name="local", path="/tmp/none")
    web, db = VM.objects.get(uuid="u1"), VM.objects.get(uuid="u2")
    run = BackupRun.objects.create(status="running")
    VmBackup.objects.create(run=run, vm=web, vm_uuid="u1", vm_name="web", store=store, method="normal",
                            status="running", phase="streaming", total_bytes=200, bytes_processed=50)
    failed_run = BackupRun.objects.create(status="failed")
    VmBackup.objects.create(run=failed_run, vm=db, vm_uuid="u2", vm_name="db", store=store, method="normal",
                            status="failed", error="SR_BACKEND_FAILURE_44: no space")
    RestorePoint.objects.create(store=store, point_id="u1/1", vm_uuid="u1", vm_name="web", taken_at=timezone.now(),
                                method="normal", kind="full", virtual_size=8 << 30, bytes_stored=1 << 30)
    return run


def test_the_summary_reads_backups_running_now_protection_and_failures():
    healthy, _ = make_inventory()
    run = make_backups(healthy)
    summary = dashboard_summary()
    assert summary.backups_available and summary.runs_active == 1
    assert summary.running == [{"run": run.pk, "vm_name": "web", "phase": "Streaming disks", "percent": 25,
                                "url": reverse("backups:vm_backup_detail", args=[run.vm_backups.get().pk])}]
    assert summary.running_runs == [run.pk]
    assert summary.vms_protected == 1  # web has a restore point, db does not
    assert summary.runs_24h == {"running": 1, "failed": 1} and summary.runs_24h_total == 2
    assert sum(hour["value"] for hour in summary.runs_24h_hourly) == 2
    assert (summary.restore_points, summary.space_saving) == (1, 8.0)
    assert any(alert.title == "Backup of db failed" and "no space" in alert.detail for alert in summary.alerts)


def test_the_dashboard_page_shows_progress_and_the_chart(operator_client):
    healthy, _ = make_inventory()
    make_backups(healthy)
    response = operator_client.get(reverse("dashboard"))
    content = response.content.decode()
    assert 'aria-valuenow="25"' in content and "Streaming disks" in content
    assert 'id="runs-hourly"' in content
    assert "8.0 ×" in content


# --- protection, schedules and failed jobs (backups/jobs) -----------------------------------

def make_jobs(tmp_path):
    """lab: web met, db missed, app never (all in "nightly"), spare unprotected; dr: one
    unprotected VM and a deleted one (never counted)."""
    from datetime import timedelta

    from django.utils import timezone

    from backups.choices import RunStatus
    from backups.jobs.schedules import sync_schedule
    from backups.models import BackupJob, BackupRun, JobSchedule
    from backups.stores import create_store
    from tests.backups.jobs.inventory import HOURS, make_point, make_pool, make_vm

    now = timezone.now()
    store = create_store(name="nas", path=str(tmp_path / "nas"), encrypted=False)
    lab, dr = make_pool("lab"), make_pool("dr")
    web, db, app = make_vm(lab, "web"), make_vm(lab, "db"), make_vm(lab, "app")
    make_vm(lab, "spare"), make_vm(dr, "dr-1")
    gone = make_vm(dr, "gone", removed_at=now)
    make_point(store, web, 3 * HOURS, now=now)
    make_point(store, db, 30 * HOURS, now=now)
    make_point(store, gone, 3 * HOURS, now=now)
    nightly = BackupJob.objects.create(name="nightly", store=store, selection="explicit", rpo_hours=24)
    nightly.vms.add(web, db, app)
    weekly = BackupJob.objects.create(name="weekly", store=store, rule_tags=["none"])
    paused = BackupJob.objects.create(name="paused", store=store, rule_tags=["none"], enabled=False)
    for job, cron in ((nightly, "0 22 * * *"), (weekly, "0 3 * * 6"), (paused, "0 1 * * *")):
        sync_schedule(JobSchedule.objects.create(job=job, cron=cron))
    BackupRun.objects.create(job=nightly, status=RunStatus.SUCCESS, created_at=now - 48 * HOURS)
    BackupRun.objects.create(job=nightly, status=RunStatus.FAILED, created_at=now - 24 * HOURS)
    BackupRun.objects.create(job=weekly, status=RunStatus.FAILED, created_at=now - 7 * 24 * HOURS)
    BackupRun.objects.create(job=weekly, status=RunStatus.SUCCESS, created_at=now - timedelta(minutes=5))
    return lab, dr, nightly


def test_the_summary_counts_protection_per_pool_next_runs_and_failed_jobs(tmp_path):
    lab, dr, nightly = make_jobs(tmp_path)

    summary = dashboard_summary()

    rows = {row["pool"]: (row["protected"], row["at_risk"], row["unprotected"]) for row in summary.protection_pools}
    assert rows == {"dr": (0, 0, 1), "lab": (1, 2, 1)}
    assert summary.protection_chart == [{"label": "Protected", "value": 1, "tone": "ok"},
                                        {"label": "At risk", "value": 2, "tone": "danger"},
                                        {"label": "Unprotected", "value": 2, "tone": "muted"}]
    assert [run["job"] for run in summary.next_runs] == ["nightly", "weekly"]     # soonest first; "paused" is off
    assert [job["job"] for job in summary.failed_jobs] == ["nightly"]            # weekly's last run succeeded
    assert summary.failed_jobs[0]["run_url"] == nightly.runs.get(status="failed").get_absolute_url()
    lab_row = next(row for row in summary.protection_pools if row["pool"] == "lab")
    assert lab_row["at_risk_url"] == f"/pools/vms/?pool={lab.pk}&protection=at_risk"


def test_the_dashboard_shows_the_protection_chart_next_runs_and_failed_jobs(tmp_path, auditor_client,
                                                                             django_assert_max_num_queries):
    lab, _, _ = make_jobs(tmp_path)
    with django_assert_max_num_queries(40):
        page = auditor_client.get(reverse("dashboard")).content.decode()

    assert 'id="protection-chart"' in page and "Protection by pool" in page
    next_runs = page.split("data-next-runs")[1].split("</ul>")[0]
    assert next_runs.index("nightly") < next_runs.index("weekly") and "paused" not in next_runs
    assert "nightly" in page.split("data-failed-jobs")[1].split("</ul>")[0]
    # The at-risk link lists exactly the pool's missed and never-backed-up VMs.
    at_risk = auditor_client.get(f"/pools/vms/?pool={lab.pk}&protection=at_risk")
    assert sorted(vm.name for vm in at_risk.context["vms"]) == ["app", "db"]


def test_the_protection_card_is_empty_without_vms(auditor_client):
    page = auditor_client.get(reverse("dashboard")).content.decode()
    assert "No virtual machines yet" in page and "No backup jobs yet" in page


def test_a_failing_notification_channel_is_an_alert():
    from sesamweb.notify.models import Channel

    Channel.objects.create(name="ops mail", kind="email", config={}, consecutive_failures=1,
                           last_error_permanent=True, last_error="535 authentication failed")
    Channel.objects.create(name="quiet", kind="email", config={}, consecutive_failures=0)

    alerts = [(a.level, a.title, a.detail) for a in dashboard_summary().alerts]

    assert ("danger", "Notification channel ops mail is failing", "535 authentication failed") in alerts
    assert not any("quiet" in title for _level, title, _detail in alerts)
