"""Protection in a real browser: the VM list's columns and filters, selecting VMs and adding
them to a job, and the dashboard's protection chart, next runs and failed jobs."""
import pytest

from backups.models import BackupJob
from sesamweb.accounts.roles import Role
from tests.fixtures.users import make_user
from tests.sesamweb.test_dashboard import make_jobs

pytestmark = [pytest.mark.e2e]


def test_an_administrator_finds_unprotected_vms_and_adds_them_to_a_job(asgi_server, page, screenshot, tmp_path):
    make_jobs(tmp_path)
    make_user("alice-admin", Role.ADMINISTRATOR)
    BackupJob.objects.create(name="hand-picked", store=BackupJob.objects.first().store, selection="explicit")
    asgi_server.sign_in(page, "alice-admin")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Virtual machines").click()
    table = page.locator("[data-vm-table]")
    table.wait_for()
    assert "RPO missed" in table.locator('tr:has-text("db") [data-field="protection"]').inner_text()
    screenshot(page, "vm-list-protection")

    page.get_by_label("Protection").select_option("unprotected")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**protection=unprotected**")
    assert sorted(table.locator("tbody th").all_inner_texts()) == ["dr-1", "spare"]
    add = page.get_by_role("button", name="Add to job")
    assert add.is_disabled()                                  # nothing selected yet
    page.get_by_label("Select every VM on this page").check()
    assert page.locator("[data-selected-count]").inner_text() == "2 VMs selected"
    page.get_by_label("Job to add the selected VMs to").select_option(label="hand-picked")
    screenshot(page, "vm-list-bulk")
    add.click()
    page.get_by_text("2 VM(s) added to job hand-picked.").wait_for()
    assert sorted(BackupJob.objects.get(name="hand-picked").vms.values_list("name", flat=True)) == ["dr-1", "spare"]
    assert page.get_by_text("No virtual machines match").is_visible()   # none is unprotected any more


def test_the_dashboard_shows_protection_by_pool_next_runs_and_failed_jobs(asgi_server, page, screenshot, tmp_path):
    make_jobs(tmp_path)
    make_user("audrey", Role.AUDITOR)
    asgi_server.sign_in(page, "audrey")
    page.get_by_role("heading", name="Dashboard").wait_for()

    chart = page.locator("[data-protection-pools] .chart-svg")
    chart.wait_for()
    assert chart.get_attribute("aria-label") == "Virtual machines by protection, all pools"
    assert page.locator("[data-protection-pools] .chart-bar-danger title").text_content() == "At risk: 2"
    assert "nightly" in page.locator("[data-next-runs]").inner_text()
    assert "nightly" in page.locator("[data-failed-jobs]").inner_text()
    screenshot(page, "dashboard-protection")
    page.locator("[data-protection-pools] tr:has-text('lab')").get_by_role("link", name="2").click()
    assert sorted(page.locator("[data-vm-table] tbody th").all_inner_texts()) == ["app", "db"]


def test_the_vm_page_shows_its_protection(asgi_server, page, screenshot, tmp_path):
    make_jobs(tmp_path)
    make_user("audrey", Role.AUDITOR)
    asgi_server.sign_in(page, "audrey")
    page.goto(asgi_server.url + "/pools/vms/?q=db")
    page.locator("[data-vm-table]").get_by_role("link", name="db", exact=True).click()
    panel = page.locator("[data-protection]")
    panel.wait_for()
    assert "RPO missed" in panel.inner_text() and "24 h" in panel.inner_text() and "nightly" in panel.inner_text()
    screenshot(page, "vm-detail-protection")
