"""Syncs asked for by people run on a worker (xenpools/sync.py): one per pool at a time, live
progress on the pool's topic, the outcome in plain words, audited as the person who asked."""
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from sesamweb.audit.models import AuditEvent
from sesamweb.live.models import LiveEvent
from xenpools.models import VM, Host, Pool
from xenpools.sync import SYNC_STALE_AFTER, SyncAlreadyRunning, request_sync, run_requested_sync
from xenpools.tasks import sync_pool_task

from .xenapi_helpers import xenapi_session


def sync_events(pool):
    return [row.payload for row in LiveEvent.objects.filter(topic=f"pool:{pool.pk}").order_by("id")
            if row.payload["type"] == "pool.sync"]


def test_sync_now_queues_the_sync_and_the_worker_reports_progress_then_the_outcome(
        sim, make_pool, operator_client, run_queued_syncs):
    pool = make_pool(sim, sync=False)

    response = operator_client.post(reverse("xenpools:pool_sync", args=[pool.pk]), follow=True)

    assert "Sync of lab started" in response.content.decode()
    assert not Host.objects.filter(pool=pool).exists()          # nothing ran inside the request
    assert [e["phase"] for e in sync_events(pool)] == ["queued"]
    [result] = run_queued_syncs()

    assert result.startswith("pool lab: Synced:")
    events = sync_events(pool)
    phases = [e["phase"] for e in events]
    assert phases[:3] == ["queued", "connecting", "reading"] and phases[-2:] == ["writing", "done"]
    reading = [e for e in events if e["phase"] == "reading"]
    assert [e["counts"]["hosts"] for e in reading][-1] == Host.objects.filter(pool=pool).count() > 0
    vms = VM.objects.filter(pool=pool, is_snapshot=False).count()
    assert reading[0]["counts"]["vms"] == 0 and events[-1]["counts"]["vms"] == vms > 0      # counted as read
    assert events[-1]["state"] == "idle" and events[-1]["ok"] is True
    pool.refresh_from_db()
    assert pool.sync_state == "idle" and pool.sync_ok and pool.sync_outcome == events[-1]["outcome"]
    audit = AuditEvent.objects.get(action="sync", target_id=str(pool.pk))
    assert audit.actor_username == operator_client.user.username and audit.outcome == "success"
    page = operator_client.get(pool.get_absolute_url()).content.decode()
    assert pool.sync_outcome in page


def test_a_second_sync_of_the_same_pool_is_refused_while_one_runs(sim, make_pool, operator_client):
    pool = make_pool(sim, sync=False)
    url = reverse("xenpools:pool_sync", args=[pool.pk])

    operator_client.post(url)
    second = operator_client.post(url, follow=True)

    assert "already running" in second.content.decode()
    with pytest.raises(SyncAlreadyRunning):
        request_sync(pool)
    from django_q.models import OrmQ
    assert OrmQ.objects.count() == 1


def test_a_sync_whose_worker_died_does_not_block_the_pool_forever(sim, make_pool):
    pool = make_pool(sim, sync=False)
    request_sync(pool)
    later = timezone.now() + SYNC_STALE_AFTER + timedelta(seconds=1)

    with pytest.raises(SyncAlreadyRunning):
        request_sync(pool, now=timezone.now())
    request_sync(pool, now=later)                  # no heartbeat for SYNC_STALE_AFTER: claimed again


def test_a_wrong_password_is_reported_in_plain_words(sim, make_pool, run_queued_syncs):
    pool = make_pool(sim, sync=False)
    pool.set_password("not the password")
    pool.save()

    request_sync(pool)
    run_queued_syncs()

    pool.refresh_from_db()
    assert pool.sync_ok is False and pool.sync_state == "idle"
    assert pool.sync_outcome.startswith("Wrong user name or password")
    assert AuditEvent.objects.get(action="sync", target_id=str(pool.pk)).outcome == "failure"
    assert sync_events(pool)[-1]["outcome"] == pool.sync_outcome


def test_an_unreachable_pool_is_reported_in_plain_words(sim, make_pool):
    pool = make_pool(sim, sync=False)
    sim.stop()

    assert run_requested_sync(pool) is None

    pool.refresh_from_db()
    assert pool.sync_ok is False and pool.sync_outcome.startswith("The pool could not be reached")
    assert pool.health == "unreachable"


def test_a_master_that_moved_is_followed_and_said(sim, make_pool):
    pool = make_pool(sim)
    with xenapi_session(sim.url) as x:
        new_master = next(ref for ref, h in x.host.get_all_records().items() if h["address"] == "127.0.0.2")
    sim.control.move_master(new_master)

    sync_pool_task(pool.pk)

    pool = Pool.objects.get(pk=pool.pk)
    assert pool.sync_ok and pool.master_address == "127.0.0.2"
    assert "The pool master moved from 127.0.0.1 to 127.0.0.2" in pool.sync_outcome


@pytest.mark.slow   # a real worker cluster starts (about 5-10 s on a busy machine)
def test_sync_now_runs_on_a_real_worker_cluster(sim, make_pool, operator_client, qcluster):
    pool = make_pool(sim, sync=False)
    qcluster.start()

    operator_client.post(reverse("xenpools:pool_sync", args=[pool.pk]))

    done = qcluster.wait_for(lambda: Pool.objects.filter(pk=pool.pk, sync_state="idle", sync_ok=True).first(),
                             "the worker to finish the sync")
    assert Host.objects.filter(pool=pool).exists() and done.sync_outcome.startswith("Synced:")
    from django_q.models import Task
    [task] = qcluster.wait_for(lambda: list(Task.objects.filter(func="xenpools.tasks.sync_pool_task")),
                               "the cluster to record the task's result")      # saved after the function returns
    assert task.success and task.args == (pool.pk, operator_client.user.pk)
    assert AuditEvent.objects.get(action="sync", target_id=str(pool.pk)).actor_username == operator_client.user.username


def test_a_broker_that_refuses_the_task_leaves_the_pool_free_to_sync(sim, make_pool, monkeypatch):
    import django_q.tasks

    def broker_down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    pool = make_pool(sim, sync=False)
    monkeypatch.setattr(django_q.tasks, "async_task", broker_down)
    with pytest.raises(ConnectionError):
        request_sync(pool)

    pool.refresh_from_db()
    assert pool.sync_state == "idle"
    monkeypatch.undo()
    request_sync(pool)                      # not "already running"
