"""A data store that is full, read-only or gone: clear errors, no backup that looks complete."""
import errno
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from backups.repository import (
    LocalBackend,
    Repository,
    StoreFullError,
    StoreReadOnlyError,
    StoreUnavailableError,
)
from backups.repository import backends

from .conftest import CHUNK, PASSPHRASE, TEST_SCRYPT_N
from .diskdata import mixed_disk, write_disk


class FillingDisk:
    """os.fsync replacement that fails with ENOSPC once `room` writes went through, as a
    file system does when it fills up (the write path, temp clean-up and error mapping run
    for real)."""

    def __init__(self, room, error=errno.ENOSPC):
        self.room = room
        self.error = error
        self.real_fsync = os.fsync

    def __call__(self, fd):
        if self.room <= 0:
            raise OSError(self.error, os.strerror(self.error))
        self.room -= 1
        return self.real_fsync(fd)


def temporaries(store_dir):
    return [p for p in store_dir.rglob("*") if backends.TEMP_MARKER in p.name]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_store_fails_the_backup_and_leaves_no_manifest(repo, clock, store_dir,
                                                             monkeypatch, code):
    monkeypatch.setattr(backends.os, "fsync", FillingDisk(room=4, error=code))
    with pytest.raises(StoreFullError) as error:
        with repo.start_backup("vm-a", clock()) as writer:
            write_disk(writer, "xvda", mixed_disk(30 * CHUNK, CHUNK))
            writer.commit()
    assert str(store_dir) in str(error.value)
    monkeypatch.undo()
    assert repo.list_backups() == []
    assert not list(store_dir.glob("backups/**/manifest"))
    assert temporaries(store_dir) == []


def test_a_store_that_fills_up_at_the_manifest_leaves_no_manifest(repo, clock, store_dir,
                                                                  monkeypatch):
    with repo.start_backup("vm-a", clock()) as writer:
        write_disk(writer, "xvda", mixed_disk(3 * CHUNK, CHUNK))
        monkeypatch.setattr(backends.os, "fsync", FillingDisk(room=0))
        with pytest.raises(StoreFullError):
            writer.commit()
    monkeypatch.undo()
    assert repo.list_backups() == []
    assert temporaries(store_dir) == []


def test_a_read_only_file_system_gives_store_read_only_error(repo, clock, store_dir,
                                                             monkeypatch):
    monkeypatch.setattr(backends.os, "fsync", FillingDisk(room=0, error=errno.EROFS))
    with pytest.raises(StoreReadOnlyError, match=str(store_dir)):
        repo.start_backup("vm-a", clock())


def in_a_child_without_root(function):
    """Run function() in a forked child that is not root (root ignores directory permissions:
    as root the child drops to nobody first), and return what it raised, by class name."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        outcome = "nothing raised"
        try:
            if os.geteuid() == 0:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            function()
        except BaseException as exc:  # reported to the parent, whatever it is
            outcome = f"{type(exc).__name__}: {exc}"
        finally:
            os.write(write_end, outcome.encode()[:4000])
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        outcome = reader.read().decode()
    os.waitpid(pid, 0)
    return outcome


NOBODY = 65534


@pytest.fixture
def world_readable_store_dir():
    """A store directory a non-root child can read (pytest's own base directory is 0700)."""
    base = tempfile.mkdtemp(prefix="sesam-ro-store-")
    os.chmod(base, 0o755)
    path = Path(base) / "store"
    path.mkdir()
    yield path
    for entry in [path, *path.rglob("*")]:
        if entry.is_dir():
            entry.chmod(0o755)
    shutil.rmtree(base)


def test_a_read_only_directory_gives_store_read_only_error(clock, world_readable_store_dir):
    """Directory permissions, not a simulated error: the child that writes is not root."""
    store_dir = world_readable_store_dir
    repo = Repository.create(LocalBackend(store_dir), passphrase=PASSPHRASE, scrypt_n=TEST_SCRYPT_N, chunk_size=CHUNK)
    for path in [store_dir, *store_dir.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)

    def back_up():
        with repo.start_backup("vm-a", clock()) as writer:
            write_disk(writer, "xvda", mixed_disk(3 * CHUNK, CHUNK))
            writer.commit()

    outcome = in_a_child_without_root(back_up)

    assert outcome.startswith("StoreReadOnlyError"), outcome
    assert str(store_dir) in outcome
    assert repo.list_backups() == []


def test_a_store_whose_directory_vanished_is_unavailable(repo, clock, store_dir, tmp_path):
    with repo.start_backup("vm-a", clock()) as writer:
        disk = writer.add_disk("xvda", 4 * CHUNK)
        store_dir.rename(tmp_path / "unmounted")
        with pytest.raises(StoreUnavailableError, match="does not exist"):
            disk.write(0, mixed_disk(4 * CHUNK, CHUNK))
            disk.finish()
    (tmp_path / "unmounted").rename(store_dir)
    reopened = Repository.open(LocalBackend(store_dir), passphrase=PASSPHRASE)
    assert reopened.list_backups() == []


def test_an_s3_quota_error_is_a_full_store(monkeypatch):
    from botocore.exceptions import ClientError

    from backups.repository import S3Backend

    backend = S3Backend("http://127.0.0.1:9", "bucket", "site", "key", "secret")

    def refuse(**kwargs):
        raise ClientError({"Error": {"Code": "XMinioStorageFull", "Message": "disk full"}},
                          "PutObject")

    monkeypatch.setattr(backend.client, "put_object", refuse)
    with pytest.raises(StoreFullError, match="s3://bucket/site/"):
        backend.put_atomic("chunks/aa/bb/aabb", b"data")


def test_a_file_system_without_hard_links_still_never_overwrites(repo, clock, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(backends.os, "link", no_links)
    data = mixed_disk(3 * CHUNK, CHUNK)
    with repo.start_backup("vm-a", clock()) as writer:
        write_disk(writer, "xvda", data)
        manifest = writer.commit()
    assert repo.backend.put_atomic("backups/" + manifest.id + "/manifest", b"x",
                                   overwrite=False) is False
    assert repo.verify().ok


def chunk_files(store_dir):
    return [p for p in (store_dir / "chunks").rglob("*") if p.is_file() and backends.TEMP_MARKER not in p.name]


def test_a_backup_that_filled_the_store_removes_its_own_chunks_at_once(repo, clock, store_dir, monkeypatch):
    with repo.start_backup("vm-a", clock()) as writer:
        write_disk(writer, "xvda", mixed_disk(4 * CHUNK, CHUNK))
        kept = writer.commit()
    before = set(chunk_files(store_dir))
    monkeypatch.setattr(backends.os, "fsync", FillingDisk(room=6))
    with pytest.raises(StoreFullError):
        with repo.start_backup("vm-b", clock()) as writer:
            write_disk(writer, "xvda", mixed_disk(30 * CHUNK, CHUNK, seed=9))
            writer.commit()
    monkeypatch.undo()

    assert writer.removed_chunks > 0
    assert set(chunk_files(store_dir)) == before          # the first backup's chunks, nothing of the failed one
    data = b"".join(d for _, d in repo.open_disk(kept.id, "xvda").stream())
    assert len(data) == 4 * CHUNK
    with repo.start_backup("vm-c", clock()) as writer:   # the next backup has its room back
        write_disk(writer, "xvda", mixed_disk(2 * CHUNK, CHUNK, seed=3))
        writer.commit()


def test_a_failed_backup_leaves_its_chunks_to_gc_while_another_backup_runs(repo, clock, store_dir, monkeypatch):
    other = repo.start_backup("vm-other", clock())
    try:
        monkeypatch.setattr(backends.os, "fsync", FillingDisk(room=6))
        with pytest.raises(StoreFullError):
            with repo.start_backup("vm-b", clock()) as writer:
                write_disk(writer, "xvda", mixed_disk(30 * CHUNK, CHUNK, seed=9))
                writer.commit()
        monkeypatch.undo()
        assert writer.removed_chunks == 0 and chunk_files(store_dir)    # the other backup may reuse them
    finally:
        other.abort()
