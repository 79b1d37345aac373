"""The embedded live path's relay: LiveEvent rows -> this process's in-memory layer.

One relay per event loop (daphne runs one loop per process), started when the first
websocket connects and stopped a little after the last one leaves. It starts from the
newest row present, so browsers get what happens from then on (events are "something
changed, refresh", not history).

Row ids are not always committed in order: on PostgreSQL a publisher may take id 10, and
commit after another publisher's id 11 is already visible. When the relay sees a jump in
ids it remembers the missing ones and keeps asking for them for GAP_WAIT_SECONDS, so a late
commit is still delivered (SQLite serialises writers, so it never has gaps of this kind).
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
GAP_WAIT_SECONDS = 10
MAX_GAPS = 1000
BATCH = 500

_relays: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Relay]" = weakref.WeakKeyDictionary()


@database_sync_to_async
def _newest_id():
    return LiveEvent.objects.aggregate(newest=Max("id"))["newest"] or 0


@database_sync_to_async
def _rows_after(last_id, gaps):
    rows = LiveEvent.objects.filter(id__gt=last_id).order_by("id").values_list("id", "topic", "payload")[:BATCH]
    late = LiveEvent.objects.filter(id__in=list(gaps)).values_list("id", "topic", "payload") if gaps else []
    return list(late) + list(rows)


class IdTracker:
    """The newest id delivered, plus the ids skipped below it that may still be committed."""

    def __init__(self, last_id):
        self.last_id = last_id
        self.gaps = {}  # id -> loop time after which we stop waiting for it

    def accept(self, row_id, now) -> bool:
        """Record a fetched row; False if it was already delivered."""
        if row_id in self.gaps:
            del self.gaps[row_id]
            return True
        if row_id <= self.last_id:
            return False
        for missing in range(self.last_id + 1, min(row_id, self.last_id + 1 + MAX_GAPS)):
            self.gaps[missing] = now + GAP_WAIT_SECONDS
        self.last_id = row_id
        return True

    def expire(self, now):
        self.gaps = {row_id: until for row_id, until in self.gaps.items() if until > now}


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
            ids = IdTracker(await _newest_id())
        finally:
            self.ready.set()
        loop = asyncio.get_running_loop()
        layer = get_channel_layer()
        idle = 0.0
        since_prune = 0.0
        while True:
            delivered = 0
            try:
                rows = await _rows_after(ids.last_id, ids.gaps)
                now = loop.time()
                for row_id, topic, payload in rows:
                    if ids.accept(row_id, now):
                        await layer.group_send(group_name(topic), layer_message(topic, payload))
                ids.expire(now)
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
