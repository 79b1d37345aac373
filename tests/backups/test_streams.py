"""The stream semaphore (backups/streams.py): limits hold across concurrent acquirers, slots
come back on release and on expiry, several scopes are taken together or not at all.

Runs on SQLite by default and on PostgreSQL with DATABASE_URL (make test runs both)."""
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from backups import streams
from backups.devices.models import DeviceServer
from backups.models import BackupJob, DataStore, StreamSlot
from xenpools.models import Host, Pool

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_full_scope_refuses_until_a_slot_is_released():
    limits = {"test:a": 2}
    assert streams.try_acquire(limits, "h1") is None
    assert streams.try_acquire(limits, "h2") is None
    busy = streams.try_acquire(limits, "h3")
    assert (busy.scope, busy.held, busy.limit) == ("test:a", 2, 2)
    assert streams.release("h1") == 1
    assert streams.try_acquire(limits, "h3") is None
    assert streams.held("test:a") == 2


def test_a_holder_asking_again_keeps_its_one_slot():
    assert streams.try_acquire({"test:a": 1}, "h1") is None
    assert streams.try_acquire({"test:a": 1}, "h1") is None
    assert StreamSlot.objects.filter(scope="test:a").count() == 1


def test_several_scopes_are_taken_together_or_not_at_all():
    assert streams.try_acquire({"test:host": 1}, "other") is None
    busy = streams.try_acquire({"test:job": 4, "test:store": 4, "test:host": 1}, "vm")
    assert busy.scope == "test:host"
    assert not StreamSlot.objects.filter(holder="vm").exists()      # no partial holding
    streams.release("other")
    assert streams.try_acquire({"test:job": 4, "test:store": 4, "test:host": 1}, "vm") is None
    assert StreamSlot.objects.filter(holder="vm").count() == 3


def test_an_expired_slot_no_longer_counts_and_renewing_keeps_it():
    t0 = timezone.now()
    assert streams.try_acquire({"test:a": 1}, "dead", lease=10, now=t0) is None
    # The dead holder never renews; 11 s later its slot is free again.
    assert streams.try_acquire({"test:a": 1}, "next", lease=10, now=t0 + timedelta(seconds=5)) is not None
    assert streams.try_acquire({"test:a": 1}, "next", lease=10, now=t0 + timedelta(seconds=11)) is None
    assert not StreamSlot.objects.filter(holder="dead").exists()
    # A holder that renews keeps its slot past the first lease.
    assert streams.try_acquire({"test:c": 1}, "alive", lease=10, now=t0) is None
    assert streams.renew("alive", lease=10, now=t0 + timedelta(seconds=8)) >= 1
    assert streams.try_acquire({"test:c": 1}, "late", lease=10, now=t0 + timedelta(seconds=12)) is not None
    # A slot that already expired is not brought back by renewing.
    assert streams.renew("dead", lease=10, now=t0 + timedelta(seconds=30)) == 0


def test_limits_come_from_the_store_the_pool_and_the_host():
    store = DataStore.objects.create(name="s", path="/srv/s", max_parallel_streams=3)
    job = BackupJob.objects.create(name="nightly", store=store, max_parallel_vms=5)
    assert streams.describe(f"store:{store.pk}") == (3, "data store s")
    assert streams.describe(f"job:{job.pk}") == (5, "job nightly")
    pool = Pool.objects.create(name="p1", address="10.0.0.1", streams_per_host=4, snapshots_at_once=2)
    Host.objects.create(pool=pool, uuid="h-uuid", ref="OpaqueRef:h", name="xcp-host-2")
    assert streams.describe("host:h-uuid") == (4, "host xcp-host-2")
    assert streams.describe(f"pool-snapshot:{pool.pk}") == (2, "pool p1")
    assert streams.describe("host:unknown")[0] == 2          # not in the inventory yet: the default
    server = DeviceServer.objects.create(name="branch", site="B", max_streams=3)
    assert streams.describe(f"device:{server.pk}") == (3, "device server branch")
    with pytest.raises(ValueError):
        streams.describe("nonsense:1")


def test_busy_says_which_host_is_full():
    pool = Pool.objects.create(name="p1", address="10.0.0.1", streams_per_host=2)
    Host.objects.create(pool=pool, uuid="h2", ref="OpaqueRef:h", name="xcp-host-2")
    limits = streams.limits_for(["host:h2"])
    streams.try_acquire(limits, "a")
    streams.try_acquire(limits, "b")
    assert str(streams.try_acquire(limits, "c")) == "host xcp-host-2: 2 of 2 busy"
    assert str(streams.full(["host:h2"])) == "host xcp-host-2: 2 of 2 busy"


def test_concurrent_acquirers_never_exceed_the_limit():
    """Eight threads, each on its own database connection, take and give back slots of a
    scope limited to 3; how many hold one at a time is counted outside the database."""
    limit, threads, rounds = 3, 8, 12
    lock = threading.Lock()
    state = {"now": 0, "max": 0, "taken": 0}
    errors = []
    gate = threading.Barrier(threads)

    def worker(index):
        try:
            gate.wait(timeout=30)
            done = 0
            while done < rounds:
                if streams.try_acquire({"test:shared": limit}, f"t{index}") is not None:
                    continue
                with lock:
                    state["now"] += 1
                    state["max"] = max(state["max"], state["now"])
                    state["taken"] += 1
                with lock:
                    state["now"] -= 1
                streams.release(f"t{index}")
                done += 1
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=240)
    assert not errors, errors
    assert state["taken"] == threads * rounds
    assert 1 <= state["max"] <= limit
    assert streams.held("test:shared") == 0


def test_concurrent_acquirers_hold_at_most_the_limit_in_the_database():
    """Every acquirer checks, while it holds its slot, how many slots the database shows:
    never more than the limit."""
    limit, threads, rounds = 2, 6, 8
    seen, errors = [], []
    gate = threading.Barrier(threads)

    def worker(index):
        try:
            gate.wait(timeout=30)
            done = 0
            while done < rounds:
                if streams.try_acquire({"test:db": limit}, f"d{index}") is None:
                    seen.append(StreamSlot.objects.filter(scope="test:db").count())
                    streams.release(f"d{index}")
                    done += 1
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=240)
    assert not errors, errors
    assert len(seen) == threads * rounds
    assert max(seen) <= limit


def test_holding_renews_its_slots_until_released():
    holding = streams.Holding("renewed", lease=0.9)
    assert streams.try_acquire({"test:r": 1}, "renewed", lease=0.9) is None
    holding.start()
    try:
        first = StreamSlot.objects.get(holder="renewed").expires_at
        deadline = timezone.now() + timedelta(seconds=30)
        while StreamSlot.objects.get(holder="renewed").expires_at == first:
            assert timezone.now() < deadline, "the heartbeat never renewed the slot"
            threading.Event().wait(0.05)
    finally:
        holding.release()
    assert not StreamSlot.objects.filter(holder="renewed").exists()
