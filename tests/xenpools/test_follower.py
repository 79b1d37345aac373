"""The event follower against the simulator: incremental changes, live events, failover."""
import threading
import time

import pytest

from sesamweb.live.models import LiveEvent
from xenpools.choices import PoolHealth
from xenpools.follower import EventFollower
from xenpools.models import VM, Host, Pool

from .xenapi_helpers import vm_by_power_state, xenapi_session

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def follow():
    """Run an EventFollower in a thread; stopped at teardown."""
    started = []

    def start(pool):
        follower = EventFollower(Pool.objects.get(pk=pool.pk), event_timeout=0.5)
        thread = threading.Thread(target=follower.run, daemon=True)
        thread.start()
        started.append((follower, thread))
        return follower

    yield start
    for follower, thread in started:
        follower.stop.set()
        thread.join(timeout=20)


def eventually(check, timeout=30.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def vm_events(uuid):
    return [e.payload for e in LiveEvent.objects.filter(topic="vms") if e.payload.get("uuid") == uuid]


def test_the_follower_sees_a_vm_start_and_publishes_it(sim, make_pool, follow):
    pool = make_pool(sim, sync=False)
    follower = follow(pool)
    eventually(lambda: VM.objects.filter(pool=pool).exists() and follower.records, what="the initial dump")
    with xenapi_session(sim.url) as x:
        ref, record = vm_by_power_state(x, "Halted")
        x.VM.start(ref, False, False)
        host_ref = x.VM.get_resident_on(ref)
        host_name = x.host.get_name_label(host_ref)

    eventually(lambda: VM.objects.get(pool=pool, uuid=record["uuid"]).power_state == "Running", what="the VM row update")
    vm = VM.objects.get(pool=pool, uuid=record["uuid"])
    assert vm.host.name == host_name
    event = eventually(lambda: [e for e in vm_events(record["uuid"]) if e["power_state"] == "Running"],
                       what="the live event")[-1]
    assert event == {**event, "type": "vm", "id": vm.pk, "pool": pool.pk, "host": host_name, "removed": False}


def test_the_follower_marks_a_deleted_vm_removed(sim, make_pool, follow):
    pool = make_pool(sim)
    follower = follow(pool)
    eventually(lambda: follower.records, what="the initial dump")
    with xenapi_session(sim.url) as x:
        ref, record = vm_by_power_state(x, "Halted")
        x.VM.destroy(ref)

    eventually(lambda: VM.objects.get(pool=pool, uuid=record["uuid"]).removed_at, what="the VM marked removed")
    eventually(lambda: any(e["removed"] for e in vm_events(record["uuid"])), what="the removal event")


def test_the_follower_fails_over_to_the_surviving_host(sim, make_pool, follow):
    pool = make_pool(sim)
    follower = follow(pool)
    eventually(lambda: follower.records, what="the initial dump")
    with xenapi_session(sim.url) as x:
        master = x.pool.get_master(x.pool.get_all()[0])
    sim.control.fail_host(master)

    eventually(lambda: Pool.objects.get(pk=pool.pk).master_address == "127.0.0.2", what="the switch to the new master")
    dead = Host.objects.get(pool=pool, address="127.0.0.1").pk

    def pool_events():
        return [e.payload for e in LiveEvent.objects.filter(topic=f"pool:{pool.pk}")]

    eventually(lambda: any(h["id"] == dead and not h["live"] for e in pool_events() for h in e["hosts"]),
               what="the dead host published as down")
    assert {e["health"] for e in pool_events()} == {PoolHealth.HEALTHY}      # the survivor took over without an outage
    with xenapi_session(sim.member_url(1)) as x:
        ref, record = vm_by_power_state(x, "Halted")
        x.VM.start(ref, False, False)
    eventually(lambda: VM.objects.get(pool=pool, uuid=record["uuid"]).power_state == "Running",
               what="an event seen through the new master")
    assert Pool.objects.get(pk=pool.pk).health == PoolHealth.HEALTHY


def test_the_follower_marks_an_unreachable_pool_unhealthy_and_healthy_again(sim, make_pool, follow):
    pool = make_pool(sim)
    follower = follow(pool)
    eventually(lambda: follower.records, what="the initial dump")
    sim.stop()
    eventually(lambda: Pool.objects.get(pk=pool.pk).health == PoolHealth.UNREACHABLE, what="the pool marked unreachable")
    sim.start()
    eventually(lambda: Pool.objects.get(pk=pool.pk).health == PoolHealth.HEALTHY, timeout=30, what="the pool healthy again")
