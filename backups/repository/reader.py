"""Restore side: a disk's content as an ordered stream of plaintext chunks.

Chunks are fetched and decoded (tag, decompression and id checked) by `workers` threads ahead
of the consumer and handed out in disk order; at most `read_ahead` chunks are requested and
not yet consumed, so memory stays bounded (about read_ahead x chunk size, twice while a chunk
is being decoded) whatever the disk size. On S3 each fetch is a round trip, so a restore keeps
the backend's parallelism (8) requests going; decoding is CPU work, so at most one chunk per
core is decoded at a time (the other fetch threads wait for the network, or with their
fetched chunk for a core, instead of time-slicing the cores among 16 decoders).
"""
import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from .errors import ChunkCorruptError


class DiskReader:
    def __init__(self, repo, disk, *, read_ahead=None, workers=None):
        self.repo = repo
        self.disk = disk
        self.key = disk.key
        self.virtual_size = disk.virtual_size
        self.chunk_size = disk.chunk_size
        backend = repo.backend
        self.workers = max(1, workers or (backend.parallelism if backend.remote else 2))
        self.read_ahead = max(1, read_ahead or max(8, self.workers + 4))
        self._decoding = threading.BoundedSemaphore(min(self.workers, os.cpu_count() or 2))

    def _fetch(self, index, chunk_id):
        blob = self.repo.fetch_chunk(chunk_id)
        with self._decoding:
            data = self.repo.decode_chunk(chunk_id, blob)
        del blob
        expected = min(self.chunk_size, self.virtual_size - index * self.chunk_size)
        if len(data) != expected:
            raise ChunkCorruptError(chunk_id, f"length {len(data)} where {expected} was expected")
        return data

    def chunks(self):
        """Yield (offset, data) in disk order; data is None for an all-zero chunk."""
        pending = deque()
        executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="chunk-reader")
        try:
            ids = iter(enumerate(self.disk.chunks))
            exhausted = False
            while True:
                while not exhausted and len(pending) < self.read_ahead:
                    try:
                        index, chunk_id = next(ids)
                    except StopIteration:
                        exhausted = True
                        break
                    future = executor.submit(self._fetch, index, chunk_id) if chunk_id else None
                    pending.append((index, future))
                if not pending:
                    return
                index, future = pending.popleft()
                yield index * self.chunk_size, (future.result() if future else None)
        finally:
            for _, future in pending:
                if future:
                    future.cancel()
            executor.shutdown(wait=True)

    def stream(self):
        """Yield (offset, data) covering the whole disk, zeros included."""
        for offset, data in self.chunks():
            if data is None:
                data = bytes(min(self.chunk_size, self.virtual_size - offset))
            yield offset, data

    def write_to(self, fileobj, *, sparse=False):
        """Write the disk to a file object; with sparse=True zero chunks are seeked over
        (the file must be seekable and is truncated to the virtual size)."""
        for offset, data in (self.chunks() if sparse else self.stream()):
            if data is None:
                continue
            if sparse:
                fileobj.seek(offset)
            fileobj.write(data)
        if sparse:
            fileobj.truncate(self.virtual_size)
        return self.virtual_size
