"""Verify and garbage collection report live progress on "store:<id>" for the store page:
started, how far, and how it ended (also a failure)."""
import pytest
from django.urls import reverse

from backups.maintenance import prune_store
from backups.repository import RetentionPolicy
from backups.store_progress import StoreTaskProgress
from backups.tasks import collect_garbage_task, verify_store_task
from sesamweb.live.models import LiveEvent

from .test_run_pages import three_backups
from .test_views import data_store  # noqa: F401 - fixture


def events(store):
    return [e.payload for e in LiveEvent.objects.filter(topic=f"store:{store.pk}").order_by("pk")]


def test_a_verify_publishes_its_progress_and_its_outcome(data_store):
    three_backups(data_store)
    result = verify_store_task(data_store.pk)
    published = events(data_store)
    assert [e["state"] for e in (published[0], published[-1])] == ["running", "finished"]
    assert published[-1]["text"] == result and "all good" in result
    progress = [e for e in published if e.get("total")]
    assert progress and progress[0]["done"] <= progress[0]["total"] and "chunks checked" in progress[0]["text"]
    assert {e["label"] for e in published} == {"Verify"}


def test_garbage_collection_publishes_chunks_scanned_and_its_outcome(data_store, monkeypatch):
    monkeypatch.setattr("backups.repository.gc.PROGRESS_EVERY", 1)
    three_backups(data_store)
    prune_store(data_store, RetentionPolicy(keep_last=1))
    result = collect_garbage_task(data_store.pk)
    published = events(data_store)
    assert published[-1] == {"type": "store.task", "action": "gc", "label": "Garbage collection",
                              "state": "finished", "text": result}
    assert any("chunks scanned" in e["text"] for e in published[1:-1])


def test_progress_is_throttled_by_an_injected_clock(data_store):
    now = [0.0]
    with StoreTaskProgress(data_store, "verify", clock=lambda: now[0]) as progress:
        progress.update(1, 10, "1")
        progress.update(2, 10, "2")          # same instant: not sent
        now[0] = 1.0
        progress.update(3, 10, "3")
    assert [e.get("done") for e in events(data_store)] == [None, 1, 3]


def test_a_failure_is_published_and_raised(data_store):
    with pytest.raises(RuntimeError):
        with StoreTaskProgress(data_store, "gc"):
            raise RuntimeError("the share went away")
    assert events(data_store)[-1]["state"] == "failed"
    assert events(data_store)[-1]["text"] == "failed: the share went away"


def test_the_store_page_follows_its_topic(operator_client, data_store):
    page = operator_client.get(reverse("backups:store_detail", args=[data_store.pk])).content.decode()
    assert f'data-store-task="{data_store.pk}"' in page and "js/store_live.js" in page
