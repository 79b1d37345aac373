"""The known-chunk index of remote stores (backups/repository/chunk_index.py)."""
import os
import time

from backups.repository import Repository
from backups.repository.chunk_index import UNKNOWN, ChunkIndex
from backups.repository.chunks import chunk_key
from backups.repository.errors import StoreUnavailableError
from backups.repository.prune import forget

from .conftest import CHUNK, RemoteDirectory
from .diskdata import mixed_disk, read_disk, write_disk


def backup(repo, vm, clock, data, **kwargs):
    with repo.start_backup(vm, clock(), **kwargs) as writer:
        write_disk(writer, "xvda", data)
        return writer.commit()


def test_index_lists_stored_chunks_and_skips_temporaries(store_dir, clock):
    repo = Repository.create(RemoteDirectory(store_dir), encryption=False, chunk_size=CHUNK)
    manifest = backup(repo, "vm-a", clock, mixed_disk(6 * CHUNK, CHUNK, seed=3))
    stored = sorted(manifest.chunk_ids())
    leftover = store_dir / chunk_key("ff" * 32)
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.with_name(leftover.name + ".tmp-abc").write_bytes(b"half written")

    index = ChunkIndex(repo.backend, background=False)
    assert index.count() == len(stored) == 4
    assert all(index.might_contain(cid) is True for cid in stored)
    assert index.might_contain("ff" * 32) is False
    assert index.might_contain("00" * 32) is False


class UnlistableDirectory(RemoteDirectory):
    def list(self, prefix=""):
        if prefix == "chunks/":
            raise StoreUnavailableError(self.location, "listing refused")
        return super().list(prefix)


def test_a_failed_listing_falls_back_to_an_existence_check_per_chunk(store_dir, clock):
    repo = Repository.create(UnlistableDirectory(store_dir), encryption=False, chunk_size=CHUNK)
    data = mixed_disk(6 * CHUNK, CHUNK, seed=4)
    assert ChunkIndex(repo.backend).might_contain("ab" * 32) is UNKNOWN
    first = backup(repo, "vm-a", clock, data)
    second = backup(repo, "vm-b", clock, data)  # dedup still found by asking the store
    assert first.totals["chunks_new"] == 4
    assert second.totals["chunks_new"] == 0 and second.totals["chunks_reused"] == 4
    assert read_disk(repo, second.id, "xvda") == data


def age(store_dir, chunk_ids, seconds):
    past = time.time() - seconds
    for cid in chunk_ids:
        os.utime(store_dir / chunk_key(cid), (past, past))


def test_a_chunk_gc_deletes_after_the_listing_is_stored_again(store_dir, clock):
    """The index of a running backup lists chunks of a forgotten backup; a gc deletes them
    (older than the backup's lease) before the backup reaches them. The touch that would
    reuse each one fails, so the backup uploads them again instead of referencing a
    deleted chunk, and its restore point stays complete."""
    repo = Repository.create(RemoteDirectory(store_dir), encryption=False, chunk_size=CHUNK)
    data = mixed_disk(9 * CHUNK, CHUNK, seed=5)
    old = backup(repo, "vm-a", clock, data)
    forget(repo, [old.id])
    age(store_dir, old.chunk_ids(), 3600)

    with repo.start_backup("vm-b", clock()) as writer:
        assert all(writer._index.might_contain(cid) for cid in old.chunk_ids())  # listed
        report = repo.collect_garbage(grace_period=0)
        assert report.deleted_chunks == 6
        write_disk(writer, "xvda", data)
        manifest = writer.commit()

    assert manifest.totals["chunks_new"] == 6 and manifest.totals["chunks_reused"] == 0
    assert all((store_dir / chunk_key(cid)).exists() for cid in manifest.chunk_ids())
    assert repo.verify().ok
    assert read_disk(repo, manifest.id, "xvda") == data


def test_a_listed_chunk_is_touched_so_gc_keeps_it(store_dir, clock):
    """Reusing a listed chunk refreshes its modification time (gc's cutoff protects it)
    without a separate existence check."""
    repo = Repository.create(RemoteDirectory(store_dir), encryption=False, chunk_size=CHUNK)
    data = mixed_disk(6 * CHUNK, CHUNK, seed=6)
    old = backup(repo, "vm-a", clock, data)
    forget(repo, [old.id])
    age(store_dir, old.chunk_ids(), 3600)
    checks = []
    repo.backend.exists = lambda key, real=repo.backend.exists: checks.append(key) or real(key)
    manifest = backup(repo, "vm-b", clock, data)
    assert manifest.totals["chunks_reused"] == 4 and manifest.totals["chunks_new"] == 0
    assert not [key for key in checks if key.startswith("chunks/")]
    assert repo.collect_garbage(grace_period=600).deleted_chunks == 0
    assert read_disk(repo, manifest.id, "xvda") == data
