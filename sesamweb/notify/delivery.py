"""Sending the outbox: claim a delivery, write "sending", try once, write the outcome.

A worker claims a delivery with a conditional UPDATE (pending and due, or "sending" with
an expired lease), so two workers never send the same one. The claim is committed before
the attempt: a worker killed mid-send leaves "sending" with a lease that expires, and the
next worker tries again (at least once, never lost); recipients that an attempt already
reached are recorded in `reached` and skipped. Transient errors are retried with
exponential back-off; permanent ones (HTTP 4xx, SMTP 5xx) fail at once. A delivery that
finally fails goes to the channel's fallback channel, if one is set.
"""
import logging
import os
import socket
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from .choices import DeliveryStatus, EventName, Severity
from .messages import build_message
from .models import Channel, Delivery, DeliveryAttempt, Event
from .transports import TransportError, transport_for

logger = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def backoff_seconds(attempts: int) -> float:
    """Wait before attempt `attempts + 1`: base, 2x base, 4x base ... up to the maximum."""
    return min(settings.SESAM_NOTIFY_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1),
               settings.SESAM_NOTIFY_RETRY_MAX_SECONDS)


def _claimable(now):
    return (Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            | Q(status=DeliveryStatus.SENDING, lease_expires_at__lt=now))


def claim(delivery_id: int, worker: str, now=None) -> bool:
    now = now or timezone.now()
    return bool(Delivery.objects.filter(_claimable(now), pk=delivery_id).update(
        status=DeliveryStatus.SENDING, claimed_by=worker, attempts=F("attempts") + 1,
        lease_expires_at=now + timedelta(seconds=settings.SESAM_NOTIFY_LEASE_SECONDS)))


def send_due(*, worker: str | None = None, limit: int = 100, now=None) -> int:
    """Send the deliveries that are due; returns how many this worker attempted."""
    worker = worker or worker_name()
    now = now or timezone.now()
    due = list(Delivery.objects.filter(_claimable(now)).order_by("next_attempt_at", "pk")
               .values_list("pk", flat=True)[:limit])
    attempted = 0
    for delivery_id in due:
        if claim(delivery_id, worker, now):
            attempt(Delivery.objects.select_related("event", "channel").get(pk=delivery_id), worker)
            attempted += 1
    return attempted


def _message_for(delivery):
    message = build_message(delivery.event, delivery_id=delivery.pk)
    message.reached = set(delivery.reached or [])

    def mark_reached(recipient):
        message.reached.add(recipient)
        Delivery.objects.filter(pk=delivery.pk).update(reached=sorted(message.reached))

    message.mark_reached = mark_reached
    return message


def attempt(delivery: Delivery, worker: str, *, may_retry: bool = True) -> bool:
    """One try of a claimed delivery (status "sending" already written); True if sent."""
    log = DeliveryAttempt.objects.create(delivery=delivery, number=delivery.attempts, worker=worker)
    channel = delivery.channel
    error, permanent = "", False
    try:
        if not channel.enabled and not delivery.is_test:
            raise TransportError("the channel is disabled", permanent=True)
        transport_for(channel).send(_message_for(delivery))
    except TransportError as exc:
        error, permanent = str(exc), exc.permanent
    except Exception as exc:  # noqa: BLE001 - a bug in a transport must not stop the worker
        logger.exception("notification delivery %s failed unexpectedly", delivery.pk)
        error = f"unexpected error: {exc.__class__.__name__}: {exc}"
    now = timezone.now()
    DeliveryAttempt.objects.filter(pk=log.pk).update(finished=now, ok=not error, permanent=permanent, error=error)
    mine = Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.SENDING, claimed_by=worker)
    if not error:
        mine.update(status=DeliveryStatus.SENT, sent_at=now, last_error="", lease_expires_at=None)
        if not delivery.is_test:
            Channel.objects.filter(pk=channel.pk).update(consecutive_failures=0, last_success_at=now,
                                                         last_error_permanent=False)
        return True
    final = permanent or not may_retry or delivery.attempts >= settings.SESAM_NOTIFY_MAX_ATTEMPTS
    if final:
        mine.update(status=DeliveryStatus.FAILED, last_error=error, lease_expires_at=None)
    else:
        mine.update(status=DeliveryStatus.PENDING, last_error=error, lease_expires_at=None,
                    next_attempt_at=now + timedelta(seconds=backoff_seconds(delivery.attempts)))
    if not delivery.is_test:
        Channel.objects.filter(pk=channel.pk).update(consecutive_failures=F("consecutive_failures") + 1,
                                                     last_error=error, last_error_at=now,
                                                     last_error_permanent=permanent)
        if final:
            _fall_back(delivery)
    logger.warning("notification %s to %s: attempt %s failed%s: %s", delivery.event.name, channel,
                   delivery.attempts, " (final)" if final else "", error)
    return False


def _fall_back(delivery):
    """Hand a message that could not be delivered to the channel's fallback (one level)."""
    fallback = delivery.channel.fallback
    if delivery.fallback_of_id or fallback is None or not fallback.enabled or fallback.pk == delivery.channel_id:
        return None
    copy = Delivery.objects.create(event=delivery.event, channel=fallback, rule=delivery.rule,
                                   fallback_of=delivery)
    from .events import kick_worker
    kick_worker()
    return copy


def send_test(channel: Channel) -> Delivery:
    """Send a test message now, once (test sends never retry); the outcome is on the
    returned delivery and on the channel."""
    worker = worker_name()
    event = Event.objects.create(name=EventName.TEST, severity=Severity.INFO,
                                 title=f"Test message from sesamweb to channel {channel.name}",
                                 details={"summary": "If you can read this, the channel works."})
    delivery = Delivery.objects.create(event=event, channel=channel, is_test=True, status=DeliveryStatus.SENDING,
                                       claimed_by=worker, attempts=1,
                                       lease_expires_at=timezone.now() + timedelta(
                                           seconds=settings.SESAM_NOTIFY_LEASE_SECONDS))
    ok = attempt(delivery, worker, may_retry=False)
    delivery.refresh_from_db()
    Channel.objects.filter(pk=channel.pk).update(
        last_test_at=timezone.now(), last_test_ok=ok, last_test_result="Delivered" if ok else delivery.last_error)
    channel.refresh_from_db()
    return delivery


def failing_channels():
    """Channels to flag on the dashboard: enabled, and their last deliveries failed
    (several in a row, or one with a permanent error)."""
    return [channel for channel in Channel.objects.filter(enabled=True, consecutive_failures__gt=0)
            if channel.is_failing]
