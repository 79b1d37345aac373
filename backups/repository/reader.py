"""Restore side: a disk's content as an ordered stream of plaintext chunks.

Chunks are fetched and decoded (tag, decompression and id checked) by a few threads ahead of
the consumer; at most `read_ahead` chunks are held, so memory stays bounded."""
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from .errors import ChunkCorruptError


class DiskReader:
    def __init__(self, repo, disk, *, read_ahead=8, workers=2):
        self.repo = repo
        self.disk = disk
        self.key = disk.key
        self.virtual_size = disk.virtual_size
        self.chunk_size = disk.chunk_size
        self.read_ahead = max(1, read_ahead)
        self.workers = workers

    def _fetch(self, index, chunk_id):
        data = self.repo.read_chunk(chunk_id)
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
