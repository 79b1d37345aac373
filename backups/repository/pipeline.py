"""The parallel backup writer.

    caller thread: DiskWriter.write(offset, data) re-chunks at the store's chunk size,
                   skips all-zero chunks, hands each chunk to the encoding stage
    encode thread: (patch a parent chunk) -> id -> dedup check -> zstd -> AES-GCM
    store thread:  put (a local write with fsync, or an S3 PUT)

Two stages because they wait on different things: encoding keeps the CPUs busy (one thread
per core), storing mostly waits for the disk's fsync or the network, so several of those
run at once without taking CPU from encoding. On a remote store (S3) the existence check
of the dedup step is a network round trip too, so it runs on a store thread between naming
the chunk and compressing it. A chunk becomes visible under its final name
only once it is durable, as before; only the waiting moved off the encoding threads.

At most `max_in_flight` chunks are queued or in either stage (memory stays bounded at about
2 x max_in_flight x chunk size: the plaintext and its encoded blob); results are recorded by
chunk index as they finish, so one slow (text) chunk never stalls the others. Each encoding
thread owns its zstd compressor (ChunkCodec).

Dedup: a chunk whose id is already known (written or seen during this backup, or listed by
the parent's manifest) costs nothing; otherwise an existence check, and an existing chunk is
"touched" so gc's age cutoff protects it while this backup runs. On a remote store the
existence check is the chunk index instead (chunk_index.py: one listing when the backup
starts): a listed chunk is touched, which fails if a gc deleted it since (then it is stored
again), and an unlisted one is encoded and sent with a conditional PUT at once. Store threads
default to the backend's parallelism (8 S3 requests in flight), max_in_flight to that plus
the encoders. The manifest is written
last, after the store flushed every chunk; leaving the `with` block without commit() writes
no manifest and releases the lease.
"""
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from .chunk_index import UNKNOWN, ChunkIndex
from .chunks import chunk_key, is_zero
from .errors import (BackupAbortedError, BackupExistsError, ChunkCorruptError,
                     ObjectNotFoundError, StoreFullError)
from .gc import gc_ran_since, gc_running, record_gc_state
from .leases import acquire_lease, list_leases, refresh_lease, release_lease
from .manifest import DiskEntry, Manifest, encode_manifest, manifest_key, restore_point_id

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.25  # seconds: at most four progress calls per second


class BackupWriter:
    def __init__(self, repo, vm_uuid, started_at, *, parent=None, method=None, on_progress=None,
                 max_in_flight=None, workers=None, store_workers=None, lease_refresh=60.0):
        self.repo = repo
        self.backend = repo.backend
        self.codec = repo.codec
        self.id = restore_point_id(vm_uuid, started_at)
        self.vm_uuid = vm_uuid
        self.started_at = started_at
        self.parent = parent
        self.method = method
        self.on_progress = on_progress
        if self.backend.exists(manifest_key(self.id)):
            raise BackupExistsError(f"backup {self.id} already exists in {repo.location}")

        self._disks = []
        self._metadata = {}
        self._attachments = {}
        self._known = set()
        self._touched = set()  # existing chunks this backup reuses (gc race re-check)
        self._created = set()  # chunks this backup stored first (removed again if it fails)
        self.removed_chunks = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._error = None
        self._state = "open"
        store_workers = store_workers or self.backend.parallelism
        workers = workers or max(2, os.cpu_count() or 2)
        # A chunk for every store thread and every encoder: memory stays about
        # 2 x max_in_flight x chunk size whatever the disk size.
        max_in_flight = max_in_flight or max(8, store_workers + workers)
        self._slots = threading.BoundedSemaphore(max(1, max_in_flight))
        self._encoders = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chunk-encoder")
        self._storers = ThreadPoolExecutor(max_workers=max(1, store_workers),
                                           thread_name_prefix="chunk-store")
        self.totals = {"bytes_read": 0, "bytes_new": 0, "bytes_stored": 0, "chunks_total": 0,
                       "chunks_new": 0, "chunks_reused": 0, "chunks_zero": 0}
        self._last_progress = 0.0

        self._lease = acquire_lease(self.backend, self.id, parent)
        # Listed after the lease exists: a chunk missing from the listing was stored after
        # this backup started, so gc's cutoff protects it without a touch.
        self._index = ChunkIndex(self.backend) if self.backend.remote else None
        self._stop_refresh = threading.Event()
        self._refresher = threading.Thread(target=self._refresh_lease, args=(lease_refresh,),
                                           name="lease-refresh", daemon=True)
        self._refresher.start()

    # -- context manager -------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._state != "committed":
            self.abort()
        return False

    # -- public interface ------------------------------------------------------------------
    def add_disk(self, disk_key, virtual_size, parent_chunks=None) -> "DiskWriter":
        self._check_open()
        if any(d.key == disk_key for d in self._disks):
            raise ValueError(f"disk {disk_key!r} was already added")
        disk = DiskWriter(self, disk_key, virtual_size, parent_chunks)
        if parent_chunks:
            with self._lock:
                self._known.update(cid for cid in parent_chunks if cid)
        self._disks.append(disk)
        return disk

    def attach(self, name, data: bytes):
        """A small file kept inside the manifest (ova.xml, the VM record as JSON...)."""
        self._check_open()
        self._attachments[name] = bytes(data)

    def set_metadata(self, metadata: dict):
        self._check_open()
        self._metadata.update(metadata)

    def commit(self) -> Manifest:
        """Wait for every chunk, make them durable, then write the manifest (atomically)."""
        self._check_open()
        unfinished = [d.key for d in self._disks if not d.finished]
        if unfinished:
            raise ValueError(f"disks not finished: {', '.join(unfinished)}")
        self._wait_idle()
        self._raise_if_failed()
        self._recheck_after_concurrent_gc()
        self.backend.flush()
        manifest = Manifest(
            id=self.id, vm_uuid=self.vm_uuid,
            started_at=self.started_at.astimezone(timezone.utc).isoformat(),
            finished_at=datetime.now(timezone.utc).isoformat(),
            method=self.method, parent=self.parent,
            disks=[DiskEntry(d.key, d.virtual_size, self.repo.chunk_size, d.chunks)
                   for d in self._disks],
            metadata=self._metadata, attachments=self._attachments, totals=dict(self.totals),
        )
        keys = self.repo.keys
        blob = encode_manifest(manifest, keys.manifest_encryption if keys else None)
        if not self.backend.put_atomic(manifest_key(self.id), blob, overwrite=False):
            raise BackupExistsError(f"backup {self.id} already exists in {self.repo.location}")
        self._state = "committed"
        self._close()
        self._report_progress(force=True)
        return manifest

    def abort(self):
        """Stop without a manifest (exception, cancel), and remove the chunks this backup
        stored first, so that a store that filled up has its room back at once (otherwise gc
        reclaims them after its grace period)."""
        if self._state in ("committed", "aborted"):
            return
        self._state = "aborted"
        self._wait_idle()
        self._encoders.shutdown(wait=True)
        self._storers.shutdown(wait=True)
        try:
            self.removed_chunks = self._remove_own_chunks()
        except Exception as exc:  # noqa: BLE001 - gc reclaims them later; the backup's own error matters
            log.warning("could not remove the chunks of failed backup %s: %s", self.id, exc)
        self._close()

    # -- internals -------------------------------------------------------------------------
    def _remove_own_chunks(self, check_every=64):
        """Delete the chunks this failed backup created, while no other backup runs on the
        store (one could be reusing them). Like gc, it marks gc.json as running first, so a
        backup that starts meanwhile re-checks the chunks it reuses before its manifest and
        fails cleanly instead of committing a broken restore point; it stops as soon as
        another backup appears. A gc already running does the job itself."""
        created = sorted(self._created)
        if not created or self._others_running() or gc_running(self.backend):
            return 0
        started = time.time()
        try:
            record_gc_state(self.backend, started, None)
        except StoreFullError:
            pass            # no room even for gc.json: the leases alone guard the deletion
        removed = 0
        try:
            for n, chunk_id in enumerate(created):
                if n and n % check_every == 0 and self._others_running():
                    break
                self.backend.delete(chunk_key(chunk_id))
                removed += 1
        finally:
            try:
                record_gc_state(self.backend, started, time.time())
            except StoreFullError:
                pass
        log.info("failed backup %s: removed %d of its %d new chunks", self.id, removed, len(created))
        return removed

    def _others_running(self):
        return any(lease.lease_id != self._lease.lease_id for lease in list_leases(self.backend))

    def _recheck_after_concurrent_gc(self):
        """A gc that stat-ed a reused chunk just before this backup touched it may have
        deleted it. If a gc ran during this backup, check those chunks still exist; a missing
        one fails the backup (no manifest) rather than committing a broken restore point."""
        if not self._touched or not gc_ran_since(self.backend, self._lease.started):
            return
        touched = sorted(self._touched)
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="gc-recheck") as executor:
            present = list(executor.map(lambda c: self.backend.exists(chunk_key(c)), touched))
        missing = [c for c, ok in zip(touched, present) if not ok]
        if missing:
            raise ChunkCorruptError(missing[0], "removed by a concurrent garbage collection; "
                                                "run the backup again")

    def _close(self):
        self._encoders.shutdown(wait=True)
        self._storers.shutdown(wait=True)
        self._stop_refresh.set()
        self._refresher.join()
        try:
            release_lease(self.backend, self._lease)
        except Exception as exc:  # the store may be full or gone; a stale lease expires
            log.warning("could not release lease of backup %s: %s", self.id, exc)

    def _refresh_lease(self, interval):
        while not self._stop_refresh.wait(interval):
            try:
                refresh_lease(self.backend, self._lease)
            except Exception as exc:
                log.warning("could not refresh lease of backup %s: %s", self.id, exc)

    def _check_open(self):
        if self._state != "open":
            raise BackupAbortedError(f"backup {self.id} is {self._state}")
        self._raise_if_failed()

    def _raise_if_failed(self):
        if self._error is not None:
            raise self._error

    def _wait_idle(self):
        with self._idle:
            while self._pending:
                self._idle.wait()

    def _dispatch(self, disk, index, data, base_id=None, ranges=None):
        """Hand one chunk to the encoders (blocks while max_in_flight chunks are busy)."""
        if base_id is None and is_zero(data):
            self._record(disk, index, None)
            return
        self._raise_if_failed()
        self._slots.acquire()
        with self._lock:
            self._pending += 1
        try:
            self._encoders.submit(self._run_step, self._identify, disk, index, data, base_id, ranges)
        except BaseException:
            self._task_done()
            raise

    def _task_done(self):
        self._slots.release()
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    # A chunk's way through the stages. Each step returns True when it handed the chunk on
    # to another stage, which then owns the chunk's slot; any other outcome ends it here.
    def _run_step(self, step, *args):
        handed_on = False
        try:
            if self._error is None and self._state != "aborted":
                handed_on = step(*args)
        except BaseException as exc:
            self._fail(exc)
        finally:
            if not handed_on:
                self._task_done()

    def _hand_on(self, pool, step, *args):
        pool.submit(self._run_step, step, *args)
        return True

    def _identify(self, disk, index, data, base_id, ranges):
        """Encoding stage: patch a partial chunk, name it, skip what is zero or known."""
        if base_id is not None:
            # A partial write over a parent chunk: start from the parent's content.
            patched = bytearray(self.repo.read_chunk(base_id))
            for start, end in ranges:
                patched[start:end] = data[start:end]
            data = patched
        if is_zero(data):
            self._record(disk, index, None)
            return False
        chunk_id = self.codec.chunk_id(data)
        with self._lock:
            known = chunk_id in self._known
        if known:
            self._record(disk, index, chunk_id)
            return False
        listed = self._index.might_contain(chunk_id) if self._index is not None else UNKNOWN
        if listed is False:  # not in the store when this backup began: no round trip
            return self._encode(disk, index, chunk_id, data)
        if self.backend.remote:  # a touch waits for the network: not on a CPU thread
            return self._hand_on(self._storers, self._look_up, disk, index, chunk_id, data,
                                 listed)
        if self._reuse_if_stored(disk, index, chunk_id, listed):
            return False
        return self._encode(disk, index, chunk_id, data)

    def _look_up(self, disk, index, chunk_id, data, listed):
        """Store stage, remote stores: reuse a stored chunk, else send it to be encoded."""
        if self._reuse_if_stored(disk, index, chunk_id, listed):
            return False
        return self._hand_on(self._encoders, self._encode, disk, index, chunk_id, data)

    def _reuse_if_stored(self, disk, index, chunk_id, listed=UNKNOWN):
        """Reuse a stored chunk after touching it. A listed chunk is not checked first: the
        touch fails on a chunk deleted since the listing (a gc), which is then stored again."""
        key = chunk_key(chunk_id)
        if listed is UNKNOWN and not self.backend.exists(key):
            return False
        try:
            self.backend.touch(key)
        except ObjectNotFoundError:
            return False
        with self._lock:
            self._touched.add(chunk_id)
            self._known.add(chunk_id)
        self._record(disk, index, chunk_id)
        return True

    def _encode(self, disk, index, chunk_id, data):
        blob = self.codec.encode(chunk_id, data)
        return self._hand_on(self._storers, self._store, disk, index, chunk_id, blob, len(data))

    def _store(self, disk, index, chunk_id, blob, length):
        new = self.backend.put_atomic(chunk_key(chunk_id), blob, overwrite=False)
        with self._lock:
            self._known.add(chunk_id)
            # Another writer stored it first: reused like a looked-up chunk (re-checked after a gc).
            (self._created if new else self._touched).add(chunk_id)
        self._record(disk, index, chunk_id, new_bytes=length if new else 0,
                     stored=len(blob) if new else 0)
        return False

    def _record(self, disk, index, chunk_id, new_bytes=0, stored=0):
        with self._lock:
            disk.chunks[index] = chunk_id
            t = self.totals
            t["chunks_total"] += 1
            if chunk_id is None:
                t["chunks_zero"] += 1
            elif new_bytes:
                t["chunks_new"] += 1
                t["bytes_new"] += new_bytes
                t["bytes_stored"] += stored
            else:
                t["chunks_reused"] += 1

    def _fail(self, exc):
        with self._lock:
            if self._error is None:
                self._error = exc

    def _report_progress(self, force=False):
        if self.on_progress is None:
            return
        now = time.monotonic()
        if force or now - self._last_progress >= PROGRESS_INTERVAL:
            self._last_progress = now
            t = self.totals
            self.on_progress(t["bytes_read"], t["bytes_new"], t["bytes_stored"])


class DiskWriter:
    """Receives one disk's data as (offset, bytes) in increasing offset order, any sizes.

    Unwritten ranges take the parent's content when parent_chunks is given (an incremental:
    only changed blocks are written), else they are zeros (a sparse full export)."""

    def __init__(self, writer: BackupWriter, key, virtual_size, parent_chunks):
        self.writer = writer
        self.key = key
        self.virtual_size = virtual_size
        self.chunk_size = writer.repo.chunk_size
        self.count = -(-virtual_size // self.chunk_size)
        if parent_chunks is not None and len(parent_chunks) != self.count:
            raise ValueError(f"disk {key}: parent has {len(parent_chunks)} chunks, this size "
                             f"needs {self.count} (resized disk: take a full backup)")
        self.parent_chunks = parent_chunks
        self.chunks = [None] * self.count
        self.finished = False
        self._position = 0  # lowest offset the next write may use
        self._next_index = 0  # first chunk index not yet decided
        self._current = None  # index of the chunk being assembled
        self._buffer = None
        self._ranges = []  # written [start, end) ranges within the current chunk

    def _chunk_length(self, index):
        return min(self.chunk_size, self.virtual_size - index * self.chunk_size)

    def write(self, offset, data):
        w = self.writer
        w._check_open()
        if self.finished:
            raise ValueError(f"disk {self.key} is finished")
        if offset < self._position:
            raise ValueError(f"disk {self.key}: writes must go forward (offset {offset} < "
                             f"{self._position})")
        if offset + len(data) > self.virtual_size:
            raise ValueError(f"disk {self.key}: write beyond the virtual size")
        with w._lock:
            w.totals["bytes_read"] += len(data)
        view = memoryview(data)
        while view:
            index = offset // self.chunk_size
            within = offset - index * self.chunk_size
            length = self._chunk_length(index)
            n = min(len(view), length - within)
            if self._current != index:
                self._flush_current()
                self._skip_to(index)
                if within == 0 and n == length:  # a whole chunk in one piece: no assembly
                    whole = data if n == len(data) and isinstance(data, bytes) else bytes(view[:n])
                    w._dispatch(self, index, whole)
                    self._next_index = index + 1
                    offset += n
                    view = view[n:]
                    continue
                self._current, self._buffer, self._ranges = index, bytearray(length), []
            self._buffer[within:within + n] = view[:n]
            if self._ranges and self._ranges[-1][1] == within:
                self._ranges[-1][1] = within + n
            else:
                self._ranges.append([within, within + n])
            offset += n
            view = view[n:]
            if self._ranges == [[0, length]]:
                self._flush_current()
        self._position = offset
        w._report_progress()

    def finish(self):
        """Store the rest of the disk; returns once every chunk of it is stored."""
        self.writer._check_open()
        self._flush_current()
        self._skip_to(self.count)
        self.writer._wait_idle()
        self.writer._raise_if_failed()
        self.finished = True

    def _flush_current(self):
        if self._current is None:
            return
        index, buffer, ranges = self._current, self._buffer, self._ranges
        self._current, self._buffer, self._ranges = None, None, []
        complete = ranges == [[0, len(buffer)]]
        base = None if complete or self.parent_chunks is None else self.parent_chunks[index]
        self.writer._dispatch(self, index, buffer, base, ranges if base else None)
        self._next_index = index + 1

    def _skip_to(self, index):
        """Chunks nobody wrote: the parent's chunk, or zeros."""
        t = self.writer.totals
        with self.writer._lock:
            for i in range(self._next_index, index):
                cid = self.parent_chunks[i] if self.parent_chunks is not None else None
                self.chunks[i] = cid
                t["chunks_total"] += 1
                t["chunks_reused" if cid else "chunks_zero"] += 1
        self._next_index = max(self._next_index, index)
