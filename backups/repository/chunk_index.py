"""Chunk ids known to be in a remote store, so a backup asks the server only about hits.

On S3 the dedup step's existence check was a HEAD per chunk: one round trip for every new
chunk of a first backup. Instead a backup lists chunks/ once when it starts (one request per
1000 chunks, in a background thread while the first chunks are read) and then:

    id in the index      -> touch the chunk (a server-side copy refreshing its modification
                            time, which gc's age cutoff needs anyway); the touch fails on a
                            missing object, so a chunk gc deleted since the listing is
                            uploaded, never assumed
    id not in the index  -> encode and upload with a conditional PUT; the server refuses it
                            if another writer stored that chunk meanwhile

So the index is only a hint: a stale "exists" costs one failed touch, a stale "missing"
one refused upload, and nothing relies on it for correctness. It is built fresh by every
backup (no file to invalidate after a gc) and holds the first 64 bits of each id in a
sorted array: 8 bytes a chunk, 8 MB for a million chunks (a 1 TB store of 1 MiB chunks).
Two ids sharing 64 bits are as safe as any other stale hit. If the listing fails, lookups
fall back to an existence check per chunk.
"""
import bisect
import logging
import threading
from array import array

from .backends import is_temporary

log = logging.getLogger(__name__)

UNKNOWN = None  # lookup answer while the listing failed: ask the server


def _prefix(chunk_id: str) -> int:
    return int(chunk_id[:16], 16)


class ChunkIndex:
    def __init__(self, backend, *, background=True):
        self.backend = backend
        self._ids = array("Q")
        self._failed = False
        self._ready = threading.Event()
        if background:
            threading.Thread(target=self._load, name="chunk-index", daemon=True).start()
        else:
            self._load()

    def _load(self):
        try:
            ids = array("Q")
            ordered = True
            for key in self.backend.list("chunks/"):
                if is_temporary(key):
                    continue
                try:
                    value = _prefix(key.rsplit("/", 1)[-1])
                except ValueError:
                    continue  # not a chunk name
                ordered = ordered and (not ids or ids[-1] <= value)
                ids.append(value)
            if not ordered:  # S3 lists keys in order, so this is for other servers
                ids = array("Q", sorted(ids))
            self._ids = ids
        except Exception as exc:  # noqa: BLE001 - lookups fall back to existence checks
            log.warning("could not list the chunks of %s (%s): checking each chunk instead",
                        self.backend.location, exc)
            self._failed = True
        finally:
            self._ready.set()

    def count(self) -> int:
        self._ready.wait()
        return len(self._ids)

    def might_contain(self, chunk_id: str):
        """True: listed (maybe deleted since); False: not listed; UNKNOWN: listing failed."""
        self._ready.wait()
        if self._failed:
            return UNKNOWN
        value = _prefix(chunk_id)
        at = bisect.bisect_left(self._ids, value)
        return at < len(self._ids) and self._ids[at] == value
