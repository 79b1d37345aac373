"""Streams and limits: a counting semaphore shared by every worker process and host.

A *scope* is a plain string, `<kind>:<key>`: `job:12`, `store:3`, `host:<host uuid>`,
`pool-snapshot:<pool id>`. Its limit is looked up per kind (SCOPE_KINDS; a new kind is one
line there). A VM backup takes a slot in each of its scopes at once, or in none: `try_acquire`
returns None, or the first scope that is full (`Busy`, which says "host xcp-host-2: 2 of 2
busy").

A slot is a StreamSlot row with an expiry. The holder renews it while it runs (`Holding`
starts a heartbeat thread), releases it when it finishes, fails or is cancelled, and a worker
that died (SIGKILL, a lost host) loses its slots when their lease runs out: an expired row
no longer counts and the next acquirer deletes it.

Why database rows and not Redis: the limits must hold on the embedded default (SQLite, no
Redis) as on a large site, and the database is the one thing every worker, the web process
and a remote device server already share; the slots sit beside the VmBackup rows they
belong to (the watchdog releases the slots of a backup it fails, in the same database).
Slots are taken a few times per VM backup, far below what either database serves. One
implementation means one behaviour to test on both databases.

Counting and taking must be one step: acquirers lock the scopes' StreamScope rows in name
order (SELECT ... FOR UPDATE on PostgreSQL; SQLite runs one write transaction at a time, with
`transaction_mode: IMMEDIATE` in the settings) before they count. Expiry uses each worker's
clock, as the backup leases do: keep the hosts' clocks in sync (NTP).
"""
import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

log = logging.getLogger(__name__)


def lease_seconds() -> float:
    return float(getattr(settings, "SESAM_STREAM_LEASE_SECONDS", 60))


# -- scope kinds: the limit and the label of each ---------------------------------------------
def _job(key):
    from .models import BackupJob

    job = BackupJob.objects.filter(pk=key).values("name", "max_parallel_vms").first()
    return (job["max_parallel_vms"], f"job {job['name']}") if job else (1, f"job #{key}")


def _store(key):
    from .models import DataStore

    store = DataStore.objects.filter(pk=key).values("name", "max_parallel_streams").first()
    return (store["max_parallel_streams"], f"data store {store['name']}") if store else (1, f"data store #{key}")


def _host(key):
    from xenpools.models import Host, Pool

    host = Host.objects.filter(uuid=key).values("name", "pool__streams_per_host").first()
    if host is None:
        return Pool._meta.get_field("streams_per_host").default, f"host {key}"
    return host["pool__streams_per_host"], f"host {host['name']}"


def _pool_snapshot(key):
    from xenpools.models import Pool

    pool = Pool.objects.filter(pk=key).values("name", "snapshots_at_once").first()
    return (pool["snapshots_at_once"], f"pool {pool['name']}") if pool else (1, f"pool #{key}")


def _device(key):
    from .devices.models import DeviceServer

    server = DeviceServer.objects.filter(pk=key).values("name", "max_streams").first()
    return (server["max_streams"], f"device server {server['name']}") if server else (1, f"device server #{key}")


# kind -> function(key) giving (limit, label). A limit below 1 counts as 1.
SCOPE_KINDS = {
    "device": _device,
    "job": _job,
    "store": _store,
    "host": _host,
    "pool-snapshot": _pool_snapshot,
}


def describe(scope: str) -> tuple[int, str]:
    """(limit, label) of a scope, e.g. (2, "host xcp-host-2")."""
    kind, _, key = scope.partition(":")
    if kind not in SCOPE_KINDS:
        raise ValueError(f"unknown stream scope kind {kind!r} in {scope!r}")
    limit, label = SCOPE_KINDS[kind](key)
    return max(1, int(limit)), label


def limits_for(scopes) -> dict[str, int]:
    return {scope: describe(scope)[0] for scope in scopes}


@dataclass(frozen=True)
class Busy:
    """The scope that had no free slot."""

    scope: str
    held: int
    limit: int

    @property
    def label(self) -> str:
        try:
            return describe(self.scope)[1]
        except ValueError:
            return self.scope

    def __str__(self):
        return f"{self.label}: {self.held} of {self.limit} busy"


# -- the semaphore ------------------------------------------------------------------------------
def try_acquire(limits: dict[str, int], holder: str, *, owner: str = "", lease: float | None = None,
                now=None) -> Busy | None:
    """Take one slot in every scope of `limits` ({scope: limit}) for `holder`, or none.
    Returns None when taken (a holder that already has a slot keeps it, renewed), else the
    first full scope. Expired slots are deleted on the way."""
    from .models import StreamScope, StreamSlot

    now = now or timezone.now()
    expires = now + timedelta(seconds=lease if lease is not None else lease_seconds())
    names = sorted(limits)
    with transaction.atomic():
        StreamScope.objects.bulk_create([StreamScope(name=name) for name in names], ignore_conflicts=True)
        list(StreamScope.objects.select_for_update().filter(name__in=names).order_by("name").values_list("pk"))
        StreamSlot.objects.filter(scope__in=names, expires_at__lte=now).delete()
        mine = set(StreamSlot.objects.filter(scope__in=names, holder=holder).values_list("scope", flat=True))
        held = dict(StreamSlot.objects.filter(scope__in=names).exclude(holder=holder)
                    .values("scope").annotate(n=Count("pk")).values_list("scope", "n"))
        for name in names:
            if name not in mine and held.get(name, 0) >= max(1, limits[name]):
                return Busy(name, held[name], max(1, limits[name]))
        StreamSlot.objects.filter(scope__in=mine, holder=holder).update(expires_at=expires, owner=owner)
        StreamSlot.objects.bulk_create([StreamSlot(scope=name, holder=holder, owner=owner, acquired_at=now,
                                                   expires_at=expires) for name in names if name not in mine])
    return None


def renew(holder: str, *, lease: float | None = None, now=None) -> int:
    """Push the expiry of the holder's slots forward; returns how many it still holds."""
    from .models import StreamSlot

    now = now or timezone.now()
    return StreamSlot.objects.filter(holder=holder, expires_at__gt=now).update(
        expires_at=now + timedelta(seconds=lease if lease is not None else lease_seconds()))


def release(holder: str, scopes=None) -> int:
    """Give back the holder's slots (all, or those in `scopes`)."""
    from .models import StreamSlot

    slots = StreamSlot.objects.filter(holder=holder)
    if scopes is not None:
        slots = slots.filter(scope__in=list(scopes))
    return slots.delete()[0]


def held(scope: str, now=None) -> int:
    """Live slots in a scope."""
    from .models import StreamSlot

    return StreamSlot.objects.filter(scope=scope, expires_at__gt=now or timezone.now()).count()


def full(scopes, now=None) -> Busy | None:
    """The first of these scopes that has no free slot now (a look, not a reservation)."""
    for scope in sorted(scopes):
        limit = describe(scope)[0]
        count = held(scope, now)
        if count >= limit:
            return Busy(scope, count, limit)
    return None


class Holding:
    """Slots held by one holder, renewed by a heartbeat thread until released.

    `with Holding(holder, scopes):` or `.start()` / `.release()`."""

    def __init__(self, holder: str, *, lease: float | None = None):
        self.holder = holder
        self.lease = lease if lease is not None else lease_seconds()
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        def beat():
            try:
                while not self._stop.wait(self.lease / 3):
                    try:
                        if not renew(self.holder, lease=self.lease):
                            log.warning("stream slots of %s expired before they were renewed", self.holder)
                    except Exception:  # noqa: BLE001 - a database blip; the next beat tries again
                        log.exception("renewing the stream slots of %s failed", self.holder)
            finally:
                connection.close()      # this thread's own connection
        self._thread = threading.Thread(target=beat, name=f"slots-{self.holder}", daemon=True)
        self._thread.start()
        return self

    def release(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        release(self.holder)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.release()
