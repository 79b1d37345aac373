"""Garbage collection: mark every chunk referenced by a manifest, then sweep unreferenced
chunks whose modification time is older than the cutoff

    cutoff = min(now, start of the oldest live running-backup lease) - grace period

All times are the store's clock (modification times of chunks, leases and gc.json), so clock
differences between workers and the store do not matter.

A running backup stores new chunks after its start and touches existing chunks it reuses,
so nothing it depends on is older than the cutoff; the chunks of its parent are referenced
by the parent's manifest, which prune refuses to delete while the backup runs. Left-over
temporary files (a crash mid-write) older than the cutoff are removed too. If any manifest
is unreadable GC stops before deleting: it cannot know what that backup references.
"""
import json
import logging
import time
from dataclasses import dataclass, field

from .backends import is_temporary
from .errors import BackupNotFoundError, GarbageCollectionAbortedError, ManifestCorruptError
from .errors import ObjectNotFoundError, StoreFullError
from .leases import DEFAULT_STALE_AFTER, list_leases
from .manifest import list_backup_ids

log = logging.getLogger(__name__)

DEFAULT_GRACE_PERIOD = 3600.0
GC_STATE_KEY = "gc.json"  # when gc last started and finished (writers re-check if they overlap)


def gc_ran_since(backend, since: float) -> bool:
    """True when a gc is running or finished after `since` (store-clock epoch seconds)."""
    try:
        state = json.loads(backend.get(GC_STATE_KEY))
        finished_at = backend.stat(GC_STATE_KEY).mtime  # written last when gc finished
    except ObjectNotFoundError:
        return False
    except ValueError:
        return True
    return state.get("finished") is None or finished_at >= since


def gc_running(backend) -> bool:
    try:
        return json.loads(backend.get(GC_STATE_KEY)).get("finished") is None
    except ObjectNotFoundError:
        return False
    except ValueError:
        return True


def record_gc_state(backend, started, finished):
    state = {"started": started, "finished": finished}
    backend.put_atomic(GC_STATE_KEY, json.dumps(state).encode())


@dataclass
class GcReport:
    cutoff: float
    referenced_chunks: int = 0
    deleted_chunks: int = 0
    deleted_bytes: int = 0
    deleted_temporaries: int = 0
    kept_recent: int = 0  # unreferenced but newer than the cutoff
    dry_run: bool = False
    warnings: list = field(default_factory=list)


def collect_garbage(repo, *, grace_period=DEFAULT_GRACE_PERIOD, stale_after=DEFAULT_STALE_AFTER,
                    now=None, dry_run=False, on_progress=None) -> GcReport:
    """on_progress(chunks scanned, chunks removed) is called every PROGRESS_EVERY chunks."""
    backend = repo.backend
    started = time.time()
    store_now = started
    if not dry_run:
        try:
            record_gc_state(backend, started, None)
            store_now = backend.stat(GC_STATE_KEY).mtime  # the clock that stamps chunks
        except StoreFullError:
            # A full store is when gc is needed most; a backup cannot write there anyway.
            log.warning("gc of %s: store full, running without recording gc state",
                        backend.location)
    try:
        return _collect(repo, backend, grace_period, stale_after,
                        store_now if now is None else now, dry_run, on_progress)
    finally:
        if not dry_run:
            record_gc_state(backend, started, time.time())


PROGRESS_EVERY = 500


def _collect(repo, backend, grace_period, stale_after, now, dry_run, on_progress=None):
    warnings = []
    leases = list_leases(backend, stale_after=stale_after, now=now, include_stale=True)
    live = []
    for lease in leases:
        if lease.stale:
            warnings.append(f"ignored stale lease of backup {lease.restore_point_id}")
        else:
            live.append(lease)
    cutoff = min([now] + [lease.started for lease in live]) - grace_period
    report = GcReport(cutoff=cutoff, dry_run=dry_run, warnings=warnings)

    referenced = set()
    ids, _ = list_backup_ids(backend)
    for rp_id in ids:
        try:
            referenced |= repo.load_manifest(rp_id).chunk_ids()
        except BackupNotFoundError:
            continue  # pruned meanwhile
        except ManifestCorruptError as exc:
            raise GarbageCollectionAbortedError(
                f"{exc}; nothing was deleted (repair or delete that backup first)") from exc
    report.referenced_chunks = len(referenced)

    scanned = 0
    for key in backend.list("chunks/"):
        scanned += 1
        if on_progress and scanned % PROGRESS_EVERY == 0:
            on_progress(scanned, report.deleted_chunks)
        chunk_id = key.rsplit("/", 1)[-1]
        if not is_temporary(key) and chunk_id in referenced:
            continue
        try:
            stat = backend.stat(key)  # just before deleting: a reused chunk was touched
        except ObjectNotFoundError:
            continue
        if stat.mtime >= cutoff:
            if not is_temporary(key):
                report.kept_recent += 1
            continue
        if not dry_run:
            backend.delete(key)
        if is_temporary(key):
            report.deleted_temporaries += 1
        else:
            report.deleted_chunks += 1
            report.deleted_bytes += stat.size
    for prefix in ("backups/", "locks/"):
        for key in backend.list(prefix):
            if is_temporary(key):
                try:
                    if backend.stat(key).mtime < cutoff:
                        if not dry_run:
                            backend.delete(key)
                        report.deleted_temporaries += 1
                except ObjectNotFoundError:
                    continue
    for warning in warnings:
        log.warning("gc of %s: %s", backend.location, warning)
    return report
