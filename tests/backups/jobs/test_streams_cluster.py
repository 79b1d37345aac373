"""Streams and limits under a real django-q2 cluster (`manage.py qcluster`, 4 workers): the
number of exports a pool host serves at once, the streams of a data store and the VMs of a
job stay within their limits. What is measured is the simulator's own log of the transfers
it served (xapisim/transfer_log.py: one interval per export, with the serving host), not
the engine's counters. Exports are rate-limited per stream, as a real xapi export is by its
disk and network, so that backups overlap when the limits allow it.

A worker SIGKILLed while it holds a slot loses it when its lease runs out (a short lease in
this test), and the VM waiting behind it then gets the host.
"""
import os
import signal
import time

import pytest
from django.db import connection

from backups import streams
from backups.choices import RunStatus
from backups.jobs.choices import SelectionMode
from backups.jobs.runs import start_job_run
from backups.jobs.schedules import ensure_watchdog
from backups.models import BackupRun, StreamSlot
from xenpools.models import Host, Pool
from tests.fixtures.cluster import wait_for

pytestmark = pytest.mark.slow

MiB = 1 << 20
MASTER_VMS, MEMBER_VMS = 4, 2
RATE = 2 * MiB                # bytes per second per export stream


@pytest.fixture
def sim(sim_factory):
    """Two hosts; four VMs on the shared SR (exported by the master, the host asked, as
    xapi's export.ml does) and two on xcp-host-2's local SR (exported by xcp-host-2 after a
    302). Each has 8 MiB of data to send."""
    handle = sim_factory()
    for i in range(MASTER_VMS + MEMBER_VMS):
        local = i >= MASTER_VMS
        handle.control.create_vm(f"stream-vm-{i}", [16 * MiB], written_blocks=128,
                                 sr="Local storage on xcp-host-2" if local else None,
                                 host=1 if local else None)
    return handle


def max_overlap(intervals):
    """The most intervals open at one time (an interval ending when another starts does not overlap it)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                    key=lambda event: (event[0], event[1]))
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def exports_by_host(sim):
    log = [entry for entry in sim.control.transfer_log() if entry["kind"] == "/export"]
    assert all(entry["end"] is not None for entry in log)
    hosts = {}
    for entry in log:
        hosts.setdefault(entry["host"], []).append((entry["start"], entry["end"]))
    return hosts


def run_job_in_cluster(qcluster, job, seen_waiting):
    """Start the job (its VMs go to the cluster's workers) and wait for the run, noting the
    "waiting for a stream" texts the run page shows meanwhile."""
    qcluster.start(SESAM_TEST_WORKERS="4")
    run = start_job_run(job)

    def finished():
        seen_waiting.update(t for t in run.vm_backups.exclude(waiting="").values_list("waiting", flat=True))
        return BackupRun.objects.get(pk=run.pk).is_finished
    qcluster.wait_for(finished, "the run to finish", timeout=240)
    return BackupRun.objects.get(pk=run.pk)


LIMITS = [
    pytest.param(dict(streams_per_host=1, max_parallel_streams=8, max_parallel_vms=8), id="per-host"),
    pytest.param(dict(streams_per_host=8, max_parallel_streams=2, max_parallel_vms=8), id="per-store"),
    pytest.param(dict(streams_per_host=8, max_parallel_streams=8, max_parallel_vms=1), id="per-job"),
]


@pytest.mark.parametrize("limits", LIMITS)
def test_concurrent_exports_stay_within_the_host_store_and_job_limits(limits, sim, pool, store, make_job, qcluster):
    Pool.objects.filter(pk=pool.pk).update(streams_per_host=limits["streams_per_host"])
    store.max_parallel_streams = limits["max_parallel_streams"]
    store.save()
    job = make_job(rule_name_pattern="stream-vm-*", max_parallel_vms=limits["max_parallel_vms"], incremental=False)
    sim.control.rate_limit(RATE)
    sim.control.clear_transfer_log()
    seen = set()

    run = run_job_in_cluster(qcluster, job, seen)

    statuses = {b.vm_name: (b.status, b.error) for b in run.vm_backups.all()}
    assert all(status == RunStatus.SUCCESS for status, _ in statuses.values()), statuses
    hosts = exports_by_host(sim)
    assert sum(len(v) for v in hosts.values()) == MASTER_VMS + MEMBER_VMS
    per_host = {Host.objects.get(uuid=uuid).name: max_overlap(intervals) for uuid, intervals in hosts.items()}
    overall = max_overlap([i for intervals in hosts.values() for i in intervals])
    print(f"\n{limits}: most exports at once per host {per_host}, overall {overall}; waiting seen: {sorted(seen)}")
    assert set(per_host) == {"xcp-host-1", "xcp-host-2"}
    host_limit, store_limit, job_limit = (limits["streams_per_host"], limits["max_parallel_streams"],
                                          limits["max_parallel_vms"])
    assert all(peak <= host_limit for peak in per_host.values())
    assert overall <= min(store_limit, job_limit)
    # The limit is reached, not only respected: the run did run VMs side by side where allowed.
    expected_overall = min(store_limit, job_limit, 2 * host_limit, 4)
    assert overall == expected_overall
    if host_limit == 1:
        assert any(text.startswith("waiting for a stream (host xcp-host-") and text.endswith(": 1 of 1 busy)")
                   for text in seen), seen
    assert not StreamSlot.objects.exists()           # every slot given back


def test_a_worker_killed_while_holding_a_slot_loses_it_when_its_lease_runs_out(sim, pool, store, make_job, qcluster,
                                                                                vm_named):
    lease = 4.0
    Pool.objects.filter(pk=pool.pk).update(streams_per_host=1)
    job = make_job(selection=SelectionMode.EXPLICIT, max_parallel_vms=2, incremental=False)
    job.vms.set([vm_named("stream-vm-0"), vm_named("stream-vm-1")])
    sim.control.rate_limit(256 * 1024)          # a backup takes about 30 s: killed long before its end
    master = Host.objects.get(pool=pool, is_master=True)
    scope = f"host:{master.uuid}"
    qcluster.start(SESAM_TEST_WORKERS="2", SESAM_STREAM_LEASE_SECONDS=str(lease))
    run = start_job_run(job)

    slot = qcluster.wait_for(lambda: StreamSlot.objects.filter(scope=scope).first(), "a worker to take the host's slot")
    owner = slot.owner
    # The other VM tried, found the host full and went back to the queue: nothing runs now
    # that could notice the dead worker before the lease does.
    qcluster.wait_for(lambda: run.vm_backups.filter(status=RunStatus.QUEUED, waiting__startswith="waiting for a stream")
                      .exists(), "the other VM to wait for the host")
    pid = int(owner.rpartition(":")[2])
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: streams.held(scope) == 0, "the killed worker's slot to come back", timeout=60)
    freed_after = time.monotonic() - killed_at
    print(f"\nslot of the killed worker {owner} free again {freed_after:.1f} s after SIGKILL (lease {lease:.0f} s)")
    assert freed_after <= lease + 1.0        # the lease left at the kill, plus this test's polling
    # Freed by its lease running out: nobody has failed the dead worker's backup yet (the
    # watchdog, which would release its slots at once, is not scheduled until now).
    assert run.vm_backups.get(lease_owner=owner).status == RunStatus.RUNNING

    # The watchdog (every minute) fails the killed backup and sends the waiting VM again.
    ensure_watchdog()
    sim.control.rate_limit(0)
    qcluster.wait_for(lambda: BackupRun.objects.get(pk=run.pk).is_finished, "the run to finish", timeout=240)
    outcome = {b.vm_name: (b.status, b.lease_owner, b.error) for b in run.vm_backups.all()}
    killed = [name for name, (_, worker, _) in outcome.items() if worker == owner]
    assert len(killed) == 1 and outcome[killed[0]][0] == RunStatus.FAILED, outcome
    (other,) = set(outcome) - set(killed)
    assert outcome[other][0] == RunStatus.SUCCESS, outcome      # it got the host after the kill
    assert not StreamSlot.objects.exists()
    connection.close()
