import os
import threading

import pytest

from backups.repository import (
    BackupAbortedError,
    BackupExistsError,
    ChunkCorruptError,
    LocalBackend,
    Repository,
)

from backups.repository.chunks import chunk_key

from .conftest import CHUNK, PASSPHRASE
from .diskdata import mixed_disk, read_disk, text_block, write_disk


@pytest.mark.parametrize("piece", [CHUNK, 300_000, 3 * CHUNK + 1, 12289])
def test_it_round_trips_a_disk_with_zero_text_and_random_regions(repo, clock, store_dir, piece):
    data = mixed_disk(20 * CHUNK + 777, CHUNK)  # a short tail chunk too
    with repo.start_backup("vm-a", clock(), method="normal") as writer:
        write_disk(writer, "xvda", data, piece=piece)
        writer.attach("ova.xml", b"<value>vm-a</value>")
        writer.set_metadata({"vm": {"name_label": "web01"}})
        manifest = writer.commit()
    disk = manifest.disk("xvda")
    assert len(disk.chunks) == 21
    assert disk.chunks.count(None) == 7  # zero regions are not stored
    assert manifest.totals["chunks_zero"] == 7
    reopened = Repository.open(LocalBackend(store_dir), passphrase=PASSPHRASE)
    assert read_disk(reopened, manifest.id, "xvda") == data
    loaded = reopened.load_manifest(manifest.id)
    assert loaded.attachments["ova.xml"] == b"<value>vm-a</value>"
    [summary] = reopened.list_backups()
    assert (summary.id, summary.vm_name, summary.method) == (manifest.id, "web01", "normal")
    assert summary.disks == {"xvda": len(data)}
    assert summary.status == "ok"


def test_a_sparse_full_export_leaves_unwritten_ranges_zero(repo, clock):
    size = 10 * CHUNK
    block = os.urandom(4096)
    with repo.start_backup("vm-a", clock()) as writer:
        disk = writer.add_disk("xvda", size)
        disk.write(3 * CHUNK + 100, block)
        disk.write(7 * CHUNK, block)
        disk.finish()
        manifest = writer.commit()
    expected = bytearray(size)
    expected[3 * CHUNK + 100:3 * CHUNK + 100 + 4096] = block
    expected[7 * CHUNK:7 * CHUNK + 4096] = block
    assert read_disk(repo, manifest.id, "xvda") == bytes(expected)


def test_it_deduplicates_across_vms_and_across_time(repo, clock):
    data = mixed_disk(12 * CHUNK, CHUNK)
    with repo.start_backup("vm-a", clock()) as writer:
        write_disk(writer, "xvda", data)
        first = writer.commit()
    assert first.totals["bytes_new"] == 8 * CHUNK
    with repo.start_backup("vm-b", clock()) as writer:
        write_disk(writer, "xvda", data)
        other_vm = writer.commit()
    with repo.start_backup("vm-a", clock()) as writer:
        write_disk(writer, "xvda", data)
        next_day = writer.commit()
    for manifest in (other_vm, next_day):
        assert manifest.totals["bytes_new"] == 0
        assert manifest.totals["bytes_stored"] == 0
        assert manifest.totals["chunks_reused"] == 8
        assert manifest.disk("xvda").chunks == first.disk("xvda").chunks


def test_an_incremental_reuses_the_parent_and_patches_partial_chunks(repo, clock):
    size = 16 * CHUNK
    day1 = bytearray(mixed_disk(size, CHUNK))
    with repo.start_backup("vm-a", clock()) as writer:
        write_disk(writer, "xvda", bytes(day1))
        parent = writer.commit()
    # Changed 4 KiB blocks (CBT granularity is smaller than a chunk): patch, not replace.
    day2 = bytearray(day1)
    changes = [(1 * CHUNK + 8192, os.urandom(4096)),  # inside a text chunk
               (1 * CHUNK + 20480, os.urandom(4096)),  # same chunk again
               (3 * CHUNK, b"\x01" * 4096),  # inside a zero chunk
               (14 * CHUNK + CHUNK - 4096, text_block(4096, seed=9))]  # end of a random chunk
    for offset, block in changes:
        day2[offset:offset + len(block)] = block
    with repo.start_backup("vm-a", clock(), parent=parent.id) as writer:
        disk = writer.add_disk("xvda", size, parent_chunks=parent.disk("xvda").chunks)
        for offset, block in changes:
            disk.write(offset, block)
        disk.finish()
        incremental = writer.commit()
    assert read_disk(repo, incremental.id, "xvda") == bytes(day2)
    assert read_disk(repo, parent.id, "xvda") == bytes(day1)
    assert incremental.parent == parent.id
    assert incremental.totals["chunks_new"] == 3
    assert incremental.totals["bytes_read"] == 4 * 4096
    changed = {1, 3, 14}
    old, new = parent.disk("xvda").chunks, incremental.disk("xvda").chunks
    assert [i for i in range(16) if old[i] != new[i]] == sorted(changed)


def test_a_resized_disk_cannot_use_the_parent_chunks(repo, clock):
    with repo.start_backup("vm-a", clock()) as writer:
        with pytest.raises(ValueError, match="resized"):
            writer.add_disk("xvda", 4 * CHUNK, parent_chunks=[None, None])


def test_writes_must_go_forward(repo, clock):
    with repo.start_backup("vm-a", clock()) as writer:
        disk = writer.add_disk("xvda", 4 * CHUNK)
        disk.write(2 * CHUNK, b"x" * 10)
        with pytest.raises(ValueError, match="forward"):
            disk.write(CHUNK, b"y")
        with pytest.raises(ValueError, match="beyond"):
            disk.write(4 * CHUNK - 1, b"zz")


def test_an_exception_inside_the_backup_leaves_no_manifest(repo, clock, store_dir):
    with pytest.raises(RuntimeError):
        with repo.start_backup("vm-a", clock()) as writer:
            write_disk(writer, "xvda", mixed_disk(6 * CHUNK, CHUNK))
            assert len(repo.running_backups()) == 1
            raise RuntimeError("export connection dropped")
    assert repo.list_backups() == []
    assert not list(store_dir.glob("backups/**/manifest"))
    assert not list(store_dir.glob("chunks/*/*/*"))  # its own new chunks went with it
    assert repo.running_backups() == []  # lease released
    with pytest.raises(BackupAbortedError):
        writer.commit()


def test_leaving_without_commit_writes_no_manifest(repo, clock):
    with repo.start_backup("vm-a", clock()) as writer:
        write_disk(writer, "xvda", mixed_disk(3 * CHUNK, CHUNK))
    assert repo.list_backups() == []


def test_a_restore_point_is_never_overwritten(repo, clock):
    started = clock()
    with repo.start_backup("vm-a", started) as writer:
        write_disk(writer, "xvda", b"x" * CHUNK)
        writer.commit()
    with pytest.raises(BackupExistsError):
        repo.start_backup("vm-a", started)


def test_progress_is_reported_with_totals(repo, clock):
    calls = []
    data = mixed_disk(9 * CHUNK, CHUNK)
    with repo.start_backup("vm-a", clock(), on_progress=lambda *a: calls.append(a)) as writer:
        write_disk(writer, "xvda", data)
        manifest = writer.commit()
    assert calls[-1] == (len(data), 6 * CHUNK, manifest.totals["bytes_stored"])
    assert len(calls) < 10  # throttled, not one call per write


def test_a_damaged_manifest_is_listed_not_hidden(repo, clock, store_dir):
    with repo.start_backup("vm-a", clock()) as writer:
        write_disk(writer, "xvda", b"x" * CHUNK)
        manifest = writer.commit()
    path = store_dir / "backups" / manifest.id / "manifest"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 1
    path.write_bytes(bytes(blob))
    [summary] = repo.list_backups()
    assert summary.status == "unreadable"
    assert "tag" in summary.error


def test_restore_writes_a_sparse_file_and_refuses_a_damaged_chunk(repo, clock, store_dir,
                                                                  tmp_path):
    data = mixed_disk(7 * CHUNK + 5, CHUNK, seed=21)
    with repo.start_backup("vm-a", clock()) as writer:
        write_disk(writer, "xvda", data)
        manifest = writer.commit()
    target = tmp_path / "xvda.raw"
    with open(target, "wb") as f:
        repo.open_disk(manifest.id, "xvda").write_to(f, sparse=True)
    assert target.read_bytes() == data

    victim = manifest.disk("xvda").chunks[4]
    path = store_dir / "chunks" / victim[:2] / victim[2:4] / victim
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(ChunkCorruptError, match=victim):
        read_disk(repo, manifest.id, "xvda")


def test_usage_counts_stored_chunks(repo, clock, store_dir):
    assert repo.usage()["chunks"] == 0
    with repo.start_backup("vm-a", clock()) as writer:
        write_disk(writer, "xvda", mixed_disk(6 * CHUNK, CHUNK))
        manifest = writer.commit()
    usage = repo.usage()
    assert usage["chunks"] == 4
    assert usage["chunk_bytes"] == manifest.totals["bytes_stored"]
    assert usage["free_bytes"] > 0


class SlowLookupBackend(LocalBackend):
    """A remote-looking store whose touch of the first chunk (how a backup reuses a chunk the
    store listed) answers only once the second chunk has been stored (or after a timeout,
    which fails the test)."""

    remote = True

    def __init__(self, path, first_key, second_key):
        super().__init__(path)
        self.first_key, self.second_key = first_key, second_key
        self.second_stored = threading.Event()
        self.first_waited_for_second = None

    def touch(self, key):
        if key == self.first_key:
            self.first_waited_for_second = self.second_stored.wait(timeout=10)
        return super().touch(key)

    def put_atomic(self, key, data, *, overwrite=True):
        written = super().put_atomic(key, data, overwrite=overwrite)
        if key == self.second_key:
            self.second_stored.set()
        return written


def test_a_slow_round_trip_on_a_remote_store_does_not_hold_up_encoding(store_dir, clock):
    """With one encoding thread, a touch made on that thread would block every other chunk;
    on a remote store round trips run on the store threads instead."""
    repo = Repository.create(LocalBackend(store_dir), encryption=False, chunk_size=CHUNK)
    first, second = text_block(CHUNK, seed=1), text_block(CHUNK, seed=2)
    with repo.start_backup("vm-other", clock()) as writer:
        write_disk(writer, "xvda", first, piece=CHUNK)
        writer.commit()
    keys = [chunk_key(repo.codec.chunk_id(block)) for block in (first, second)]
    repo.backend = SlowLookupBackend(store_dir, *keys)
    with repo.start_backup("vm-a", clock(), workers=1) as writer:
        write_disk(writer, "xvda", first + second, piece=CHUNK)
        manifest = writer.commit()
    assert repo.backend.first_waited_for_second is True
    assert read_disk(repo, manifest.id, "xvda") == first + second
    assert manifest.totals["chunks_new"] == 1 and manifest.totals["chunks_reused"] == 1
