"""Restore side: chunks fetched ahead in parallel, handed out in disk order, bounded."""
import threading

from backups.repository import Repository

from .conftest import CHUNK, RemoteDirectory
from .diskdata import mixed_disk, write_disk


class WatchedStore(RemoteDirectory):
    """Counts chunk fetches started and running at once. The first fetch waits (up to 10 s,
    else the test fails) until a second one has started: only a reader that fetches in
    parallel gets past it, and the second chunk is then ready before the first."""

    def __init__(self, path):
        super().__init__(path)
        self.lock = threading.Lock()
        self.started = self.running = self.most_running = 0
        self.second_started = threading.Event()
        self.first_saw_second = None

    def get(self, key):
        if not key.startswith("chunks/"):
            return super().get(key)
        with self.lock:
            self.started += 1
            number = self.started
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            if number == 2:
                self.second_started.set()
            if number == 1:
                self.first_saw_second = self.second_started.wait(timeout=10)
            return super().get(key)
        finally:
            with self.lock:
                self.running -= 1


def test_read_ahead_fetches_in_parallel_in_order_and_bounded(store_dir, clock):
    repo = Repository.create(RemoteDirectory(store_dir), encryption=False, chunk_size=CHUNK)
    data = mixed_disk(60 * CHUNK + 123, CHUNK, seed=31)  # 40 stored chunks, 21 zero ones
    with repo.start_backup("vm-a", clock()) as writer:
        write_disk(writer, "xvda", data)
        manifest = writer.commit()
    store = WatchedStore(store_dir)
    reader = Repository.open(store).open_disk(manifest.id, "xvda", read_ahead=6, workers=4)

    ids = manifest.disk("xvda").chunks
    offsets, pieces, outstanding = [], [], []
    for offset, piece in reader.stream():
        offsets.append(offset)
        pieces.append(piece)
        # chunk fetches requested but not yet handed out (zero chunks need no fetch)
        outstanding.append(store.started - sum(1 for cid in ids[:len(offsets)] if cid))
    assert store.first_saw_second is True
    assert offsets == [i * CHUNK for i in range(61)]
    assert b"".join(pieces) == data
    assert store.started == sum(1 for cid in ids if cid) == 40
    assert store.most_running <= 4
    assert max(outstanding) <= 6


def test_read_ahead_defaults_follow_the_backend(store_dir, clock):
    repo = Repository.create(RemoteDirectory(store_dir), encryption=False, chunk_size=CHUNK)
    with repo.start_backup("vm-a", clock()) as writer:
        write_disk(writer, "xvda", mixed_disk(3 * CHUNK, CHUNK))
        manifest = writer.commit()
    reader = repo.open_disk(manifest.id, "xvda")
    assert (reader.workers, reader.read_ahead) == (RemoteDirectory.parallelism,
                                                   RemoteDirectory.parallelism + 4)
