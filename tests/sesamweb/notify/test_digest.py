"""The daily digest: a VM x day matrix of the last 7 days, from recorded run events."""
import datetime

import pytest
from django.utils import timezone

from sesamweb import notify
from sesamweb.notify.digest import digest_matrix, send_daily_digest
from sesamweb.notify.messages import build_message
from sesamweb.notify.models import Delivery, Event

from .conftest import make_channel, route

pytestmark = pytest.mark.django_db


def run_event(days_ago, **statuses):
    name = "run.failed" if "failed" in statuses.values() else "run.succeeded"
    event = notify.emit(name, "info", title="run", objects={
        "vms": [{"id": vm, "name": vm, "status": status} for vm, status in statuses.items()]})
    Event.objects.filter(pk=event.pk).update(created=timezone.now() - datetime.timedelta(days=days_ago))


def test_the_matrix_has_one_row_per_vm_and_the_worst_result_of_each_day():
    run_event(0, web="success", db="failed")
    run_event(0, db="success")                 # retried the same day: the day still shows the failure
    run_event(2, web="warning")
    run_event(8, web="failed")                 # older than 7 days: not shown
    matrix = digest_matrix()
    today = timezone.localdate()
    assert matrix["days"] == [(today - datetime.timedelta(days=n)).isoformat() for n in range(6, -1, -1)]
    assert matrix["rows"] == [
        {"vm": "db", "cells": ["", "", "", "", "", "", "failed"]},
        {"vm": "web", "cells": ["", "", "", "", "warning", "", "ok"]},
    ]


def test_the_digest_is_an_event_rules_route_like_any_other():
    ops = make_channel("webhook", "ops", url="http://127.0.0.1:9/", secret="k" * 20)
    route(ops, events=["digest.daily"])
    run_event(1, web="success", db="failed")
    event = send_daily_digest()
    assert event.title == "Backup digest: 2 VMs over 7 days, 1 with failures"
    assert Delivery.objects.get(event=event).channel == ops
    message = build_message(event)
    assert "- db: " in message.text and "failed" in message.text
    assert "<th scope=\"row\" style=\"text-align: left; padding: 4px;\">web</th>" in message.html


def test_old_events_are_forgotten_unless_a_delivery_is_still_waiting(settings):
    from sesamweb.notify.events import prune_old_events
    from sesamweb.notify.tasks import send_daily_digest as daily_task

    settings.SESAM_NOTIFY_KEEP_DAYS = 30
    channel = make_channel("webhook", "ops", url="http://127.0.0.1:9/", secret="k" * 20)
    route(channel, events=["run.failed"])
    old_sent = notify.emit("run.failed", "error", title="old, sent")
    old_waiting = notify.emit("run.failed", "error", title="old, still waiting")
    recent = notify.emit("run.failed", "error", title="recent")
    Delivery.objects.filter(event=old_sent).update(status="sent")
    Event.objects.filter(pk__in=[old_sent.pk, old_waiting.pk]).update(
        created=timezone.now() - datetime.timedelta(days=31))
    assert prune_old_events() == 2                     # the event and its delivery
    assert set(Event.objects.values_list("title", flat=True)) >= {"old, still waiting", "recent"}
    assert not Event.objects.filter(pk=old_sent.pk).exists()
    assert daily_task() == Event.objects.get(name="digest.daily").pk
