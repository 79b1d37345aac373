from datetime import datetime, timedelta, timezone

import pytest

from backups.repository import LocalBackend, Repository

PASSPHRASE = "correct horse battery staple"
# The smallest scrypt cost the library accepts, to keep the tests quick.
TEST_SCRYPT_N = 2**15
CHUNK = 64 * 1024  # small chunks keep test disks small; the code is size-agnostic


@pytest.fixture
def store_dir(tmp_path):
    path = tmp_path / "store"
    path.mkdir()
    return path


@pytest.fixture
def repo(store_dir):
    return Repository.create(LocalBackend(store_dir), passphrase=PASSPHRASE,
                             scrypt_n=TEST_SCRYPT_N, chunk_size=CHUNK)


@pytest.fixture
def plain_repo(store_dir):
    return Repository.create(LocalBackend(store_dir), encryption=False, chunk_size=CHUNK)


@pytest.fixture
def clock():
    """Distinct, increasing backup start times."""
    base = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
    count = iter(range(10_000))
    return lambda: base + timedelta(minutes=next(count))


@pytest.fixture
def files_in():
    """Relative paths and mtimes of every file under a directory."""
    def snapshot(path):
        return sorted((str(p.relative_to(path)), p.stat().st_mtime_ns)
                      for p in path.rglob("*") if p.is_file())
    return snapshot


class RemoteDirectory(LocalBackend):
    """A directory the repository treats like S3 (remote = True): backups list the chunk
    index and touch listed chunks, round trips run on store threads, restores read ahead
    with the backend's parallelism. The files stay inspectable (mtimes, deletions)."""

    remote = True
    parallelism = 8
