"""Scheduled store maintenance and replication policies in a real browser: an administrator
schedules a weekly verify on a data store page and adds a replication policy from the
navigation; both pages are screenshotted."""
import pytest

from backups.models import ReplicationPolicy, StoreMaintenanceSchedule
from backups.stores import create_store
from sesamweb.accounts.roles import Role
from tests.fixtures.users import make_user
from xenpools.connection import PoolConnection
from xenpools.registration import register_pool

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def lab(asgi_server, sim, tmp_path):
    make_user("alice-admin", Role.ADMINISTRATOR, first_name="Alice", last_name="Admin")
    probe = PoolConnection.probe(sim.url, "root", sim.password, fingerprint=None)
    pool = register_pool("Lab pool", sim.url, "root", sim.password, probe, sync=True)
    store = create_store(name="nas-01", path=str(tmp_path / "nas-01"), passphrase="correct horse battery staple")
    return pool, store


def test_an_administrator_schedules_a_verify_and_adds_a_replication_policy(asgi_server, lab, page, screenshot):
    pool, store = lab
    asgi_server.sign_in(page, "alice-admin")
    page.goto(asgi_server.url + store.get_absolute_url())
    schedules = page.locator("#maintenance-schedules")
    schedules.get_by_text("Add a schedule…").click()
    schedules.get_by_label("Task").select_option(label="Verify")
    schedules.get_by_label("Cron expression").fill("0 3 * * 0")
    schedules.get_by_label("Time zone").select_option("Europe/Berlin")
    schedules.get_by_label("Only points not verified for (days)").fill("30")
    page.evaluate("window.scrollTo(0, 0)")     # the sticky header stays on top in the full-page shot
    screenshot(page, "store-maintenance-schedule-form")
    schedules.get_by_role("button", name="Add schedule").click()
    page.locator("[data-maintenance-schedules]").get_by_text("At 03:00, only on Sunday").wait_for()
    assert StoreMaintenanceSchedule.objects.get().options == {"older_than_days": 30}
    page.locator("[data-maintenance-schedules]").get_by_text("CET").wait_for()     # next run in Berlin time
    page.evaluate("window.scrollTo(0, 0)")     # the sticky header stays on top in the full-page shot
    screenshot(page, "store-maintenance-schedules")

    page.get_by_role("link", name="Edit verify schedule").click()
    page.get_by_label("Cron expression").fill("0 4 * * 0")
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "store-maintenance-schedule-edit")
    page.get_by_role("button", name="Save").click()
    page.locator("[data-maintenance-schedules]").get_by_text("At 04:00, only on Sunday").wait_for()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Replication").click()
    page.get_by_text("No replication policies").wait_for()
    page.get_by_role("link", name="Add a policy").click()
    page.get_by_label("Name", exact=True).fill("dr-site")
    page.get_by_label("VMs").select_option(label="test-vm-1 (Lab pool)")
    page.get_by_label("Target pool").select_option(label="Lab pool")
    page.get_by_label("Replicas kept per VM").fill("2")
    page.evaluate("window.scrollTo(0, 0)")     # the sticky header stays on top in the full-page shot
    screenshot(page, "replication-policy-form")
    page.get_by_role("button", name="Add policy").click()
    page.locator('[data-policy="dr-site"]').get_by_text("No replica yet").wait_for()
    policy = ReplicationPolicy.objects.get()
    assert (policy.keep, policy.suffix) == (2, " (replica)")
    page.evaluate("window.scrollTo(0, 0)")     # the sticky header stays on top in the full-page shot
    screenshot(page, "replication-policies")
