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
    assert admin_keys == ["dashboard", "pools", "vms", "backups", "jobs", "restore", "stores", "audit", "users"]
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
                                "url": summary.running[0]["url"]}]
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
