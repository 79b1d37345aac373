"""LocalBackend's write path: O_DIRECT where the file system has it, buffered writes where it
has not, and new fan-out directories made durable with the chunks in them."""
import errno
import os

import pytest

from backups.repository import LocalBackend
from backups.repository import backends


@pytest.fixture
def backend(tmp_path):
    return LocalBackend(tmp_path)


def opened_with_direct_io(monkeypatch):
    """Record the flags of every file the backend creates."""
    flags_seen = []
    real_open = os.open

    def spy(path, flags, *args):
        fd = real_open(path, flags, *args)
        if flags & os.O_CREAT:
            flags_seen.append(bool(flags & os.O_DIRECT))
        return fd

    monkeypatch.setattr(backends.os, "open", spy)
    return flags_seen


@pytest.mark.parametrize("size", [backends.DIRECT_IO_MIN_SIZE, backends.DIRECT_IO_MIN_SIZE + 1,
                                  (1 << 20) + 13, 3 * backends.DIRECT_IO_ALIGNMENT * 7])
def test_large_objects_are_written_direct_with_their_exact_length(backend, tmp_path, monkeypatch,
                                                                   size):
    direct = opened_with_direct_io(monkeypatch)
    data = os.urandom(size)
    assert backend.put_atomic("chunks/ab/cd/abcd", data, overwrite=False)
    assert direct == [True]
    assert (tmp_path / "chunks/ab/cd/abcd").stat().st_size == size
    assert backend.get("chunks/ab/cd/abcd") == data
    assert [p.name for p in (tmp_path / "chunks/ab/cd").iterdir()] == ["abcd"]


def test_small_objects_are_written_buffered(backend, monkeypatch):
    direct = opened_with_direct_io(monkeypatch)
    backend.put_atomic("store.json", b"{}\n")
    assert direct == [False]
    assert backend.get("store.json") == b"{}\n"


def test_a_file_system_without_o_direct_gets_buffered_writes(backend, tmp_path, monkeypatch):
    real_open = os.open

    def no_direct(path, flags, *args):
        if flags & os.O_DIRECT:
            fd = real_open(path, flags & ~os.O_DIRECT, *args)  # created, then refused
            os.close(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(backends.os, "open", no_direct)
    data = os.urandom(300_000)
    assert backend.put_atomic("chunks/ab/cd/one", data, overwrite=False)
    assert backend.put_atomic("chunks/ab/cd/two", data[::-1], overwrite=False)
    assert backend.get("chunks/ab/cd/one") == data
    assert backend.get("chunks/ab/cd/two") == data[::-1]
    assert sorted(p.name for p in (tmp_path / "chunks/ab/cd").iterdir()) == ["one", "two"]
    assert not backend._direct_io


def test_a_file_system_refusing_direct_writes_late_gets_buffered_writes(backend, monkeypatch):
    """O_DIRECT accepted at open (simulated: some file systems, e.g. tmpfs, refuse it there), refused at
    the first write: the same file is rewritten buffered, and later objects skip O_DIRECT."""
    real_open, real_write = os.open, os.write
    direct_fds, refused, buffered_after_refusal, direct_opens = set(), [], [], []

    def accepting_open(path, flags, *args):
        if flags & os.O_DIRECT:
            fd = real_open(path, flags & ~os.O_DIRECT, *args)
            direct_opens.append(path)
            direct_fds.add(fd)
            return fd
        return real_open(path, flags, *args)

    def refusing_write(fd, data):
        if fd in direct_fds:
            direct_fds.discard(fd)
            refused.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        if fd in refused:
            buffered_after_refusal.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(backends.os, "open", accepting_open)
    monkeypatch.setattr(backends.os, "write", refusing_write)
    data = os.urandom(200_000)
    assert backend.put_atomic("chunks/ab/cd/late", data, overwrite=False)
    assert len(direct_opens) == 1 and len(refused) == 1  # the late branch ran: opened direct, refused at write
    assert sum(buffered_after_refusal) == len(data)       # then the same file, buffered, exactly its bytes
    assert backend.get("chunks/ab/cd/late") == data
    assert not backend._direct_io
    assert backend.put_atomic("chunks/ab/cd/next", data[::-1], overwrite=False)
    assert len(direct_opens) == 1                          # no more O_DIRECT on this file system
    assert backend.get("chunks/ab/cd/next") == data[::-1]


def test_new_fan_out_directories_are_synced_with_their_parents(backend, tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    backend.put_atomic("chunks/ab/cd/first", os.urandom(100_000), overwrite=False)
    monkeypatch.setattr(backends.os, "fsync", spy)
    backend.flush()
    assert {str(tmp_path), str(tmp_path / "chunks"), str(tmp_path / "chunks/ab"),
            str(tmp_path / "chunks/ab/cd")} <= set(synced)


def test_a_vanished_store_directory_is_not_recreated(tmp_path):
    from backups.repository import StoreUnavailableError
    backend = LocalBackend(tmp_path / "mounted")
    with pytest.raises(StoreUnavailableError, match="not mounted"):
        backend.put_atomic("chunks/ab/cd/x", os.urandom(100_000), overwrite=False)
    assert not (tmp_path / "mounted").exists()
