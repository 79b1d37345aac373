"""Notifications in a real browser: an administrator adds a webhook channel, sends a test
message to a receiver on loopback and sees the outcome; then a rule; an operator can read
the page but not change it."""
import json

import pytest

from sesamweb.accounts.roles import Role
from sesamweb.notify.transports import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_webhook
from tests.fixtures.receivers import HttpReceiver
from tests.fixtures.users import make_user

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SIGNING_KEY = "e2e-signing-key-0123456789"


def test_an_administrator_adds_a_webhook_channel_and_sends_a_test(asgi_server, page, screenshot):
    make_user("alice-admin", Role.ADMINISTRATOR, first_name="Alice", last_name="Admin")
    signed = lambda request: 200 if verify_webhook(  # noqa: E731
        SIGNING_KEY, request["headers"].get(TIMESTAMP_HEADER), request["body"], request["headers"].get(SIGNATURE_HEADER)) else 401
    with HttpReceiver(signed) as receiver:
        asgi_server.sign_in(page, "alice-admin")
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Notifications").click()
        page.get_by_role("heading", name="Notifications", level=1).wait_for()
        screenshot(page, "notify-overview-empty")

        page.get_by_role("link", name="Add channel").click()
        page.get_by_role("link", name="Webhook (signed JSON POST)").click()
        page.get_by_label("Name").fill("chat-ops")
        page.get_by_label("URL").fill(receiver.url + "/hooks/sesam")
        page.get_by_label("Signing key").fill("short")
        page.get_by_role("button", name="Add channel").click()
        page.get_by_text("Ensure this value has at least 16 characters").wait_for()
        screenshot(page, "notify-channel-add-error")

        page.get_by_label("Signing key").fill(SIGNING_KEY)
        page.get_by_role("button", name="Add channel").click()
        page.get_by_role("heading", name="Channel chat-ops").wait_for()
        assert SIGNING_KEY not in page.content()

        page.get_by_role("button", name="Send a test message").click()
        page.get_by_text("Test message delivered to chat-ops.").wait_for()
        outcome = page.locator("[data-test-outcome]")
        assert "Delivered" in outcome.inner_text()
        assert "Sent" in page.locator("[data-deliveries]").inner_text()
        screenshot(page, "notify-channel-tested")
    request, = receiver.ok()
    assert json.loads(request["body"])["name"] == "notify.test"

    # The receiver is gone now: the next test shows the failure in plain words.
    page.get_by_role("button", name="Send a test message").click()
    page.get_by_text("Test message to chat-ops failed: could not reach").wait_for()
    screenshot(page, "notify-channel-test-failed")

    page.get_by_role("link", name="Notifications").first.click()
    page.get_by_role("link", name="Add rule").click()
    page.get_by_label("Name").fill("Failures to chat")
    page.get_by_label("Backup run failed").check()
    page.get_by_label("Minimum severity").select_option("warning")
    page.get_by_label("chat-ops").check()
    page.get_by_label("Quiet hours from").fill("22:00")
    page.get_by_label("Quiet hours until").fill("06:30")
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "notify-rule-form")
    page.get_by_role("button", name="Save rule").click()
    page.get_by_text("Rule Failures to chat saved.").wait_for()
    assert "22:00–06:30" in page.get_by_role("table", name="Notification rules").inner_text()
    screenshot(page, "notify-overview")


def test_an_operator_reads_notifications_but_cannot_change_them(asgi_server, page, screenshot):
    make_user("oscar-operator", Role.OPERATOR)
    asgi_server.sign_in(page, "oscar-operator")
    page.goto(asgi_server.url + "/notifications/")
    page.get_by_role("heading", name="Channels").wait_for()
    assert page.get_by_role("link", name="Add channel").count() == 0
    response = page.goto(asgi_server.url + "/notifications/channels/new/?kind=webhook")
    assert response.status == 403
