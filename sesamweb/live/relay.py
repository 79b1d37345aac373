"""The embedded live path's relay: LiveEvent rows -> this process's in-memory layer.

One relay per event loop (daphne runs one loop per process), started when the first
websocket connects and stopped a little after the last one leaves. It starts from the
newest row present, so browsers get what happens from then on (events are "something
changed, refresh", not history).
"""
import asyncio
import logging
import weakref

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db.models import Max

from .models import LiveEvent
from .publish import layer_message, prune_live_events
from .topics import group_name

logger = logging.getLogger(__name__)
POLL_SECONDS = 0.2
IDLE_STOP_SECONDS = 10
PRUNE_EVERY_SECONDS = 60
BATCH = 500

_relays: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Relay]" = weakref.WeakKeyDictionary()


@database_sync_to_async
def _newest_id():
    return LiveEvent.objects.aggregate(newest=Max("id"))["newest"] or 0


@database_sync_to_async
def _rows_after(last_id):
    return list(LiveEvent.objects.filter(id__gt=last_id).order_by("id").values_list("id", "topic", "payload")[:BATCH])


@database_sync_to_async
def _prune():
    return prune_live_events()


class Relay:
    def __init__(self):
        self.listeners = 0
        self.ready = asyncio.Event()
        self.task = None

    async def attach(self):
        self.listeners += 1
        if self.task is None or self.task.done():
            self.ready = asyncio.Event()
            self.task = asyncio.get_running_loop().create_task(self._run())
        await self.ready.wait()

    def detach(self):
        self.listeners = max(0, self.listeners - 1)

    async def _run(self):
        try:
            last_id = await _newest_id()
        finally:
            self.ready.set()
        layer = get_channel_layer()
        idle = 0.0
        since_prune = 0.0
        while True:
            delivered = 0
            try:
                rows = await _rows_after(last_id)
                for row_id, topic, payload in rows:
                    await layer.group_send(group_name(topic), layer_message(topic, payload))
                    last_id = row_id
                delivered = len(rows)
                if since_prune >= PRUNE_EVERY_SECONDS:
                    since_prune = 0.0
                    await _prune()
            except Exception:  # a locked or restarting database: try again next tick
                logger.exception("Live relay could not read events")
            if delivered < BATCH:  # a full batch means more are waiting: no pause
                await asyncio.sleep(POLL_SECONDS)
            since_prune += POLL_SECONDS
            idle = 0.0 if self.listeners else idle + POLL_SECONDS
            if idle >= IDLE_STOP_SECONDS:
                return


def relay_for_this_loop() -> Relay:
    loop = asyncio.get_running_loop()
    relay = _relays.get(loop)
    if relay is None:
        relay = _relays[loop] = Relay()
    return relay
