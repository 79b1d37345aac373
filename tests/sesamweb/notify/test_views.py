"""Notification pages and API: roles (VIEW reads, MANAGE changes), secrets never
returned, every change audited, the test send's outcome shown."""
import pytest

from sesamweb.audit.models import AuditEvent
from sesamweb.notify.models import Channel, Delivery, Rule

from .conftest import make_channel
from tests.fixtures.receivers import HttpReceiver

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "webhook-signing-key-0123456789"


@pytest.mark.parametrize("url", ["/notifications/", "/notifications/deliveries/"])
def test_reading_needs_a_role(client, url, auditor_client, operator_client, norole_user):
    assert client.get(url).status_code == 302
    client.force_login(norole_user)
    assert client.get(url).status_code == 403
    assert auditor_client.get(url).status_code == 200
    assert operator_client.get(url).status_code == 200


def test_changing_needs_an_administrator(operator_client, auditor_client):
    channel = make_channel("webhook", url="http://127.0.0.1:9/", secret=SECRET)
    for client in (operator_client, auditor_client):
        assert client.get("/notifications/channels/new/?kind=webhook").status_code == 403
        assert client.post(f"/notifications/channels/{channel.pk}/test/").status_code == 403
        assert client.post(f"/notifications/channels/{channel.pk}/delete/").status_code == 403
        assert client.post("/notifications/rules/new/", {"name": "x", "min_severity": "info"}).status_code == 403
    assert Channel.objects.count() == 1 and not Rule.objects.exists()


def test_an_administrator_adds_a_webhook_channel_whose_secret_is_never_shown(admin_client):
    response = admin_client.post("/notifications/channels/new/?kind=webhook", {
        "name": "chat", "enabled": "on", "url": "https://hooks.example.test/sesam", "signing_key": SECRET})
    channel = Channel.objects.get(name="chat")
    assert response.status_code == 302 and response["Location"] == f"/notifications/channels/{channel.pk}/"
    assert channel.get_secret() == SECRET and SECRET not in channel.secret_encrypted
    page = admin_client.get(response["Location"]).content.decode()
    assert SECRET not in page and "stored, encrypted" in page
    audit = AuditEvent.objects.filter(target_type="notify.channel").latest("sequence")
    assert audit.action == "create" and audit.after["secret_encrypted"] == "<set>"

    # Saving without a new key keeps the stored one.
    admin_client.post(response["Location"], {"name": "chat", "enabled": "on", "url": "https://hooks.example.test/v2",
                                             "signing_key": ""})
    channel.refresh_from_db()
    assert channel.config["url"] == "https://hooks.example.test/v2" and channel.get_secret() == SECRET


def test_an_invalid_channel_form_shows_the_errors(admin_client):
    response = admin_client.post("/notifications/channels/new/?kind=sms_gateway", {
        "name": "sms", "url": "https://sms.example.test/send?to={to}&x={nope}", "method": "POST",
        "recipients": ""})
    page = response.content.decode()
    assert response.status_code == 200 and "Unknown placeholder" in page and "Enter at least one recipient" in page
    assert not Channel.objects.exists()


def test_send_a_test_message_shows_the_outcome(admin_client):
    with HttpReceiver() as receiver:
        channel = make_channel("webhook", url=receiver.url + "/hook", secret=SECRET)
        response = admin_client.post(f"/notifications/channels/{channel.pk}/test/", follow=True)
    page = response.content.decode()
    assert "Test message delivered to webhook-channel." in page
    assert len(receiver.ok()) == 1
    assert AuditEvent.objects.filter(action="test_connection", target_type="notify.channel").exists()


def test_a_rule_is_added_with_its_channels(admin_client):
    channel = make_channel("webhook", url="http://127.0.0.1:9/", secret=SECRET)
    response = admin_client.post("/notifications/rules/new/", {
        "name": "failures", "enabled": "on", "event_names": ["run.failed", "vm.rpo_missed"],
        "min_severity": "warning", "object_key": "job:7", "channels": [channel.pk],
        "quiet_start": "22:00", "quiet_end": "06:00"})
    assert response.status_code == 302
    rule = Rule.objects.get()
    assert rule.event_names == ["run.failed", "vm.rpo_missed"] and list(rule.channels.all()) == [channel]
    assert "job:7" in admin_client.get("/notifications/").content.decode()
    assert AuditEvent.objects.filter(target_type="notify.rule", action="create").exists()


# --- API ---------------------------------------------------------------------------------
def test_the_api_creates_a_channel_and_never_returns_its_secret(api_client):
    admin = api_client("administrator")
    response = admin.post("/api/notify/channels/", {"name": "siem", "kind": "webhook", "secret": SECRET,
                                                    "config": {"url": "https://siem.example.test/in"}}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert "secret" not in body and body["has_secret"] is True and SECRET not in response.content.decode()
    listed = admin.get("/api/notify/channels/").content.decode()
    assert SECRET not in listed and Channel.objects.get().secret_encrypted not in listed
    bad = admin.post("/api/notify/channels/", {"name": "x", "kind": "syslog", "config": {"host": "h", "port": 0}},
                     format="json")
    assert bad.status_code == 400 and "port" in bad.json()


def test_the_api_has_the_pages_permissions(api_client):
    channel = make_channel("webhook", url="http://127.0.0.1:9/", secret=SECRET)
    operator = api_client("operator")
    assert operator.get("/api/notify/channels/").status_code == 200
    assert operator.post(f"/api/notify/channels/{channel.pk}/test/").status_code == 403
    assert operator.post("/api/notify/rules/", {"name": "r"}, format="json").status_code == 403
    assert api_client(None).get("/api/notify/deliveries/").status_code == 403


def test_the_api_sends_a_test_and_lists_deliveries_with_their_attempts(api_client):
    admin = api_client("administrator")
    with HttpReceiver(lambda request: 500) as receiver:
        channel = make_channel("webhook", url=receiver.url, secret=SECRET)
        result = admin.post(f"/api/notify/channels/{channel.pk}/test/").json()
    assert result["status"] == "failed" and "HTTP 500" in result["last_error"]
    rule = admin.post("/api/notify/rules/", {"name": "all", "channels": [channel.pk], "min_severity": "error",
                                             "event_names": ["run.failed"]}, format="json")
    assert rule.status_code == 201, rule.json()
    deliveries = admin.get("/api/notify/deliveries/").json()["results"]
    assert deliveries[0]["attempt_log"][0]["ok"] is False and deliveries[0]["is_test"] is True
    assert Delivery.objects.count() == 1
