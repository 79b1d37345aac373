"""emit(): record an event and, in the same transaction, its outbox deliveries.

Nothing here talks to a receiver: the caller (a backup finishing, a sign-in failing) only
writes rows and returns; a worker sends them (delivery.py)."""
import logging

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .choices import DeliveryStatus, Severity
from .messages import object_keys
from .models import Delivery, Event, Rule

logger = logging.getLogger(__name__)


def matching_rules(event_name: str, keys) -> list[Rule]:
    """The rules that decide about this event: those naming one of its objects when any
    covers the event (a per-job override), else the general ones."""
    rules = list(Rule.objects.filter(enabled=True).prefetch_related("channels"))
    keys = set(keys)
    specific = [rule for rule in rules if rule.object_key and rule.object_key in keys and rule.covers(event_name)]
    if specific:
        return specific
    return [rule for rule in rules if not rule.object_key and rule.covers(event_name)]


def plan_deliveries(event: Event) -> list[Delivery]:
    """One delivery per channel (the first rule naming it wins; the earliest send time too)."""
    now = event.created
    by_channel: dict[int, Delivery] = {}
    for rule in matching_rules(event.name, event.object_keys):
        if not rule.accepts(event.name, event.severity):
            continue
        quiet_until = None if event.severity == Severity.CRITICAL else rule.quiet_until(now)
        for channel in rule.channels.all():
            if not channel.enabled:
                continue
            due = quiet_until or now
            planned = by_channel.get(channel.pk)
            if planned is None:
                by_channel[channel.pk] = Delivery(event=event, channel=channel, rule=rule, next_attempt_at=due,
                                                  held_for_quiet_hours=quiet_until is not None, created=now)
            elif due < planned.next_attempt_at:
                planned.next_attempt_at, planned.held_for_quiet_hours = due, quiet_until is not None
    return list(by_channel.values())


def emit(name: str, severity: str, *, title: str, objects: dict | None = None, details: dict | None = None):
    """Record event `name` and queue its deliveries; returns the Event (None if recording
    failed: a notification problem must never fail the backup or restore that emits it)."""
    objects, details = objects or {}, details or {}
    try:
        with transaction.atomic():
            event = Event.objects.create(name=name, severity=severity, title=title[:300], about=objects,
                                         object_keys=object_keys(objects), details=details,
                                         created=timezone.now())
            deliveries = Delivery.objects.bulk_create(plan_deliveries(event))
    except Exception:  # noqa: BLE001 - logged; the caller's work goes on
        logger.exception("could not record notification event %s (%s)", name, title)
        return None
    if any(not d.held_for_quiet_hours for d in deliveries):
        transaction.on_commit(kick_worker)
    return event


def kick_worker():
    """Ask a worker to send now rather than at the next minute's schedule."""
    try:
        from django.conf import settings
        from django_q.tasks import async_task

        # The console's cluster by name: from a device server's worker, a task without a
        # cluster would stay on its own queue, where the channels' secrets are not.
        async_task("sesamweb.notify.tasks.send_due_deliveries", task_name="notify: send due deliveries",
                   cluster=settings.Q_CLUSTER["name"])
    except Exception:  # noqa: BLE001 - the every-minute schedule sends them anyway
        logger.warning("could not queue the notification worker; the schedule will send", exc_info=True)


def prune_old_events(now=None) -> int:
    """Forget events (and their deliveries) older than SESAM_NOTIFY_KEEP_DAYS, except those
    with a delivery still waiting or sending. The digest reads the last 7 days."""
    cutoff = (now or timezone.now()) - timedelta(days=max(8, settings.SESAM_NOTIFY_KEEP_DAYS))
    unsent = Delivery.objects.filter(status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING]).values("event_id")
    deleted, _ = Event.objects.filter(created__lt=cutoff).exclude(pk__in=unsent).delete()
    return deleted
