"""Keep the inventory current from XenAPI's event.from, and tell the browsers.

One EventFollower per pool (a thread each under `manage.py follow_events` or the django-q2
entry point). It starts from event.from's initial dump (every record of the subscribed
classes), writes it as a full sync, then applies each batch of events incrementally. On a
transport error it reconnects with backoff; PoolConnection.open fails over to the other
hosts, so a dead master is replaced by the survivor. While the pool cannot be reached it is
marked unhealthy, and healthy again after.
"""
from __future__ import annotations

import logging
import threading
import time
import xmlrpc.client

import XenAPI
from django.db import DatabaseError, close_old_connections, connection as db_connection, transaction
from django.utils import timezone

from sesamweb import notify

from .broadcast import publish_pool_state, publish_vm_changes
from .connection import TRANSPORT_ERRORS, PoolConnection, PoolConnectionLost, PoolError, PoolUnreachable
from .inventory import CLASSES, InventoryWriter, health_for
from .choices import PoolHealth
from .models import Pool

logger = logging.getLogger(__name__)

CLASS_BY_WIRE_NAME = {cls.lower(): cls for cls in CLASSES}
BACKOFF_START, BACKOFF_MAX = 1.0, 60.0
EVENT_GRACE = 10.0              # seconds an event.from call may exceed its own timeout
QUICK_RETRY_INTERVAL = 30.0     # at most one immediate reconnect per interval, then backoff


class EventFollower:
    def __init__(self, pool: Pool, *, stop: threading.Event | None = None, event_timeout: float = 30.0):
        self.pool = pool
        self.stop = stop or threading.Event()
        self.event_timeout = event_timeout
        self.records: dict = {}
        self.batches = 0          # event batches applied (for tests and logs)

    def run(self):
        """Follow until `stop` is set. Never raises for pool trouble: it retries."""
        backoff = BACKOFF_START
        last_quick_retry = float("-inf")
        try:
            while not self.stop.is_set():
                close_old_connections()
                try:
                    self.pool.refresh_from_db()
                    # A master that dies silently leaves event.from waiting: give up on a call
                    # a little after the event timeout, then fail over.
                    rpc_timeout = self.event_timeout + EVENT_GRACE
                    with PoolConnection.open(self.pool, rpc_timeout=rpc_timeout) as connection:
                        backoff = BACKOFF_START
                        self.follow(connection)
                except (PoolConnectionLost, *TRANSPORT_ERRORS, xmlrpc.client.Fault, XenAPI.Failure) as exc:
                    # A working connection broke (often: the master died or changed). Reconnect at
                    # once, which fails over to the survivors; only if that fails is the pool unhealthy.
                    logger.info("pool %s: connection lost (%s); reconnecting", self.pool.name, exc)
                    if time.monotonic() - last_quick_retry > QUICK_RETRY_INTERVAL:
                        last_quick_retry = time.monotonic()
                        continue
                    self._mark_unhealthy(PoolUnreachable(f"lost the connection to pool {self.pool.name}: {exc}"))
                except PoolError as exc:
                    self._mark_unhealthy(exc)
                except DatabaseError as exc:
                    # e.g. "database is locked" under load: start again from a fresh dump.
                    logger.warning("pool %s: database error, following again: %s", self.pool.name, exc)
                except Exception as exc:  # noqa: BLE001 - a long-running follower must not die
                    logger.exception("pool %s: unexpected error while following events", self.pool.name)
                    self._mark_unhealthy(PoolError(f"unexpected error while following events: {exc!r}"))
                if self.stop.wait(backoff):
                    break
                backoff = min(backoff * 2, BACKOFF_MAX)
        finally:
            db_connection.close()

    def follow(self, connection: PoolConnection):
        """Initial dump, then incremental batches, until stop or a connection problem."""
        token = self._initial_dump(connection)
        while not self.stop.is_set():
            try:
                batch = getattr(connection.xenapi.event, "from")(list(CLASS_BY_WIRE_NAME), token, self.event_timeout)
            except XenAPI.Failure as failure:
                if failure.details and failure.details[0] == "EVENTS_LOST":
                    token = self._initial_dump(connection)
                    continue
                raise
            token = batch["token"]
            self._apply_events(batch["events"])

    def _initial_dump(self, connection):
        batch = getattr(connection.xenapi.event, "from")(list(CLASS_BY_WIRE_NAME), "", 0.0)
        self.records = {cls: {} for cls in CLASSES}
        for event in batch["events"]:
            cls = CLASS_BY_WIRE_NAME.get(event["class"].lower())
            if cls and event.get("operation") != "del" and "snapshot" in event:
                self.records[cls][event["ref"]] = event["snapshot"]
        pins = connection.pin_member_certificates(self.records["host"])
        with transaction.atomic():
            if pins:
                self.pool.fingerprints = {**self.pool.fingerprints, **pins}
                self.pool.save(update_fields=["fingerprints"])
            result = InventoryWriter(self.pool).apply(self.records)
            self.pool.last_sync = timezone.now()
            self.pool.save(update_fields=["last_sync"])
        self.pool.mark_healthy()
        logger.info("pool %s: following events from %s", self.pool.name, connection.master_address)
        publish_vm_changes(self.pool, result.vm_changes)
        publish_pool_state(self.pool)
        return batch["token"]

    def _apply_events(self, events):
        changed: dict = {}
        for event in events:
            cls = CLASS_BY_WIRE_NAME.get(event["class"].lower())
            if cls is None:
                continue
            if event["operation"] == "del":
                self.records[cls].pop(event["ref"], None)
            elif "snapshot" in event:
                self.records[cls][event["ref"]] = event["snapshot"]
            changed.setdefault(cls, set()).add(event["ref"])
        if not changed:
            return
        with transaction.atomic():
            result = InventoryWriter(self.pool).apply(self.records, changed=changed)
        self.batches += 1
        publish_vm_changes(self.pool, result.vm_changes)
        if result.pool_changed:
            publish_pool_state(self.pool)

    def _mark_unhealthy(self, error):
        logger.warning("pool %s: %s", self.pool.name, error)
        was = self.pool.health
        self.pool.mark_unhealthy(error, health_for(error))
        if was != self.pool.health:
            publish_pool_state(self.pool)
        if was in (PoolHealth.HEALTHY, PoolHealth.UNKNOWN) and self.pool.health not in (PoolHealth.HEALTHY, PoolHealth.UNKNOWN):
            notify.emit("pool.unreachable", "critical", title=f"Pool {self.pool.name}: {self.pool.get_health_display()}",
                        objects={"pool": {"id": self.pool.pk, "name": self.pool.name, "url": self.pool.get_absolute_url()},
                                 "host": {"name": self.pool.master_address or self.pool.address}},
                        details={"error": str(error), "health": self.pool.health})


def follow_pools(pools, stop: threading.Event, *, event_timeout: float = 30.0):
    """Follow several pools, one thread each, until `stop` is set."""
    threads = []
    for pool in pools:
        follower = EventFollower(pool, stop=stop, event_timeout=event_timeout)
        thread = threading.Thread(target=follower.run, name=f"follow-{pool.name}", daemon=True)
        thread.start()
        threads.append(thread)
    while not stop.wait(1) and any(thread.is_alive() for thread in threads):
        pass
    # A follower blocked in event.from (up to event_timeout) notices `stop` only when the call
    # returns; the call only reads, so after a short grace it is abandoned (daemon threads).
    for thread in threads:
        thread.join(timeout=2)
