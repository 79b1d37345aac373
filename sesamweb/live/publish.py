"""Live updates from any process to the browsers watching.

    from sesamweb.live.publish import publish
    publish("vms", {"type": "vm.changed", "uuid": vm.uuid, "power_state": "Running"})

Topics: "vms", "pools", "pool:<id>", "runs", "run:<id>", "dashboard", "task:<id>" (and
any name registered with register_topic). An event is a small JSON-able dict with a "type".
Browsers subscribe over the `ws/live/` websocket (consumers.LiveConsumer) and receive
{"topic": ..., "event": {...}}.

Two transports, one API:

* REDIS_URL set (channels_redis layer): publish() does a group_send on the shared layer;
  every web process receives it directly.
* Embedded default (in-memory layer, which cannot cross processes): publish() inserts a
  LiveEvent row. Each web (ASGI) process runs one relay (relay.py), started by the first
  websocket that connects, which polls new rows about every 200 ms and group_sends them on
  its own in-memory layer. Workers, the inventory follower and management commands are
  separate processes and reach the browser this way. Rows older than LIVE_EVENT_RETENTION
  are pruned.

publish() is for synchronous code (views, services, tasks, commands). Called from a thread
that runs an event loop, it hands the work to a short-lived helper thread (the ORM and
async_to_sync both refuse to run there). It never raises because a live update could not
be delivered: the change itself has already happened.
"""
import asyncio
import logging
import threading
from datetime import timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

from .models import LiveEvent
from .topics import group_name, is_valid_topic, register_topic  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)
LIVE_EVENT_RETENTION = timedelta(minutes=5)
_PRUNE_EVERY = 500
_published = 0


def uses_shared_layer(layer=None) -> bool:
    """True when the channel layer itself crosses processes (anything but in-memory)."""
    layer = layer or get_channel_layer()
    return layer is not None and type(layer).__name__ != "InMemoryChannelLayer"


def layer_message(topic: str, event: dict) -> dict:
    return {"type": "live.event", "topic": topic, "event": event}


def publish(topic: str, event: dict) -> None:
    if not is_valid_topic(topic):
        raise ValueError(f"Invalid live topic {topic!r}")
    if not isinstance(event, dict) or "type" not in event:
        raise ValueError("A live event is a dict with a 'type' key")
    if _event_loop_running_here():
        helper = threading.Thread(target=_deliver_from_helper_thread, args=(topic, event), name="live-publish")
        helper.start()
        helper.join()
    else:
        _deliver(topic, event)


def _deliver(topic, event):
    try:
        layer = get_channel_layer()
        if uses_shared_layer(layer):
            async_to_sync(layer.group_send)(group_name(topic), layer_message(topic, event))
        else:
            LiveEvent.objects.create(topic=topic, payload=event)
            _prune_now_and_then()
    except Exception:  # the change is done; a lost notification must not undo it
        logger.exception("Could not publish live event on %s", topic)


def _deliver_from_helper_thread(topic, event):
    from django.db import connection

    try:
        _deliver(topic, event)
    finally:
        connection.close()


def _event_loop_running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def prune_live_events(now=None) -> int:
    cutoff = (now or timezone.now()) - LIVE_EVENT_RETENTION
    deleted, _ = LiveEvent.objects.filter(created__lt=cutoff).delete()
    return deleted


def _prune_now_and_then():
    global _published
    _published += 1
    if _published % _PRUNE_EVERY == 0:
        prune_live_events()
