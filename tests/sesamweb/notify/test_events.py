"""emit() and rules: which channels hear about which event, per-job overrides, quiet
hours; events raised by the console itself (configuration changes, sign-in lockouts)."""
import datetime

import pytest
from django.utils import timezone

from sesamweb import notify
from sesamweb.notify.choices import DeliveryStatus
from sesamweb.notify.models import Delivery, Event

from .conftest import RUN_FAILED_OBJECTS, emit_run_failed, make_channel, route
from tests.fixtures.receivers import free_port

pytestmark = pytest.mark.django_db


def channels_of(event):
    return sorted(d.channel.name for d in Delivery.objects.filter(event=event))


@pytest.fixture
def three_channels():
    return [make_channel("webhook", name, url=f"http://127.0.0.1:9/{name}", secret="k" * 20)
            for name in ("ops", "pager", "jobowner")]


def test_rules_match_by_event_name_and_minimum_severity(three_channels):
    ops, pager, _ = three_channels
    route(ops, events=["run.failed", "run.succeeded"])
    route(pager, min_severity="critical")
    failed = emit_run_failed()
    damaged = notify.emit("verify.damaged", "critical", title="damaged points")
    succeeded = notify.emit("run.succeeded", "info", title="all good")
    assert channels_of(failed) == ["ops"]
    assert channels_of(damaged) == ["pager"]
    assert channels_of(succeeded) == ["ops"]
    assert failed.object_keys == ["pool:3", "job:12", "store:1", "run:40", "vm:u-1", "vm:u-2"]


def test_a_channel_named_by_two_rules_gets_one_delivery_and_a_disabled_one_none(three_channels):
    ops, pager, _ = three_channels
    route(ops, pager)
    route(ops, events=["run.failed"])
    pager.enabled = False
    pager.save()
    assert channels_of(emit_run_failed()) == ["ops"]


def test_a_per_job_rule_overrides_the_general_rules_for_that_job_only(three_channels):
    ops, _, owner = three_channels
    route(ops, events=["run.failed"])
    route(owner, events=["run.failed"], object_key="job:12")
    assert channels_of(emit_run_failed()) == ["jobowner"]
    other_job = notify.emit("run.failed", "error", title="other", objects={"job": {"id": 13, "name": "weekly"}})
    assert channels_of(other_job) == ["ops"]


def test_a_per_job_rule_without_channels_silences_that_job(three_channels):
    ops, _, _ = three_channels
    route(ops, events=["run.failed", "run.warning"])
    route(events=["run.warning"], object_key="job:12", name="quiet job")
    assert channels_of(notify.emit("run.warning", "warning", title="w", objects={"job": {"id": 12}})) == []
    assert channels_of(emit_run_failed()) == ["ops"]


def test_quiet_hours_hold_deliveries_until_they_end_except_critical(three_channels, settings):
    ops, _, _ = three_channels
    now = timezone.localtime()
    start = (now - datetime.timedelta(hours=1)).time().replace(second=0, microsecond=0)
    end = (now + datetime.timedelta(hours=2)).time().replace(second=0, microsecond=0)
    route(ops, quiet_start=start, quiet_end=end)
    held = Delivery.objects.get(event=emit_run_failed())
    assert held.held_for_quiet_hours and held.status == DeliveryStatus.PENDING
    assert timezone.localtime(held.next_attempt_at).time().replace(second=0) == end
    assert held.next_attempt_at > timezone.now() + datetime.timedelta(hours=1, minutes=50)
    critical = Delivery.objects.get(event=notify.emit("pool.unreachable", "critical", title="pool down"))
    assert not critical.held_for_quiet_hours and critical.next_attempt_at <= timezone.now()


def test_quiet_hours_across_midnight():
    from sesamweb.notify.models import Rule

    rule = Rule(quiet_start=datetime.time(22, 0), quiet_end=datetime.time(6, 30))
    tz = timezone.get_current_timezone()
    late = datetime.datetime(2026, 12, 1, 23, 15, tzinfo=tz)
    assert rule.quiet_until(late) == datetime.datetime(2026, 12, 2, 6, 30, tzinfo=tz)
    early = datetime.datetime(2026, 12, 2, 5, 0, tzinfo=tz)
    assert rule.quiet_until(early) == datetime.datetime(2026, 12, 2, 6, 30, tzinfo=tz)
    assert rule.quiet_until(datetime.datetime(2026, 12, 2, 12, 0, tzinfo=tz)) is None


def test_emit_returns_at_once_with_a_receiver_that_is_down():
    down = make_channel("webhook", url=f"http://127.0.0.1:{free_port()}/", secret="k" * 20)
    route(down)
    event = emit_run_failed()
    delivery = Delivery.objects.get(event=event)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 0)   # nothing tried in emit
    assert event.about == RUN_FAILED_OBJECTS


def test_emit_queues_the_worker_after_the_transaction_commits(django_capture_on_commit_callbacks):
    from django_q.models import OrmQ

    route(make_channel("webhook", url="http://127.0.0.1:9/", secret="k" * 20), events=["run.failed"])
    with django_capture_on_commit_callbacks(execute=True):
        emit_run_failed()
    assert [q.task["func"] for q in OrmQ.objects.all()][-1] == "sesamweb.notify.tasks.send_due_deliveries"


def test_emit_never_raises_into_the_caller(monkeypatch):
    from sesamweb.notify import events

    monkeypatch.setattr(events, "plan_deliveries", lambda event: 1 / 0)
    assert emit_run_failed() is None
    assert not Event.objects.exists()          # rolled back: no half-recorded event


def test_a_configuration_change_raises_config_changed(admin_user, django_capture_on_commit_callbacks):
    from sesamweb.accounts.roles import Role
    from sesamweb.accounts.services import create_user
    from sesamweb.audit.log import acting_as

    ops = make_channel("webhook", "ops", url="http://127.0.0.1:9/", secret="k" * 20)
    route(ops, events=["config.changed"])
    with django_capture_on_commit_callbacks(execute=True), acting_as(admin_user, source="cli"):
        create_user("newbie", role=Role.OPERATOR, password="a-long-password-1")
    event = Event.objects.filter(name="config.changed").latest("created")
    assert event.title == "Configuration changed: create of newbie by alice-admin"
    assert event.details["action"] == "create" and event.about["target"]["url"].startswith("/audit/")
    assert channels_of(event) == ["ops"]


def test_the_sign_in_that_locks_an_account_raises_login_failures_once(settings, client):
    settings.SESAM_LOGIN_MAX_FAILURES = 3
    for _ in range(5):
        client.post("/sign-in/", {"username": "mallory", "password": "wrong-password"})
    events = list(Event.objects.filter(name="login.failures"))
    assert len(events) == 1
    assert "3 failed sign-ins" in events[0].title and "mallory" in events[0].title
