"""The live path: websocket authorisation, and events published by other processes (here
another thread with its own database connection) reaching a subscribed browser socket."""
import threading

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.test import Client

from sesamweb.asgi import application
from sesamweb.live.models import LiveEvent
from sesamweb.live.publish import prune_live_events, publish
from sesamweb.live.topics import register_topic
from sesamweb.accounts.roles import MANAGE, VIEW

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def embedded_layer(settings):
    """These tests cover the embedded path (no Redis) in both test tiers."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def socket_headers(user=None):
    """Headers of a browser socket, signed in as `user` (a real session cookie)."""
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if user is not None:
        client = Client()
        client.force_login(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return headers


def live_socket(headers):
    return WebsocketCommunicator(application, "/ws/live/", headers=headers)


def publish_from_another_thread(topic, event):
    def run():
        try:
            publish(topic, event)
        finally:
            connection.close()
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()


def run(coroutine_function):
    return async_to_sync(coroutine_function)()


def test_an_anonymous_socket_is_closed_with_4401():
    headers = socket_headers()
    async def scenario():
        ws = live_socket(headers)
        connected, _ = await ws.connect()
        assert connected
        assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    run(scenario)


def test_a_user_without_a_role_is_closed_with_4403(norole_user):
    headers = socket_headers(norole_user)
    async def scenario():
        ws = live_socket(headers)
        await ws.connect()
        assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    run(scenario)


def test_an_event_published_elsewhere_reaches_the_subscriber(operator_user):
    headers = socket_headers(operator_user)
    async def scenario():
        ws = live_socket(headers)
        assert (await ws.connect())[0]
        await ws.send_json_to({"subscribe": ["vms", "pool:3"]})
        assert await ws.receive_json_from(timeout=5) == {"subscribed": ["vms", "pool:3"]}
        from asgiref.sync import sync_to_async
        await sync_to_async(publish_from_another_thread, thread_sensitive=False)(
            "pool:3", {"type": "vm.changed", "uuid": "abc", "power_state": "Running"})
        message = await ws.receive_json_from(timeout=10)
        assert message == {"topic": "pool:3", "event": {"type": "vm.changed", "uuid": "abc", "power_state": "Running"}}
        await ws.disconnect()
    run(scenario)
    assert LiveEvent.objects.filter(topic="pool:3").count() == 1


def test_a_socket_receives_only_its_topics(operator_user):
    headers = socket_headers(operator_user)
    async def scenario():
        ws = live_socket(headers)
        await ws.connect()
        await ws.send_json_to({"subscribe": ["run:1"]})
        await ws.receive_json_from(timeout=5)
        from asgiref.sync import sync_to_async
        await sync_to_async(publish_from_another_thread, thread_sensitive=False)("run:2", {"type": "progress"})
        await sync_to_async(publish_from_another_thread, thread_sensitive=False)("run:1", {"type": "progress", "n": 1})
        assert (await ws.receive_json_from(timeout=10))["topic"] == "run:1"
        assert await ws.receive_nothing(timeout=0.5)
        await ws.disconnect()
    run(scenario)


def test_topics_needing_a_capability_are_refused_to_other_roles(auditor_user):
    register_topic("secrets-test", MANAGE)
    try:
        headers = socket_headers(auditor_user)
        async def scenario():
            ws = live_socket(headers)
            await ws.connect()
            await ws.send_json_to({"subscribe": ["secrets-test", "Not a topic!", "dashboard"]})
            replies = [await ws.receive_json_from(timeout=5) for _ in range(3)]
            assert {"error": "You are not allowed to follow this topic.", "topic": "secrets-test"} in replies
            assert {"error": "Unknown topic.", "topic": "Not a topic!"} in replies
            assert {"subscribed": ["dashboard"]} in replies
            await ws.disconnect()
        run(scenario)
    finally:
        register_topic("secrets-test", VIEW)


def test_publish_rejects_bad_topics_and_events():
    with pytest.raises(ValueError):
        publish("pool 3", {"type": "x"})
    with pytest.raises(ValueError):
        publish("vms", {"no": "type"})


def test_old_live_events_are_pruned():
    from datetime import timedelta

    from django.utils import timezone

    publish("vms", {"type": "old"})
    publish("vms", {"type": "new"})
    LiveEvent.objects.filter(payload__type="old").update(created=timezone.now() - timedelta(hours=1))
    assert prune_live_events() == 1
    assert list(LiveEvent.objects.values_list("payload__type", flat=True)) == ["new"]


def test_the_relay_waits_for_ids_committed_out_of_order():
    from sesamweb.live.relay import GAP_WAIT_SECONDS, IdTracker

    ids = IdTracker(10)
    assert ids.accept(12, now=0.0) and ids.last_id == 12 and set(ids.gaps) == {11}
    assert ids.accept(11, now=1.0)          # committed late: still delivered
    assert not ids.accept(11, now=1.0)      # but only once
    assert not ids.accept(12, now=1.0)
    ids.accept(15, now=2.0)
    ids.expire(now=2.0 + GAP_WAIT_SECONDS + 1)
    assert ids.gaps == {}                   # rolled back or pruned: stop asking


@pytest.mark.integration
def test_an_event_committed_after_a_newer_one_still_arrives(operator_user):
    if connection.vendor != "postgresql":
        pytest.skip("needs DATABASE_URL=postgres://... (SQLite serialises writers)")
    import queue

    from django.db import transaction

    headers = socket_headers(operator_user)
    release = threading.Event()
    holding = queue.Queue()

    def slow_publisher():
        try:
            with transaction.atomic():
                publish("runs", {"type": "slow"})  # takes the lower id, commits last
                holding.put(True)
                release.wait(10)
        finally:
            connection.close()

    async def scenario():
        from asgiref.sync import sync_to_async

        ws = live_socket(headers)
        await ws.connect()
        await ws.send_json_to({"subscribe": ["runs"]})
        await ws.receive_json_from(timeout=5)
        slow = threading.Thread(target=slow_publisher)
        slow.start()
        await sync_to_async(holding.get, thread_sensitive=False)(timeout=10)
        await sync_to_async(publish_from_another_thread, thread_sensitive=False)("runs", {"type": "fast"})
        assert (await ws.receive_json_from(timeout=10))["event"] == {"type": "fast"}
        release.set()
        await sync_to_async(slow.join, thread_sensitive=False)()
        assert (await ws.receive_json_from(timeout=10))["event"] == {"type": "slow"}
        await ws.disconnect()

    run(scenario)


def test_publish_works_from_a_thread_running_an_event_loop():
    async def inside_a_loop():
        publish("dashboard", {"type": "from-async"})  # e.g. called by sync code under a running loop
    run(inside_a_loop)
    assert LiveEvent.objects.filter(payload__type="from-async").exists()


def test_a_socket_from_another_site_is_refused(operator_user):
    headers = [(name, b"https://evil.example" if name == b"origin" else value) for name, value in socket_headers(operator_user)]

    async def scenario():
        connected, _ = await live_socket(headers).connect()
        assert not connected
    run(scenario)


@pytest.fixture
def recheck_every_event(monkeypatch):
    from sesamweb.live import consumers
    monkeypatch.setattr(consumers, "RECHECK_SECONDS", 0)


def change_elsewhere(change):
    """Run a change in another thread with its own database connection (another request)."""
    def run():
        try:
            change()
        finally:
            connection.close()
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()


def deactivate(user):
    user.is_active = False
    user.save()


def change_password(user):
    user.set_password("a new passphrase for alice")
    user.save()


def demote_to_auditor(user):
    from django.contrib.auth.models import Group
    user.groups.set([Group.objects.get_or_create(name="auditor")[0]])


def test_a_deactivated_user_loses_an_open_socket(operator_user, recheck_every_event):
    headers = socket_headers(operator_user)
    async def scenario():
        from asgiref.sync import sync_to_async
        ws = live_socket(headers)
        await ws.connect()
        await ws.send_json_to({"subscribe": ["run:7"]})
        await ws.receive_json_from(timeout=5)
        await sync_to_async(publish_from_another_thread, thread_sensitive=False)("run:7", {"type": "progress", "n": 1})
        assert (await ws.receive_json_from(timeout=10))["event"] == {"type": "progress", "n": 1}
        await sync_to_async(change_elsewhere, thread_sensitive=False)(lambda: deactivate(operator_user))
        await sync_to_async(publish_from_another_thread, thread_sensitive=False)("run:7", {"type": "progress", "n": 2})
        assert await ws.receive_output(timeout=10) == {"type": "websocket.close", "code": 4401}
    run(scenario)


def test_a_socket_whose_session_ended_is_closed(operator_user, recheck_every_event):
    headers = socket_headers(operator_user)
    async def scenario():
        from asgiref.sync import sync_to_async
        ws = live_socket(headers)
        await ws.connect()
        await ws.send_json_to({"subscribe": ["run:8"]})
        await ws.receive_json_from(timeout=5)
        # A password change ends every session made with the old password.
        await sync_to_async(change_elsewhere, thread_sensitive=False)(lambda: change_password(operator_user))
        await sync_to_async(publish_from_another_thread, thread_sensitive=False)("run:8", {"type": "progress", "n": 1})
        assert await ws.receive_output(timeout=10) == {"type": "websocket.close", "code": 4401}
    run(scenario)


def test_a_user_who_lost_a_capability_loses_the_topic_but_keeps_the_socket(admin_user,
                                                                           recheck_every_event):
    register_topic("secrets-test", MANAGE)
    try:
        headers = socket_headers(admin_user)
        async def scenario():
            from asgiref.sync import sync_to_async
            ws = live_socket(headers)
            await ws.connect()
            await ws.send_json_to({"subscribe": ["secrets-test", "dashboard"]})
            assert await ws.receive_json_from(timeout=5) == {"subscribed": ["secrets-test", "dashboard"]}
            await sync_to_async(change_elsewhere, thread_sensitive=False)(lambda: demote_to_auditor(admin_user))
            await sync_to_async(publish_from_another_thread, thread_sensitive=False)("secrets-test", {"type": "progress", "n": 1})
            assert await ws.receive_json_from(timeout=10) == {
                "error": "You are no longer allowed to follow this topic.", "topic": "secrets-test"}
            await sync_to_async(publish_from_another_thread, thread_sensitive=False)("dashboard", {"type": "progress", "n": 2})
            assert await ws.receive_json_from(timeout=10) == {"topic": "dashboard", "event": {"type": "progress", "n": 2}}
            await ws.disconnect()
        run(scenario)
    finally:
        register_topic("secrets-test", VIEW)


def test_every_topic_the_pages_follow_is_known_and_open_to_every_role(auditor_user):
    topics = ["dashboard", "pools", "vms", "runs", "pool:3", "run:5", "restore:7"]
    headers = socket_headers(auditor_user)
    async def scenario():
        ws = live_socket(headers)
        await ws.connect()
        await ws.send_json_to({"subscribe": topics})
        assert await ws.receive_json_from(timeout=5) == {"subscribed": topics}
        await ws.disconnect()
    run(scenario)


def test_unknown_topics_are_refused(admin_user):
    unknown = ["nosuch", "secrets", "pool", "pool:abc", "pool:¹", "vms:3", "restore", "run:" + "9" * 30]
    headers = socket_headers(admin_user)
    async def scenario():
        ws = live_socket(headers)
        await ws.connect()
        await ws.send_json_to({"subscribe": unknown + ["vms"]})
        replies = [await ws.receive_json_from(timeout=5) for _ in range(len(unknown) + 1)]
        assert replies[:-1] == [{"error": "Unknown topic.", "topic": topic} for topic in unknown]
        assert replies[-1] == {"subscribed": ["vms"]}
        await ws.disconnect()
    run(scenario)


MALFORMED_FRAMES = [
    {"text_data": "not json"},
    {"text_data": "{\"subscribe\": [\"vms\""},
    {"bytes_data": b"\x00\x01binary"},
    {"text_data": "[\"vms\"]"},
    {"text_data": "42"},
    {"text_data": "{}"},
    {"text_data": "{\"subscribe\": 5}"},
    {"text_data": "{\"subscribe\": {\"vms\": true}}"},
    {"text_data": "{\"unsubscribe\": [[\"vms\"], {\"a\": 1}]}"},
    {"text_data": "{\"subscribe\": [[\"vms\"]]}"},
    {"text_data": "{\"subscribe\": [\"vms\"]" + " " * 200_000 + "}"},  # too large, however valid
    {"text_data": "{\"subscribe\": " + "[" * 100_000 + "]" * 100_000 + "}"},
]


@pytest.mark.parametrize("frame", MALFORMED_FRAMES, ids=lambda frame: repr(frame)[:40])
def test_a_malformed_frame_is_answered_with_an_error_and_the_socket_keeps_working(operator_user, frame):
    headers = socket_headers(operator_user)
    async def scenario():
        ws = live_socket(headers)
        await ws.connect()
        await ws.send_to(**frame)
        reply = await ws.receive_json_from(timeout=5)
        assert set(reply) <= {"error", "topic"} and reply["error"]
        assert len(str(reply)) < 500  # the frame is not echoed back
        await ws.send_json_to({"subscribe": ["run:1"]})
        assert await ws.receive_json_from(timeout=5) == {"subscribed": ["run:1"]}
        from asgiref.sync import sync_to_async
        await sync_to_async(publish_from_another_thread, thread_sensitive=False)("run:1", {"type": "progress"})
        assert await ws.receive_json_from(timeout=10) == {"topic": "run:1", "event": {"type": "progress"}}
        await ws.disconnect()
    run(scenario)
