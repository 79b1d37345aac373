"""Lasting states reported once per crossing (backups/notifications.py check_store,
device_server_down; sesamweb/notify/conditions.py): a data store unreachable, a data store
nearly full, a device server down. Delivered to a real webhook receiver on loopback."""
import json
from datetime import datetime, timezone as dt_timezone

import pytest

from backups.notifications import check_store, check_stores, device_server_down, device_server_up
from backups.stores import create_store
from sesamweb.notify.delivery import send_due
from sesamweb.notify.models import Channel, Event, Rule
from sesamweb.notify.services import save_channel, save_rule
from tests.fixtures.receivers import HttpReceiver, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver():
    with HttpReceiver() as http:
        channel = save_channel(Channel(name="ops-hook", kind="webhook", config={"url": http.url + "/hook"}))
        save_rule(Rule(name="ops", event_names=["store.unreachable", "store.nearly_full", "device_server.down"]),
                  channels=[channel])
        yield http


def delivered(http, count):
    send_due()
    bodies = wait_for(lambda: http.ok() if len(http.ok()) >= count else None, message=f"{count} message(s)")
    return [json.loads(request["body"]) for request in bodies]


@pytest.fixture
def plain_store(tmp_path):
    return create_store(name="nas-1", path=str(tmp_path / "nas-1"), encrypted=False)


def test_an_unreachable_store_is_reported_once_and_again_after_it_came_back(plain_store, receiver, tmp_path):
    mounted, unmounted = tmp_path / "nas-1", tmp_path / "nas-1-away"
    mounted.rename(unmounted)                          # the share is gone
    assert check_store(plain_store).startswith("unreachable")
    check_stores()                                     # the watchdog, a minute later
    (body,) = delivered(receiver, 1)
    assert body["name"] == "store.unreachable" and body["severity"] == "critical"
    assert body["objects"]["store"]["name"] == "nas-1" and "not mounted?" in body["details"]["error"]
    assert body["link"].endswith(plain_store.get_absolute_url())
    unmounted.rename(mounted)
    assert check_store(plain_store).endswith("% full") and Event.objects.filter(name="store.unreachable").count() == 1
    mounted.rename(unmounted)
    check_store(plain_store)
    assert Event.objects.filter(name="store.unreachable").count() == 2   # a new lapse, a new report


def test_a_nearly_full_store_is_reported_once_per_crossing_of_the_threshold(plain_store, receiver, settings):
    settings.SESAM_STORE_NEARLY_FULL_PERCENT, settings.SESAM_STORE_NEARLY_FULL_HYSTERESIS = 0.001, 5
    for _ in range(3):
        check_store(plain_store)
    (body,) = delivered(receiver, 1)
    assert body["name"] == "store.nearly_full" and body["objects"]["store"]["name"] == "nas-1"
    assert body["details"]["threshold_percent"] == 0.001 and body["details"]["free_bytes"] > 0
    assert "% full" in body["title"] and "GiB free" in body["title"]
    settings.SESAM_STORE_NEARLY_FULL_PERCENT = 100      # above the usage, but within the hysteresis?
    used = body["details"]["used_percent"]
    if used >= 100 - 5:
        pytest.skip(f"this file system is {used}% full: cannot go below the re-arm level")
    check_store(plain_store)                            # well below: re-armed
    settings.SESAM_STORE_NEARLY_FULL_PERCENT = 0.001
    check_store(plain_store)
    assert Event.objects.filter(name="store.nearly_full").count() == 2


def test_a_device_server_down_is_delivered_once_until_it_is_back(receiver):
    heartbeat = datetime(2026, 12, 2, 6, 30, tzinfo=dt_timezone.utc)
    for _ in range(2):  # the watchdog sees it down twice
        device_server_down(name="ds-branch", site="Branch office", last_heartbeat=heartbeat,
                           url="/device-servers/4/")
    (body,) = delivered(receiver, 1)
    assert body["name"] == "device_server.down" and body["severity"] == "critical"
    assert body["title"] == "Device server ds-branch at Branch office is down: no heartbeat since 2026-12-02 06:30 UTC"
    assert body["objects"]["device_server"] == {"id": "ds-branch", "name": "ds-branch", "url": "/device-servers/4/",
                                                "site": "Branch office"}
    assert body["link"].endswith("/device-servers/4/") and "Device server: ds-branch" in body["text"]
    device_server_up(name="ds-branch")
    device_server_down(name="ds-branch", site="", last_heartbeat=None, url="")
    assert Event.objects.filter(name="device_server.down").count() == 2
    assert Event.objects.filter(name="device_server.down").latest("pk").title == \
        "Device server ds-branch is down: never heard from"
