"""The outbox: retries with back-off, permanent errors, fallback channels, failing
channels flagged, two workers never sending the same delivery, a killed worker."""
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection
from django.utils import timezone

from sesamweb.notify.choices import DeliveryStatus
from sesamweb.notify.delivery import backoff_seconds, claim, failing_channels, send_due
from sesamweb.notify.models import Delivery, DeliveryAttempt

from .conftest import emit_run_failed, make_channel, route
from tests.fixtures.receivers import HttpReceiver, free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
REPO = Path(__file__).resolve().parents[3]


def flaky(failures):
    """A receiver that answers 503 `failures` times, then 200."""
    answers = iter([503] * failures)
    return lambda request: next(answers, 200)


def run_until_settled(limit=10):
    for _ in range(limit):
        send_due()
        if not Delivery.objects.filter(status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING]).exists():
            return
    raise AssertionError("deliveries did not settle")


def test_a_receiver_that_fails_twice_then_succeeds_gets_exactly_one_message():
    with HttpReceiver(flaky(2)) as receiver:
        channel = make_channel("webhook", url=receiver.url + "/hook", secret="k" * 20)
        route(channel, events=["run.failed"])
        emit_run_failed()
        run_until_settled()
    assert [r["status"] for r in receiver.requests] == [503, 503, 200]
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 3)
    assert list(DeliveryAttempt.objects.filter(delivery=delivery).values_list("number", "ok")) == [
        (1, False), (2, False), (3, True)]
    channel.refresh_from_db()
    assert channel.consecutive_failures == 0 and not channel.is_failing


def test_retries_back_off_exponentially(settings):
    settings.SESAM_NOTIFY_RETRY_BASE_SECONDS = 30
    settings.SESAM_NOTIFY_RETRY_MAX_SECONDS = 3600
    assert [backoff_seconds(n) for n in range(1, 9)] == [30, 60, 120, 240, 480, 960, 1920, 3600]
    with HttpReceiver(lambda request: 503) as receiver:
        channel = make_channel("webhook", url=receiver.url, secret="k" * 20)
        route(channel, events=["run.failed"])
        emit_run_failed()
        before = timezone.now()
        send_due()
        assert send_due() == 0                              # not due again yet
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING
    assert timedelta(seconds=29) < delivery.next_attempt_at - before < timedelta(seconds=40)


def test_a_permanent_error_fails_at_once_and_goes_to_the_fallback_channel():
    with HttpReceiver(lambda request: 404 if request["path"] == "/gone" else 200) as receiver:
        backup_channel = make_channel("webhook", "second", url=receiver.url + "/ok", secret="k" * 20)
        primary = make_channel("webhook", "first", url=receiver.url + "/gone", secret="k" * 20, fallback=backup_channel)
        route(primary, events=["run.failed"])
        emit_run_failed()
        run_until_settled()
    failed = Delivery.objects.get(channel=primary)
    assert (failed.status, failed.attempts) == (DeliveryStatus.FAILED, 1) and "HTTP 404" in failed.last_error
    fallback = Delivery.objects.get(channel=backup_channel)
    assert fallback.status == DeliveryStatus.SENT and fallback.fallback_of == failed
    assert [r["path"] for r in receiver.requests] == ["/gone", "/ok"]
    primary.refresh_from_db()
    assert primary.is_failing and failing_channels() == [primary]   # flagged at once: permanent


def test_a_channel_that_keeps_failing_is_flagged_and_its_messages_fall_back(settings):
    settings.SESAM_NOTIFY_MAX_ATTEMPTS = 3
    settings.SESAM_NOTIFY_FAILING_AFTER = 3
    with HttpReceiver(lambda request: 200) as fallback_receiver:
        fallback = make_channel("webhook", "pager", url=fallback_receiver.url, secret="k" * 20)
        down = make_channel("webhook", "down", url=f"http://127.0.0.1:{free_port()}/", secret="k" * 20,
                            fallback=fallback)
        route(down, events=["run.failed"])
        emit_run_failed()
        send_due()
        down.refresh_from_db()
        assert down.consecutive_failures == 1 and not down.is_failing and failing_channels() == []
        run_until_settled()
        assert len(fallback_receiver.ok()) == 1
    down.refresh_from_db()
    assert down.is_failing and "could not reach" in down.last_error
    assert [c.name for c in failing_channels()] == ["down"]
    assert Delivery.objects.get(channel=down).attempts == 3


def test_two_workers_never_claim_the_same_delivery():
    channel = make_channel("webhook", url="http://127.0.0.1:9/", secret="k" * 20)
    route(channel, events=["run.failed"])
    emit_run_failed()
    delivery = Delivery.objects.get()
    results, barrier = [], threading.Barrier(4)

    def contend(name):
        barrier.wait()
        results.append((name, claim(delivery.pk, name)))
        connection.close()

    threads = [threading.Thread(target=contend, args=(f"worker-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [name for name, won in results if won]
    assert len(winners) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.claimed_by, delivery.attempts) == (DeliveryStatus.SENDING, winners[0], 1)


def test_a_worker_killed_mid_delivery_is_retried_once_after_its_lease_and_never_lost(settings):
    """A real worker process (manage.py send_notifications --once) is killed with SIGKILL
    while the receiver holds its request; after the lease another worker sends it, once."""
    release = threading.Event()

    def answer(request):
        if len(receiver.requests) == 0 and not release.is_set():
            release.wait(30)          # hold the first request until the worker is dead
            return 500
        return 200

    with HttpReceiver(answer) as receiver:
        channel = make_channel("webhook", url=receiver.url + "/hook", secret="k" * 20)
        route(channel, events=["run.failed"])
        emit_run_failed()
        delivery = Delivery.objects.get()
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "sesamweb.settings", "SESAM_NOTIFY_TIMEOUT": "60"}
        if connection.vendor == "sqlite":
            env["SESAM_SQLITE_PATH"] = connection.settings_dict["NAME"]
        else:   # the worker uses this test's PostgreSQL database
            parts = urlsplit(os.environ["DATABASE_URL"])
            env["DATABASE_URL"] = urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))
        worker = subprocess.Popen([sys.executable, "manage.py", "send_notifications", "--once"], cwd=REPO, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for(lambda: Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.SENDING).exists()
                     and DeliveryAttempt.objects.filter(delivery=delivery).exists(), timeout=60,
                     message="the worker to claim the delivery")
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
        finally:
            release.set()
            if worker.poll() is None:
                worker.kill()
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENDING, 1)    # left as "sending"

        assert send_due() == 0                                   # the lease still holds it
        later = delivery.lease_expires_at + timedelta(seconds=1)
        assert send_due(now=later) == 1
        assert send_due(now=later + timedelta(hours=1)) == 0     # and it is not sent again
        wait_for(receiver.ok, message="the retried webhook")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 2)
    assert len(receiver.ok()) == 1
    first, second = DeliveryAttempt.objects.filter(delivery=delivery).order_by("number")
    assert first.finished is None and second.ok is True and first.worker != second.worker


def test_a_retry_after_a_partial_send_skips_the_recipients_already_reached():
    with HttpReceiver(lambda request: 503 if "to=%2B2" in request["path"] and len(receiver.requests) < 2 else 200) \
            as receiver:
        channel = make_channel("sms_gateway", url=receiver.url + "/sms?to={to}", method="GET",
                               recipients=["+1", "+2"], secret="")
        route(channel, events=["run.failed"])
        emit_run_failed()
        run_until_settled()
    assert [r["path"] for r in receiver.requests] == ["/sms?to=%2B1", "/sms?to=%2B2", "/sms?to=%2B2"]
    assert Delivery.objects.get().reached == ["+1", "+2"]
