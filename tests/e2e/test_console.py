"""The console in a real browser: sign in, dashboard, user management, audit log."""
import pytest

from sesamweb.accounts.roles import Role, user_role
from sesamweb.audit.choices import AuditAction
from sesamweb.audit.models import AuditEvent
from tests.fixtures.users import make_user

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def admin(asgi_server):
    return make_user("alice-admin", Role.ADMINISTRATOR, first_name="Alice", last_name="Admin")


def test_an_administrator_signs_in_and_sees_the_dashboard(asgi_server, admin, page, screenshot):
    page.goto(asgi_server.url + "/")
    assert "/sign-in/" in page.url
    screenshot(page, "sign-in")
    asgi_server.sign_in(page, "alice-admin")
    page.get_by_role("heading", name="Dashboard").wait_for()
    assert page.get_by_role("navigation", name="Main").get_by_role("link", name="Users").is_visible()
    assert page.locator(".badge-role").inner_text() == "Administrator"
    # The live indicator connects over the websocket.
    page.wait_for_selector('[data-live-state="live"]', timeout=15_000)
    screenshot(page, "dashboard")
    assert AuditEvent.objects.filter(action=AuditAction.LOGIN, actor_username="alice-admin").exists()


def test_a_wrong_password_shows_a_clear_message(asgi_server, admin, page):
    asgi_server.sign_in(page, "alice-admin", "not-the-password")
    assert page.get_by_text("Please enter a correct username and password").is_visible()


def test_an_administrator_creates_an_operator_through_the_users_page(asgi_server, admin, page, screenshot):
    asgi_server.sign_in(page, "alice-admin")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    page.get_by_role("link", name="Add user").click()
    page.get_by_label("Username").fill("olga")
    page.get_by_label("First name").fill("Olga")
    page.get_by_label("Role").select_option("operator")
    page.get_by_label("Initial password").fill("a-long-enough-password-7")
    screenshot(page, "user-create")
    page.get_by_role("button", name="Create user").click()
    page.get_by_text("User olga created as operator.").wait_for()
    screenshot(page, "user-list")
    page.get_by_role("link", name="olga").click()
    page.get_by_role("heading", name="Set a new password").wait_for()
    screenshot(page, "user-edit")
    from django.contrib.auth import get_user_model
    assert user_role(get_user_model().objects.get(username="olga")) == Role.OPERATOR


def test_an_auditor_reviews_and_verifies_the_audit_log(asgi_server, page, screenshot):
    make_user("audrey", Role.AUDITOR)
    asgi_server.sign_in(page, "audrey")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
    page.get_by_role("button", name="Verify chain").click()
    assert "Audit chain intact" in page.locator("[data-chain-report]").inner_text()
    screenshot(page, "audit-log")
    assert not page.get_by_role("navigation", name="Main").get_by_role("link", name="Users").count()


def test_the_dashboard_updates_live_when_another_process_publishes(asgi_server, admin, page, screenshot):
    """The test process (not the web server) changes data and publishes, as a worker would:
    the event crosses processes through the embedded path and the figures refresh."""
    import time

    from django.apps import apps

    from sesamweb.live.publish import publish

    asgi_server.sign_in(page, "alice-admin")
    page.wait_for_selector('[data-live-state="live"]')
    figure = page.locator('[data-field="pools_total"]')
    assert figure.inner_text() == "0"
    apps.get_model("xenpools", "Pool").objects.create(name="lab", address="127.0.0.9", health="unreachable")
    deadline = time.monotonic() + 20
    while figure.inner_text() != "1":
        # Until the page's subscription is registered an event may pass unseen: publish again.
        assert time.monotonic() < deadline, "the dashboard did not refresh"
        publish("dashboard", {"type": "pools.changed"})
        page.wait_for_timeout(700)
    assert page.locator('[data-field="pools_unhealthy"]').inner_text() == "1"
    assert "Pool lab" in page.locator("[data-alerts]").inner_text()
    screenshot(page, "dashboard-live")


def test_on_a_phone_the_navigation_opens_from_the_menu_button(asgi_server, admin, page, screenshot):
    page.set_viewport_size({"width": 390, "height": 800})
    asgi_server.sign_in(page, "alice-admin")
    navigation = page.get_by_role("navigation", name="Main")
    audit_link = navigation.get_by_role("link", name="Audit log")
    assert not audit_link.is_visible() or audit_link.bounding_box()["x"] < 0
    page.get_by_role("button", name="Menu").click()
    page.wait_for_function("document.body.classList.contains('nav-open')")
    page.wait_for_timeout(300)  # the slide-in transition
    assert audit_link.bounding_box()["x"] >= 0
    screenshot(page, "dashboard-phone-menu")


def test_the_chart_helper_draws_bars_and_an_accessible_table(asgi_server, admin, page):
    asgi_server.sign_in(page, "alice-admin")
    result = page.evaluate("""() => {
        const box = document.createElement("div");
        document.querySelector("main").appendChild(box);
        Charts.bar(box, [{label: "10:00", value: 3}, {label: "11:00", value: 0}, {label: "12:00", value: 7}], {label: "Runs"});
        const heights = Array.from(box.querySelectorAll("rect.chart-bar")).map((r) => Number(r.getAttribute("height")));
        Charts.line(box, [{label: "a", value: 1}, {label: "b", value: 2}], {label: "Speed", unit: "MB/s"});
        return {heights, svgLabel: box.querySelector("svg").getAttribute("aria-label"),
                rows: box.querySelectorAll("table.chart-table tr").length, dots: box.querySelectorAll("circle.chart-dot").length};
    }""")
    assert len(result["heights"]) == 3 and result["heights"][2] > result["heights"][0] > result["heights"][1] == 0
    assert result["svgLabel"] == "Speed" and result["rows"] == 2 and result["dots"] == 2


def test_a_user_creates_an_api_token_and_copies_it_once(asgi_server, admin, page, screenshot):
    asgi_server.sign_in(page, "alice-admin")
    page.locator("details.user-menu summary").click()
    page.get_by_role("link", name="My account").click()
    page.get_by_label("Name").fill("nightly report")
    page.get_by_role("button", name="Create token").click()
    key = page.get_by_label("Your new token (shown only once):").input_value()
    assert key.startswith("sesam_")
    screenshot(page, "my-account-token")
    import urllib.request
    request = urllib.request.Request(asgi_server.url + "/api/audit-events/?action=token_create",
                                     headers={"Authorization": f"Token {key}", "Accept": "application/json"})
    import json
    body = json.loads(urllib.request.urlopen(request, timeout=10).read())
    assert body["results"][0]["message"] == "API token 'nightly report' created"


def test_the_live_indicator_shows_a_lost_connection_and_reconnects(asgi_server, admin, page, screenshot):
    asgi_server.sign_in(page, "alice-admin")
    page.wait_for_selector('[data-live-state="live"]')
    asgi_server.stop()
    try:
        page.wait_for_selector('[data-live-state="reconnecting"]', timeout=10_000)
        screenshot(page, "live-reconnecting")
    finally:
        asgi_server.start()
    page.wait_for_selector('[data-live-state="live"]', timeout=40_000)  # backoff: 1 s, 2 s, 4 s ...


def test_the_dashboard_with_backups_running(asgi_server, admin, page, screenshot):
    from backups.models import BackupRun
    from tests.sesamweb.test_dashboard import make_backups, make_inventory

    healthy, _ = make_inventory()
    make_backups(healthy)
    for status in ("success", "success", "warning"):
        BackupRun.objects.create(status=status)
    asgi_server.sign_in(page, "alice-admin")
    page.wait_for_selector("svg.chart-svg")
    assert page.locator("[aria-labelledby=activity-title] rect.chart-bar").count() == 24  # one bar per hour
    assert page.locator("[data-running] [role=progressbar]").get_attribute("aria-valuenow") == "25"
    screenshot(page, "dashboard-backups")
