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
    assert admin_keys == ["dashboard", "pools", "vms", "backups", "restore", "stores", "audit", "users"]
    operator_page = operator_client.get(reverse("dashboard"))
    assert not [item for item in operator_page.context["nav_sections"] if item["key"] == "users"]
    assert not [item for item in operator_page.context["nav_sections"] if item["key"] == "audit"]
    active = [item["key"] for item in operator_client.get("/pools/vms/").context["nav_sections"] if item["active"]]
    assert active == ["vms"]
