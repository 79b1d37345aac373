import os
import time

import pytest

from backups.repository import ChunkCorruptError, GarbageCollectionAbortedError
from backups.repository.chunks import chunk_key
from backups.repository.prune import forget

from .conftest import CHUNK
from .diskdata import mixed_disk, read_disk, write_disk

HOUR = 3600


def age(store_dir, key, seconds):
    """Make a store file look older than it is (gc decides by modification time)."""
    path = store_dir / key
    then = time.time() - seconds
    os.utime(path, (then, then))


def chunk_files(store_dir):
    return {p.name for p in store_dir.glob("chunks/*/*/*")}


def failed_backup(repo, clock, data, vm="vm-a"):
    """Orphan chunks, as a pruned backup (or a worker killed before it could clean up) leaves
    them. (A backup that fails in-process removes its own new chunks: test_faults.py.)"""
    with repo.start_backup(vm, clock()) as writer:
        write_disk(writer, "xvda", data)
        manifest = writer.commit()
    forget(repo, [manifest.id])


def test_gc_removes_old_orphans_and_keeps_referenced_and_recent_chunks(repo, clock, store_dir):
    with repo.start_backup("vm-a", clock()) as writer:
        write_disk(writer, "xvda", mixed_disk(6 * CHUNK, CHUNK, seed=1))
        kept = writer.commit()
    before = chunk_files(store_dir)
    failed_backup(repo, clock, mixed_disk(6 * CHUNK, CHUNK, seed=2))
    orphans = chunk_files(store_dir) - before
    assert len(orphans) == 4
    old_orphan, *recent_orphans = sorted(orphans)
    age(store_dir, chunk_key(old_orphan), 2 * HOUR)
    for chunk_id in before:
        age(store_dir, chunk_key(chunk_id), 2 * HOUR)

    report = repo.collect_garbage()  # default grace: one hour
    assert (report.deleted_chunks, report.kept_recent) == (1, 3)
    assert chunk_files(store_dir) == before | set(recent_orphans)
    assert repo.verify().ok
    assert read_disk(repo, kept.id, "xvda") == mixed_disk(6 * CHUNK, CHUNK, seed=1)


def test_gc_removes_temporary_files_left_by_a_crash(repo, store_dir):
    leftover = store_dir / "chunks" / "ab" / "cd" / ("ab" + "cd" + "0" * 60 + ".tmp-1234")
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a chunk")
    manifest_tmp = store_dir / "backups" / "vm-a" / "20260101T000000Z" / "manifest.tmp-99"
    manifest_tmp.parent.mkdir(parents=True)
    manifest_tmp.write_bytes(b"half a manifest")
    report = repo.collect_garbage(now=time.time() + 2 * HOUR)
    assert report.deleted_temporaries == 2
    assert not leftover.exists() and not manifest_tmp.exists()


def test_gc_keeps_chunks_a_running_backup_reused(repo, clock, store_dir):
    data = mixed_disk(6 * CHUNK, CHUNK, seed=5)
    failed_backup(repo, clock, data)  # leaves orphans a later backup will reuse
    other = mixed_disk(3 * CHUNK, CHUNK, seed=6)
    failed_backup(repo, clock, other, vm="vm-b")
    reused = chunk_files(store_dir)
    for chunk_id in reused:
        age(store_dir, chunk_key(chunk_id), 3 * HOUR)
    with repo.start_backup("vm-a", clock()) as writer:
        write_disk(writer, "xvda", data)  # dedups against the old orphans
        # GC runs while the backup is running (before its manifest exists).
        report = repo.collect_garbage(grace_period=0)
        manifest = writer.commit()
    assert report.deleted_chunks == 2  # vm-b's orphans only
    assert manifest.totals["chunks_new"] == 0
    assert read_disk(repo, manifest.id, "xvda") == data
    assert repo.verify([manifest.id]).ok


def test_gc_sweeps_nothing_newer_than_the_oldest_running_backup(repo, clock, store_dir):
    writer = repo.start_backup("vm-a", clock())
    with writer:
        failed_backup(repo, clock, mixed_disk(3 * CHUNK, CHUNK, seed=7), vm="vm-b")
        report = repo.collect_garbage(grace_period=0, now=time.time() + 5 * HOUR)
        assert report.deleted_chunks == 0 and report.kept_recent == 2
    # With the lease gone the same orphans are swept.
    assert repo.collect_garbage(grace_period=0, now=time.time() + 5 * HOUR).deleted_chunks == 2


def test_gc_ignores_a_stale_lease_with_a_warning(repo, clock, store_dir):
    writer = repo.start_backup("vm-a", clock())
    try:
        failed_backup(repo, clock, mixed_disk(3 * CHUNK, CHUNK, seed=8), vm="vm-b")
        report = repo.collect_garbage(grace_period=0, now=time.time() + 24 * HOUR)
        assert report.deleted_chunks == 2
        assert any("stale lease" in w for w in report.warnings)
    finally:
        writer.abort()


def test_gc_deletes_nothing_when_a_manifest_is_unreadable(repo, clock, store_dir):
    with repo.start_backup("vm-a", clock()) as writer:
        write_disk(writer, "xvda", mixed_disk(3 * CHUNK, CHUNK))
        manifest = writer.commit()
    (store_dir / "backups" / manifest.id / "manifest").write_bytes(b"garbage")
    before = chunk_files(store_dir)
    with pytest.raises(GarbageCollectionAbortedError, match=manifest.id):
        repo.collect_garbage(grace_period=0, now=time.time() + 2 * HOUR)
    assert chunk_files(store_dir) == before


def test_a_backup_fails_rather_than_commit_a_chunk_a_concurrent_gc_removed(repo, clock, store_dir):
    data = mixed_disk(3 * CHUNK, CHUNK, seed=9)
    failed_backup(repo, clock, data)
    with pytest.raises(ChunkCorruptError, match="concurrent garbage collection"):
        with repo.start_backup("vm-a", clock()) as writer:
            disk = write_disk(writer, "xvda", data)  # reuses (touches) the existing chunks
            # The lost race: gc had seen the chunk as old just before the touch.
            (store_dir / chunk_key(disk.chunks[1])).unlink()
            repo.collect_garbage()
            writer.commit()
    assert repo.list_backups() == []


def test_a_running_backup_refreshes_its_lease(repo, clock):
    with repo.start_backup("vm-a", clock(), lease_refresh=0.05) as writer:
        [lease] = repo.running_backups()
        deadline = time.time() + 5
        while repo.running_backups()[0].refreshed == lease.refreshed and time.time() < deadline:
            time.sleep(0.05)
        assert repo.running_backups()[0].refreshed > lease.refreshed
        assert lease.restore_point_id == writer.id
    assert repo.running_backups() == []
