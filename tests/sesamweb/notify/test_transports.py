"""Each channel kind against a real receiver on loopback: what arrives, and how errors
are classified (permanent or worth a retry)."""
import email
import email.policy
import json
import urllib.parse
import urllib.request

import pytest

from sesamweb.notify.choices import DeliveryStatus
from sesamweb.notify.delivery import send_due, send_test
from sesamweb.notify.models import Delivery
from sesamweb.notify.transports import (DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_webhook,
                                        webhook_signature)

from .conftest import emit_run_failed, make_channel, route
from tests.fixtures.receivers import HttpReceiver, SmtpReceiver, SyslogReceiver, free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def _parts(raw: bytes):
    message = email.message_from_bytes(raw, policy=email.policy.default)
    return message, {part.get_content_type(): part.get_content() for part in message.walk()
                     if not part.is_multipart()}


def test_email_over_starttls_with_login_reaches_every_recipient_in_text_and_html(cert):
    with SmtpReceiver(cert=cert, login=("notifier", "s3cret-pass")) as smtp:
        channel = make_channel("email", host="127.0.0.1", port=smtp.port, security="starttls", username="notifier",
                               from_address="sesamweb@example.test", recipients=["ops@example.test", "oncall@example.test"],
                               ca_pem=cert.pem, secret="s3cret-pass")
        route(channel, events=["run.failed"])
        emit_run_failed()
        assert send_due() == 1

        (mail_from, rcpt_tos, raw), = wait_for(lambda: smtp.messages, message="the email")
    assert smtp.logins == [("PLAIN", True)] or smtp.logins[-1][1] is True
    assert sorted(rcpt_tos) == ["oncall@example.test", "ops@example.test"]
    message, parts = _parts(raw)
    assert message["Subject"] == "[sesamweb] Backup nightly: 1 of 2 VM(s) failed (pool Lab pool)"
    for body in (parts["text/plain"], parts["text/html"]):
        for expected in ("Lab pool", "xcp-host-1", "nightly", "nas-01", "db-1", "web-1", "full XVA export",
                         "SR_FULL", "https://console.example.test/backups/runs/40/"):
            assert expected in body, (expected, body)
    assert Delivery.objects.get().status == DeliveryStatus.SENT


def test_email_over_implicit_tls(cert):
    with SmtpReceiver(cert=cert, implicit_tls=True) as smtp:
        channel = make_channel("email", host="127.0.0.1", port=smtp.port, security="tls",
                               from_address="sesamweb@example.test", recipients=["ops@example.test"], ca_pem=cert.pem)
        delivery = send_test(channel)
        assert delivery.status == DeliveryStatus.SENT, delivery.last_error
        wait_for(lambda: smtp.messages, message="the email")


def test_a_wrong_smtp_password_fails_at_once_without_retrying(cert):
    with SmtpReceiver(cert=cert, login=("notifier", "right")) as smtp:
        channel = make_channel("email", host="127.0.0.1", port=smtp.port, security="starttls", username="notifier",
                               from_address="sesamweb@example.test", recipients=["ops@example.test"],
                               ca_pem=cert.pem, secret="wrong")
        route(channel, events=["run.failed"])
        emit_run_failed()
        send_due()
        send_due()
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 1)
    assert "refused the user name or password" in delivery.last_error
    assert smtp.messages == []


def test_an_untrusted_mail_server_certificate_is_refused(cert):
    with SmtpReceiver(cert=cert) as smtp:
        channel = make_channel("email", host="127.0.0.1", port=smtp.port, security="starttls",
                               from_address="sesamweb@example.test", recipients=["ops@example.test"])
        delivery = send_test(channel)
    assert delivery.status == DeliveryStatus.FAILED
    assert "certificate is not trusted" in delivery.last_error
    assert smtp.messages == []


def test_email_to_sms_sends_the_short_text_only():
    with SmtpReceiver() as smtp:
        channel = make_channel("sms_email", host="127.0.0.1", port=smtp.port, security="none",
                               from_address="sesamweb@example.test", recipients=["5551234@sms.example.test"])
        route(channel, events=["run.failed"])
        emit_run_failed()
        send_due()
        (_, rcpt_tos, raw), = wait_for(lambda: smtp.messages, message="the SMS email")
    message, parts = _parts(raw)
    assert rcpt_tos == ["5551234@sms.example.test"]
    assert list(parts) == ["text/plain"]
    text = parts["text/plain"].strip()
    assert len(text) <= 160 and "failed: db-1" in text and "nightly" in text


@pytest.mark.parametrize("protocol", ["udp", "tcp", "tls"])
def test_syslog_receives_rfc5424_with_structured_data(protocol, cert):
    with SyslogReceiver(protocol, cert=cert) as collector:
        channel = make_channel("syslog", host="127.0.0.1", port=collector.port, protocol=protocol, facility="local3",
                               app_name="sesam-test", ca_pem=cert.pem if protocol == "tls" else "", verify_tls=True)
        route(channel, events=["run.failed"])
        event = emit_run_failed()
        send_due()
        record, = wait_for(lambda: collector.records, message=f"the syslog record over {protocol}")
        assert not collector.errors
    assert (record["facility"], record["severity"]) == (19, 3)          # local3, error
    assert (record["app_name"], record["msgid"]) == ("sesam-test", "run.failed")
    data = record["sd"]["sesam@32473"]
    assert data["event"] == "run.failed" and data["event_id"] == str(event.pk)
    assert (data["pool"], data["host"], data["job"], data["store"]) == ("Lab pool", "xcp-host-1", "nightly", "nas-01")
    assert (data["vms"], data["vms_failed"]) == ("2", "1")
    assert data["error"] == "db-1: the pool refused: SR_FULL"
    assert record["msg"] == "Backup nightly: 1 of 2 VM(s) failed (pool Lab pool)"


def test_syslog_over_tls_refuses_an_untrusted_collector(cert):
    with SyslogReceiver("tls", cert=cert) as collector:
        channel = make_channel("syslog", host="127.0.0.1", port=collector.port, protocol="tls", facility="daemon",
                               app_name="sesamweb", verify_tls=True)
        delivery = send_test(channel)
    assert delivery.status == DeliveryStatus.FAILED and "not trusted" in delivery.last_error
    assert collector.records == []


class SigningReceiver(HttpReceiver):
    """A webhook receiver as the README tells people to write one: check the signature and
    the timestamp, and drop a delivery id it has already accepted."""

    def __init__(self, secret):
        self.seen = set()

        def answer(request):
            headers = request["headers"]
            if not verify_webhook(secret, headers.get(TIMESTAMP_HEADER), request["body"], headers.get(SIGNATURE_HEADER)):
                return 401
            if headers.get(DELIVERY_HEADER) in self.seen:
                return 409
            self.seen.add(headers.get(DELIVERY_HEADER))
            return 200
        super().__init__(answer)


def test_a_webhook_is_signed_and_a_replay_is_rejected():
    secret = "a-long-shared-signing-key"
    with SigningReceiver(secret) as receiver:
        channel = make_channel("webhook", url=receiver.url + "/hooks/sesam", secret=secret)
        route(channel, events=["run.failed"])
        event = emit_run_failed()
        send_due()
        first, = wait_for(receiver.ok, message="the webhook")
        payload = json.loads(first["body"])
        assert (payload["name"], payload["event_id"]) == ("run.failed", event.pk)
        assert payload["objects"]["pool"]["name"] == "Lab pool"
        assert first["headers"][SIGNATURE_HEADER] == webhook_signature(secret, first["headers"][TIMESTAMP_HEADER],
                                                                       first["body"])

        def replay(body, headers):
            request = urllib.request.Request(receiver.url + "/hooks/sesam", data=body, method="POST", headers={
                k: headers[k] for k in (SIGNATURE_HEADER, TIMESTAMP_HEADER, DELIVERY_HEADER, "Content-Type")})
            try:
                return urllib.request.urlopen(request, timeout=5).status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert replay(first["body"], first["headers"]) == 409                       # same message again
        assert replay(first["body"].replace(b"Lab pool", b"Evil pool"), first["headers"]) == 401  # altered
        stale = dict(first["headers"], **{TIMESTAMP_HEADER: str(int(first["headers"][TIMESTAMP_HEADER]) - 3600)})
        stale[SIGNATURE_HEADER] = webhook_signature("guessed-key-0000000", stale[TIMESTAMP_HEADER], first["body"])
        assert replay(first["body"], stale) == 401
    assert verify_webhook(secret, first["headers"][TIMESTAMP_HEADER], first["body"], first["headers"][SIGNATURE_HEADER],
                          now=int(first["headers"][TIMESTAMP_HEADER]) + 301) is False   # too old to accept


def test_the_sms_gateway_gets_the_templated_message_for_each_number():
    with HttpReceiver() as gateway:
        channel = make_channel(
            "sms_gateway", url=gateway.url + "/send?to={to}&key={token}", method="POST",
            content_type="application/json", body_template='{{"to": "{to}", "text": "{message}"}}',
            recipients=["+15550001", "+15550002"], token_header="", secret="gw-token/42")
        route(channel, events=["run.failed"])
        emit_run_failed()
        send_due()
        requests = wait_for(lambda: len(gateway.requests) == 2 and gateway.requests, message="two SMS")
    for request, number in zip(requests, ["+15550001", "+15550002"]):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request["path"]).query)
        assert query == {"to": [number], "key": ["gw-token/42"]}
        body = json.loads(request["body"])
        assert body["to"] == number
        assert body["text"].startswith("Backup nightly: 1 of 2 VM(s) failed") and "failed: db-1" in body["text"]
    assert Delivery.objects.get().reached == ["+15550001", "+15550002"]


def test_an_http_4xx_is_permanent_and_a_5xx_is_retried():
    with HttpReceiver(lambda request: 404 if "gone" in request["path"] else 503) as receiver:
        gone = make_channel("webhook", "gone", url=receiver.url + "/gone", secret="k" * 20)
        busy = make_channel("webhook", "busy", url=receiver.url + "/busy", secret="k" * 20)
        route(gone, busy, events=["run.failed"])
        emit_run_failed()
        send_due()
    assert Delivery.objects.get(channel=gone).status == DeliveryStatus.FAILED
    busy_delivery = Delivery.objects.get(channel=busy)
    assert busy_delivery.status == DeliveryStatus.PENDING and "HTTP 503" in busy_delivery.last_error


def test_a_test_send_to_a_closed_port_fails_once_and_is_not_retried():
    channel = make_channel("webhook", url=f"http://127.0.0.1:{free_port()}/", secret="k" * 20)
    delivery = send_test(channel)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 1)
    assert send_due() == 0
    channel.refresh_from_db()
    assert channel.last_test_ok is False and "could not reach" in channel.last_test_result
    assert channel.consecutive_failures == 0       # a test does not flag the channel
