"""One VM's backup from start to finish: lease, connect, prepare, stream, commit, clean up.

The manifest is written last (by the repository), the restore point row after it; whatever
fails, the snapshots this backup made are deleted and the VM gets its power state back. A
transfer broken by a dropped connection (a master that died, a network blip) is retried a
bounded number of times on a fresh connection; chunks already stored are not sent again.
"""
import http.client
import logging
import os
import socket
import time
from datetime import datetime, timedelta, timezone as dt_timezone

import XenAPI
from django.db import transaction
from django.utils import timezone

from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import acting_as, record_event
from sesamweb.identifiers import parse_id
from xenpools.connection import PoolConnection, PoolConnectionLost, PoolError, PoolTaskFailed, PoolUnreachable

from ..choices import BackupKind, BackupMethod, BackupPhase, RunStatus
from ..formats.nbd import NbdError
from ..formats.vhd import VhdError
from ..formats.xva import XvaError
from ..models import RestorePoint, VmBackup
from ..notifications import run_finished
from ..repository import RepositoryError, StoreError, WrongKeyError
from ..restore.replication import replicate_after_backup
from ..stores import open_repository
from .allocator import keep_buffers_resident
from .preflight import BackupSkipped, run_preflight
from .prepare import BackupFailed, describe_failure, failure_code, prepare_vm, release
from .progress import BackupCancelled, ProgressReporter
from .leftovers import clean_backup_leftovers
from .slots import StreamSlots, WaitForStream, release_all, requeue_waiting
from .snapshots import CHAIN_KEY, destroy_vdi, snapshot_disks
from .sources import (ChainBroken, changed_block_maps, check_chain, export_metadata, nbd_mode, stream_changed_blocks,
                      stream_full_export)
from .tracking import enable_tracking, record_tracking

log = logging.getLogger(__name__)

MAX_TRANSFER_ATTEMPTS = 3
LEASE_STALE_AFTER = 120          # seconds without a heartbeat before a running backup is presumed dead
TRANSFER_ERRORS = (PoolUnreachable, XvaError, NbdError, VhdError, http.client.HTTPException,
                   ConnectionError, socket.timeout)


def worker_identity():
    return f"{socket.gethostname()}:{os.getpid()}"


# -- leases ----------------------------------------------------------------------------------
def acquire_lease(vm_backup_id, owner) -> bool:
    """Claim a queued backup. A re-delivered task finds it claimed and does nothing."""
    now = timezone.now()
    claimed = VmBackup.objects.filter(pk=vm_backup_id, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING, lease_owner=owner, lease_heartbeat=now, started_at=now,
        phase=BackupPhase.CONNECTING, waiting="", waiting_scope="",
    )
    return claimed == 1


def owner_is_dead(owner) -> bool:
    """A lease owner that was a process on this host which no longer exists: dead for sure, no
    need to wait for its heartbeat to go stale. (A reused pid only delays that to the stale
    timeout.)"""
    host, _, pid_text = (owner or "").rpartition(":")
    pid = parse_id(pid_text)
    if host != socket.gethostname() or not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(int(pid))


def _is_zombie(pid) -> bool:
    """A killed process its parent has not reaped yet (a cluster's sentinel reaps its workers
    only on its next guard pass) still answers kill(0), but it is dead."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def fail_abandoned_backups(now=None):
    """Backups whose worker stopped heart-beating (killed, host lost), or whose process on this
    host is gone, are marked failed.

    Their snapshots are removed by the next backup of the same pool (cleanup_leftovers)."""
    cutoff = (now or timezone.now()) - timezone.timedelta(seconds=LEASE_STALE_AFTER)
    running = VmBackup.objects.filter(status=RunStatus.RUNNING)
    stale = [(b, {"lease_heartbeat__lt": cutoff}) for b in running.filter(lease_heartbeat__lt=cutoff)]
    stale += [(b, {"lease_owner": b.lease_owner})
              for b in running.exclude(pk__in=[b.pk for b, _ in stale]).only("pk", "lease_owner", "run_id")
              if owner_is_dead(b.lease_owner)]
    failed = []
    for vm_backup, still in stale:
        updated = VmBackup.objects.filter(pk=vm_backup.pk, status=RunStatus.RUNNING, **still).update(
            status=RunStatus.FAILED, finished_at=timezone.now(),
            error=f"the worker {vm_backup.lease_owner} stopped during the backup (killed or lost); "
                  "no restore point was written",
        )
        if updated:
            failed.append(vm_backup.pk)
            release_all(vm_backup.pk)
            finish_run_if_done(vm_backup.run_id)
    return failed


# -- cleanup of what earlier, interrupted backups left on the pool ---------------------------
def cleanup_leftovers(conn, reporter=None):
    """Delete snapshots tagged by backups that are no longer running, and chain disks no
    restore point refers to (backups/engine/leftovers.py, shared with the periodic clean-up
    of every pool). Returns the number of objects removed."""
    report = clean_backup_leftovers(conn.xenapi)
    if report.removed and reporter:
        reporter.warn(f"removed {len(report.removed)} snapshot(s) left on the pool by interrupted backups")
    for leftover, reason in report.kept:
        log.warning("could not remove %s: %s", leftover.describe(), reason)
    return len(report.removed)


# -- the backup ------------------------------------------------------------------------------
def run_vm_backup(vm_backup_id, *, owner=None, requeue_when_busy=False):
    """Run one queued VM backup to its end. Returns the VmBackup, or None if another worker has it.

    Its stream slots (job, data store, pool host) are taken once the VM is found: when one is
    full, a worker (requeue_when_busy) puts the VM back in the queue with the reason and
    returns it still queued; a process running backups itself waits for the slot."""
    keep_buffers_resident()
    fail_abandoned_backups()
    owner = owner or worker_identity()
    if not acquire_lease(vm_backup_id, owner):
        return None
    vm_backup = VmBackup.objects.select_related("store", "pool", "run").get(pk=vm_backup_id)
    BackupRunState.started(vm_backup.run)
    reporter = ProgressReporter(vm_backup)
    reporter.start_heartbeat()
    outcome = RunStatus.FAILED
    slots = StreamSlots(vm_backup, wait=not requeue_when_busy)
    try:
        with acting_as(vm_backup.run.requested_by, source=f"worker:{owner}"):
            _run(vm_backup, reporter, slots)
        outcome = RunStatus.WARNING if vm_backup.warnings else RunStatus.SUCCESS
    except WaitForStream as exc:
        outcome = exc
    except BackupCancelled as exc:
        outcome, vm_backup.error = RunStatus.CANCELLED, str(exc)
    except BackupSkipped as exc:
        outcome, vm_backup.error = RunStatus.SKIPPED, str(exc)
    except BackupFailed as exc:
        vm_backup.error = str(exc)
    except WrongKeyError as exc:
        vm_backup.error = f"cannot open data store {vm_backup.store}: {exc}"
    except StoreError as exc:
        vm_backup.error = f"data store {vm_backup.store}: {exc}"
    except RepositoryError as exc:
        vm_backup.error = f"data store {vm_backup.store}: {exc}"
    except PoolError as exc:
        vm_backup.error = f"pool {vm_backup.pool}: {exc}"
    except XenAPI.Failure as exc:
        vm_backup.error = f"the pool refused: {describe_failure(exc)}"
    except Exception as exc:  # noqa: BLE001 - recorded on the run; the worker stays up
        log.exception("backup %s failed unexpectedly", vm_backup.pk)
        vm_backup.error = f"unexpected error: {exc.__class__.__name__}: {exc}"
    finally:
        slots.release()
        reporter.stop_heartbeat()
    if isinstance(outcome, WaitForStream):
        return requeue_waiting(vm_backup, outcome)
    vm_backup.status = outcome
    # A backup that did not succeed keeps the phase it stopped in (the run page names it).
    if outcome in (RunStatus.SUCCESS, RunStatus.WARNING):
        vm_backup.phase = BackupPhase.DONE
    vm_backup.finished_at = timezone.now()
    VmBackup.objects.filter(pk=vm_backup.pk).update(
        status=outcome, phase=vm_backup.phase, finished_at=vm_backup.finished_at, error=vm_backup.error,
        warnings=vm_backup.warnings, downtime_seconds=vm_backup.downtime_seconds, kind=vm_backup.kind,
        kind_reason=vm_backup.kind_reason,
        restore_point=vm_backup.restore_point, bytes_read=vm_backup.bytes_read,
        bytes_processed=vm_backup.bytes_processed, bytes_new=vm_backup.bytes_new,
        bytes_stored=vm_backup.bytes_stored, total_bytes=vm_backup.total_bytes,
    )
    reporter.flush(force=True)
    reporter._publish({"type": "vm_backup.finished", "status": outcome, "error": vm_backup.error}, force=True)
    with acting_as(vm_backup.run.requested_by, source=f"worker:{owner}"):
        record_event(AuditAction.BACKUP, target=vm_backup, outcome="success" if outcome in (RunStatus.SUCCESS, RunStatus.WARNING) else "failure",
                     message=f"{vm_backup.get_method_display()} backup of {vm_backup.vm_name} to {vm_backup.store}: "
                             f"{RunStatus(outcome).label}" + (f": {vm_backup.error}" if vm_backup.error else ""))
    finish_run_if_done(vm_backup.run_id)
    return vm_backup


def _run(vm_backup, reporter, slots):
    repo = open_repository(vm_backup.store)          # a wrong key fails before the VM is touched
    reporter.phase(BackupPhase.CONNECTING)
    with PoolConnection.open(vm_backup.pool) as conn:
        vm_ref = _find_vm(conn, vm_backup.vm_uuid)
        slots.take(conn, vm_ref)                  # job, data store and pool host: or back to the queue
        cleanup_leftovers(conn, reporter)
        previous = RestorePoint.objects.filter(store=vm_backup.store, vm_uuid=vm_backup.vm_uuid).order_by("-taken_at")[:20]
        for text in run_preflight(conn.xenapi, vm_ref, vm_backup, repo, previous):
            reporter.warn(text)
        parent = _chain_parent(vm_backup) if vm_backup.incremental else None
        track_changes = vm_backup.incremental
        if vm_backup.incremental:
            tracking = enable_tracking(conn.xenapi, vm_ref)
            if record_tracking(vm_backup, tracking):
                reporter.warn(f"full backups only for this VM: {tracking.refused}")
            if tracking.refused:
                _note_kind(vm_backup, f"full: incrementals are not possible: {tracking.refused}")
                parent, track_changes = None, False
            elif tracking.enabled_now and parent is not None:
                _fall_back_to_full(reporter, "changed block tracking was disabled on the VM's disk")
                parent = None
        reporter.check_cancelled()
        reporter.phase(BackupPhase.PREPARING)
        name = f"sesamweb backup {vm_backup.pk} of {vm_backup.vm_name}"
        prepared = prepare_vm(conn, vm_ref, vm_backup, snapshot_name=name)
        for text in prepared.warnings:
            reporter.warn(text)
        if vm_backup.excluded_disks:
            _leave_out_disks(conn, prepared, vm_backup, reporter)
        vm_backup.downtime_seconds = prepared.downtime_seconds
        keep, streamed = {}, False
        try:
            manifest, keep = _stream_with_retries(conn, vm_backup, reporter, repo, prepared, parent, track_changes)
            if not _vm_exists(conn, vm_backup.vm_uuid, prepared):
                reporter.warn("the VM was deleted from the pool during the backup; "
                              "this restore point holds its state at the time of the snapshot")
            streamed = True
        finally:
            stopped_in = vm_backup.phase
            reporter.phase(BackupPhase.CLEANING_UP)
            problems = _clean_up(conn, vm_backup, prepared, keep)
            if prepared.downtime_seconds is not None:
                vm_backup.downtime_seconds = prepared.downtime_seconds
            for text in problems:
                reporter.warn(text)
            if not streamed:
                vm_backup.phase = stopped_in    # the run page names the phase the backup failed in
        point = _index_restore_point(vm_backup, repo, manifest, keep, conn)
        vm_backup.restore_point = point
        replicate_after_backup(vm_backup, reporter.warn)     # queues replicas; never fails the backup
        if keep or (vm_backup.incremental and not track_changes):   # a new chain, or none possible any more
            _drop_older_chains(conn, point)


def _leave_out_disks(conn, prepared, vm_backup, reporter):
    """Excluded disks are removed from our snapshot before it is read, so neither the export
    nor the changed-block path sees them (the VM's own disks are untouched)."""
    if not prepared.snapshot_uuid:
        reporter.warn("the excluded disks were backed up too: an offline backup without a snapshot "
                      "exports the VM itself, with every disk")
        return
    xenapi = conn.xenapi
    for vbd_ref in xenapi.VM.get_VBDs(prepared.export_ref):
        vbd = xenapi.VBD.get_record(vbd_ref)
        if vbd["type"] == "Disk" and vbd["userdevice"] in vm_backup.excluded_disks and vbd["VDI"] != "OpaqueRef:NULL":
            xenapi.VBD.destroy(vbd_ref)
            xenapi.VDI.destroy(vbd["VDI"])


def _find_vm(conn, vm_uuid):
    try:
        return conn.xenapi.VM.get_by_uuid(vm_uuid)
    except XenAPI.Failure as exc:
        if failure_code(exc) == "UUID_INVALID":
            raise BackupFailed("the VM no longer exists in the pool") from exc
        raise


def _note_kind(vm_backup, reason):
    """Why this backup is full after all, where the run page shows it (kind_reason)."""
    vm_backup.kind_reason = reason[:VmBackup._meta.get_field("kind_reason").max_length]


def _fall_back_to_full(reporter, why):
    """An incremental that cannot be: a full backup instead, which starts a new chain (its
    snapshot is kept for the next run), said once on the backup and as its kind's reason."""
    _note_kind(reporter.vm_backup, f"full: {why}")
    _warn_once(reporter, f"full backup instead of incremental: {why}")


def _chain_parent(vm_backup):
    return (RestorePoint.objects.filter(store=vm_backup.store, vm_uuid=vm_backup.vm_uuid)
            .exclude(chain={}).exclude(verify_state="damaged").order_by("-taken_at").first())


def _stream_with_retries(conn, vm_backup, reporter, repo, prepared, parent, track_changes=True):
    """Stream into the store; returns (manifest, chain to keep {key: vdi uuid})."""
    last_error = None
    for attempt in range(1, MAX_TRANSFER_ATTEMPTS + 1):
        VmBackup.objects.filter(pk=vm_backup.pk).update(attempts=attempt)
        reporter.start_attempt()
        try:
            return _stream_once(conn, vm_backup, reporter, repo, prepared, parent, track_changes)
        except TRANSFER_ERRORS as exc:
            last_error = exc
        except PoolTaskFailed as exc:
            if not _vm_exists(conn, vm_backup.vm_uuid, prepared):
                raise BackupFailed("the VM was deleted from the pool during the backup") from exc
            last_error = exc
        if not _vm_exists(conn, vm_backup.vm_uuid, prepared):
            raise BackupFailed("the VM was deleted from the pool during the backup") from last_error
        if attempt < MAX_TRANSFER_ATTEMPTS:
            reporter.warn(f"transfer interrupted ({last_error}); retrying ({attempt + 1}/{MAX_TRANSFER_ATTEMPTS})")
            time.sleep(min(2 ** attempt, 10))
    raise BackupFailed(f"the transfer failed {MAX_TRANSFER_ATTEMPTS} times; last error: {last_error}")


def _vm_exists(conn, vm_uuid, prepared):
    """After a broken transfer: reconnect (the master may have moved) and look for the VM."""
    try:
        conn.reconnect()
        conn.xenapi.VM.get_by_uuid(vm_uuid)
        if prepared.snapshot_uuid:
            prepared.export_ref = conn.xenapi.VM.get_by_uuid(prepared.snapshot_uuid)
        return True
    except XenAPI.Failure as exc:
        if failure_code(exc) == "UUID_INVALID":
            return False
        raise
    except PoolUnreachable:
        return True     # cannot tell yet; the next attempt reports the pool's state


def _stream_once(conn, vm_backup, reporter, repo, prepared, parent, track_changes=True):
    xenapi = conn.xenapi
    started_at = _point_time(vm_backup)
    parent_manifest = repo.load_manifest(parent.point_id) if parent is not None else None
    chain_wanted = (track_changes and vm_backup.incremental and vm_backup.method != BackupMethod.MEMORY
                    and prepared.snapshot_uuid)
    if vm_backup.incremental and vm_backup.method == BackupMethod.MEMORY:
        _warn_once(reporter, "live memory backups are always full: the memory image changes completely")
    disks = snapshot_disks(xenapi, prepared.export_ref) if chain_wanted else {}
    bases = bitmaps = None
    if parent_manifest is not None and chain_wanted:
        try:
            if set(disks) != set(parent.chain):
                raise ChainBroken("the VM's disks changed since the last backup")
            nbd = nbd_mode(xenapi) is not None
            bases = {key: check_chain(xenapi, key, ref, parent.chain[key], parent_manifest.disk(key), nbd=nbd)
                     for key, ref in disks.items()}
            bitmaps = changed_block_maps(xenapi, disks, bases)
        except (ChainBroken, KeyError) as exc:
            bases = None
            _fall_back_to_full(reporter, str(exc))
    metadata = {"pool_uuid": vm_backup.pool.uuid if vm_backup.pool else "", "method": vm_backup.method,
                "vm_name": vm_backup.vm_name}
    reporter.check_cancelled()
    reporter.phase(BackupPhase.STREAMING)
    with repo.start_backup(vm_backup.vm_uuid, started_at, parent=parent.point_id if bases else None,
                           method=vm_backup.method, on_progress=reporter.on_repository_progress) as writer:
        if bases:
            vm_backup.kind = BackupKind.INCREMENTAL
            details = stream_changed_blocks(conn, disks, bases, bitmaps, parent_manifest, writer, reporter)
            ova_xml = export_metadata(conn, prepared.export_ref)
            metadata.update(details)
        else:
            vm_backup.kind = BackupKind.FULL
            ova_xml, _meta = stream_full_export(conn, prepared.export_ref, writer, reporter,
                                                compression=vm_backup.transfer_compression,
                                                preserve_power_state=prepared.preserve_power_state)
        keep = {}
        if chain_wanted:
            for key, ref in disks.items():
                record = xenapi.VDI.get_record(ref)
                keep[key] = {"vdi_uuid": record["uuid"], "virtual_size": int(record["virtual_size"])}
        metadata.update({"kind": vm_backup.kind, "chain": keep, "has_memory": prepared.preserve_power_state,
                         "warnings": list(vm_backup.warnings), "excluded_disks": list(vm_backup.excluded_disks)})
        writer.attach("ova.xml", ova_xml)
        writer.set_metadata(metadata)
        reporter.phase(BackupPhase.COMMITTING)
        manifest = writer.commit()
    return manifest, keep


def _point_time(vm_backup):
    """The new restore point's time: now, to the second (restore point ids have one-second
    resolution), and always after the VM's latest point on this store."""
    now = datetime.now(dt_timezone.utc).replace(microsecond=0)
    latest = (RestorePoint.objects.filter(store=vm_backup.store, vm_uuid=vm_backup.vm_uuid)
              .order_by("-taken_at").values_list("taken_at", flat=True).first())
    if latest is not None and latest >= now:
        return latest + timedelta(seconds=1)
    return now


def _warn_once(reporter, text):
    if text not in reporter.vm_backup.warnings:
        reporter.warn(text)


def _clean_up(conn, vm_backup, prepared, keep):
    """Delete our snapshot, keeping the chain disks (emptied where NBD can read the next
    increments) for the next incremental; restart an offline VM. A connection that broke
    (often the reason the backup failed: the master died) is opened again, failing over to
    the new master, so that nothing is left on the pool."""
    for attempt in (1, 2):
        try:
            if attempt == 2:
                conn.reconnect()
            return _clean_up_once(conn, vm_backup, prepared, keep)
        except PoolConnectionLost as exc:
            if attempt == 1:
                log.info("backup %s: %s; reconnecting to clean up", vm_backup.pk, exc)
                continue
            error = exc
        except PoolError as exc:
            error = exc
        keep.clear()
        return [f"cleanup on the pool failed: {error}; the next backup will retry it"]


def _clean_up_once(conn, vm_backup, prepared, keep):
    problems = []
    keep_refs = []
    xenapi = conn.xenapi
    try:
        for link in keep.values():
            ref = xenapi.VDI.get_by_uuid(link["vdi_uuid"])
            xenapi.VDI.add_to_other_config(ref, CHAIN_KEY, str(vm_backup.pk))
            keep_refs.append(ref)
    except XenAPI.Failure as exc:
        problems.append(f"could not keep the snapshot for the next incremental backup: {describe_failure(exc)}")
        keep.clear()
        keep_refs = []
    try:
        problems += release(conn, prepared, keep_vdis=keep_refs)
        if keep_refs and nbd_mode(xenapi) is not None:
            for ref in keep_refs:    # NBD reads the next changes from the new snapshot: keep only CBT metadata
                destroy_vdi(xenapi, ref, data_only=True)
    except XenAPI.Failure as exc:
        problems.append(f"cleanup on the pool failed: {describe_failure(exc)}; the next backup will retry it")
    return problems


def _drop_older_chains(conn, point):
    """The new restore point carries the chain on: delete the disks older points kept."""
    xenapi = conn.xenapi
    older = (RestorePoint.objects.filter(store=point.store, vm_uuid=point.vm_uuid)
             .exclude(pk=point.pk).exclude(chain={}))
    for old in older:
        for link in old.chain.values():
            try:
                destroy_vdi(xenapi, xenapi.VDI.get_by_uuid(link["vdi_uuid"]), timeout=0)
            except XenAPI.Failure as exc:
                if failure_code(exc) != "UUID_INVALID":       # still there: tagged CHAIN_KEY, found later
                    log.warning("could not remove the older chain disk %s: %s", link["vdi_uuid"],
                                describe_failure(exc))
        RestorePoint.objects.filter(pk=old.pk).update(chain={})


def _index_restore_point(vm_backup, repo, manifest, keep, conn):
    totals = manifest.totals or {}
    point, _ = RestorePoint.objects.update_or_create(
        store=vm_backup.store, point_id=manifest.id,
        defaults=dict(
            vm_uuid=vm_backup.vm_uuid, vm_name=vm_backup.vm_name,
            pool_uuid=vm_backup.pool.uuid if vm_backup.pool else "",
            taken_at=datetime.fromisoformat(manifest.started_at), method=vm_backup.method,
            kind=vm_backup.kind, parent_point_id=manifest.parent or "",
            virtual_size=sum(d.virtual_size for d in manifest.disks),
            bytes_new=totals.get("bytes_new", vm_backup.bytes_new),
            bytes_stored=totals.get("bytes_stored", vm_backup.bytes_stored),
            has_memory=bool(manifest.metadata.get("has_memory")), chain=keep, job_id=vm_backup.run.job_id,
        ),
    )
    return point


class BackupRunState:
    """A run is running once a VM backup starts, and finished once all of them are."""

    @staticmethod
    def started(run):
        type(run).objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
            status=RunStatus.RUNNING, started_at=timezone.now())


def run_outcome(statuses):
    """A run's status from its VMs': a failure fails it; skipped VMs (run window, already
    running) make it "with warnings", as does a run that found nothing to back up."""
    if statuses and all(s == RunStatus.SUCCESS for s in statuses):
        return RunStatus.SUCCESS
    if any(s == RunStatus.FAILED for s in statuses):
        return RunStatus.FAILED
    if statuses and all(s == RunStatus.CANCELLED for s in statuses):
        return RunStatus.CANCELLED
    return RunStatus.WARNING


def finish_run_if_done(run_id):
    from ..models import BackupRun

    with transaction.atomic():
        statuses = list(VmBackup.objects.filter(run_id=run_id).values_list("status", flat=True))
        if any(s in (RunStatus.QUEUED, RunStatus.RUNNING) for s in statuses):
            return
        status = run_outcome(statuses)
        updated = BackupRun.objects.filter(pk=run_id).exclude(status__in=RunStatus.finished()).update(
            status=status, finished_at=timezone.now())
    if not updated:
        return
    from sesamweb.live.publish import publish
    publish(f"run:{run_id}", {"type": "run.finished", "run": run_id, "status": status})
    publish("dashboard", {"type": "run.finished", "run": run_id, "status": status})
    run_finished(run_id)
