"""Bring a VM to the state its backup method needs, and back again afterwards.

offline  : clean shutdown (hard shutdown after the timeout when allowed); then either a
           snapshot and an immediate restart (downtime = shutdown + boot), or an export of the
           halted VM itself, restarted when the export is done
memory   : VM.checkpoint (disks and RAM); the export keeps the suspended state
quiesced : VM.snapshot_with_quiesce (VSS), with the job's policy when the pool or guest
           cannot (fail, or a normal snapshot with a warning)
normal   : VM.snapshot

Whatever happens, `Prepared.release()` deletes the snapshots this backup made (except the
disks kept for the next incremental) and gives the VM back its power state.
"""
import logging
import time
from dataclasses import dataclass, field

import XenAPI

from xenpools.connection import PoolTaskFailed, PoolTimeout

from ..choices import BackupMethod, QuiesceFallback
from .slots import snapshot_slot
from .snapshots import NULL_REF, DiskLeftOver, destroy_snapshot, tag_snapshot

log = logging.getLogger(__name__)

QUIESCE_UNAVAILABLE = {
    "MESSAGE_REMOVED": "this pool's XenServer version no longer has VSS snapshots (removed in 8.1)",
    "MESSAGE_METHOD_UNKNOWN": "this pool does not offer VSS snapshots",
    "VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED": "the guest does not support VSS snapshots (Windows with the VSS provider only)",
    "VM_SNAPSHOT_WITH_QUIESCE_FAILED": "the guest's VSS snapshot failed",
    "VM_SNAPSHOT_WITH_QUIESCE_TIMEOUT": "the guest's VSS snapshot timed out",
    "VM_SNAPSHOT_WITH_QUIESCE_PLUGIN_DOES_NOT_RESPOND": "the guest's VSS provider does not respond",
}


class BackupFailed(Exception):
    """A backup cannot go on; the message is meant for the administrator."""


@dataclass
class Prepared:
    """What to export, and how to undo the preparation."""

    export_ref: str                        # the VM or snapshot the export reads
    snapshot_uuid: str | None = None       # our snapshot (None when exporting the VM itself)
    preserve_power_state: bool = False     # memory backups keep the suspended state
    restart_vm: bool = False               # the VM was shut down and is still off
    start_host: str | None = None          # where it ran
    downtime_seconds: float | None = None
    warnings: list = field(default_factory=list)
    shutdown_started: float | None = None


def failure_code(exc):
    return exc.details[0] if isinstance(exc, XenAPI.Failure) and exc.details else ""


def describe_failure(exc):
    if isinstance(exc, XenAPI.Failure):
        return " ".join(str(part) for part in exc.details if part != "")
    return str(exc)


def prepare_vm(conn, vm_ref, vm_backup, *, snapshot_name, on_phase=None) -> Prepared:
    """Run the backup method's preparation; every snapshot made is tagged with the backup id."""
    xenapi = conn.xenapi
    record = xenapi.VM.get_record(vm_ref)
    power = record["power_state"]
    method = vm_backup.method
    if power not in ("Running", "Halted", "Suspended", "Paused"):
        raise BackupFailed(f"the VM is in power state {power}")

    if method == BackupMethod.OFFLINE:
        return _prepare_offline(conn, vm_ref, record, vm_backup, snapshot_name)
    if method == BackupMethod.MEMORY:
        # xapi checkpoints running VMs (suspended for the copy) and suspended ones (their
        # suspend image is cloned); a paused VM is not suspended, so it has no memory image.
        if power not in ("Running", "Suspended"):
            prepared = _snapshot(conn, vm_ref, vm_backup, snapshot_name, "snapshot")
            prepared.warnings.append(f"the VM was {power.lower()}: no memory to capture, its disks were backed up")
            return prepared
        prepared = _snapshot(conn, vm_ref, vm_backup, snapshot_name, "checkpoint")
        prepared.preserve_power_state = True
        return prepared
    if method == BackupMethod.QUIESCED:
        try:
            return _snapshot(conn, vm_ref, vm_backup, snapshot_name, "snapshot_with_quiesce")
        except XenAPI.Failure as exc:
            reason = QUIESCE_UNAVAILABLE.get(failure_code(exc))
            if reason is None:
                raise
            if vm_backup.quiesce_fallback != QuiesceFallback.NORMAL:
                raise BackupFailed(f"quiesced snapshot not possible: {reason}") from exc
            prepared = _snapshot(conn, vm_ref, vm_backup, snapshot_name, "snapshot")
            prepared.warnings.append(f"quiesced snapshot not possible ({reason}); took a normal snapshot instead")
            return prepared
    return _snapshot(conn, vm_ref, vm_backup, snapshot_name, "snapshot")


# Storage-manager failures of a snapshot (libs/sm/core/XE_SR_ERRORCODES.xml) that are not
# a full SR, with what the administrator can do.
SR_SNAPSHOT_FAILURES = {
    "SR_BACKEND_FAILURE_109": ("the snapshot chain of a disk is too long (the storage manager allows at most "
                               "30 levels)", "let the storage repository coalesce: delete old snapshots of "
                               "this VM and wait for the pool's garbage collector to merge them (SR.scan starts "
                               "it), then back up again"),
}
FULL_SR_FAILURES = {"SR_BACKEND_FAILURE_44", "SR_FULL"}
SNAPSHOT_TIMEOUT = 2 * 3600     # seconds: far beyond any healthy snapshot, short of forever


def _snapshot(conn, vm_ref, vm_backup, name, operation) -> Prepared:
    """Take the snapshot through an Async task: a snapshot takes as long as the storage needs
    (minutes on a busy LVM SR), longer than one XML-RPC call may wait. ``operation`` is the
    name of the VM call (snapshot, checkpoint, snapshot_with_quiesce)."""
    xenapi = conn.xenapi
    try:
        with snapshot_slot(vm_backup):          # the pool's snapshot queue
            task = getattr(xenapi.Async.VM, operation)(vm_ref, name)
            try:
                snapshot_ref = conn.wait_task(task, poll=0.2, timeout=SNAPSHOT_TIMEOUT)
            except PoolTaskFailed as exc:
                raise XenAPI.Failure(exc.error_info) from exc
            except PoolTimeout as exc:
                xenapi.task.cancel(task)           # xapi stops at its next check; nothing to tag
                limit = f"{SNAPSHOT_TIMEOUT // 60} min" if SNAPSHOT_TIMEOUT >= 60 else f"{SNAPSHOT_TIMEOUT} s"
                raise BackupFailed(f"the pool did not finish the {operation.replace('_', ' ')} within {limit}; "
                                   "it was cancelled") from exc
            finally:
                try:
                    xenapi.task.destroy(task)
                except XenAPI.Failure:
                    pass
    except XenAPI.Failure as exc:
        code = failure_code(exc)
        if code in SR_SNAPSHOT_FAILURES:
            what, advice = SR_SNAPSHOT_FAILURES[code]
            raise BackupFailed(f"the pool could not take a snapshot: {what} ({describe_failure(exc)}); {advice}") from exc
        if code in FULL_SR_FAILURES:
            raise BackupFailed(f"the pool could not take a snapshot: the storage repository is full ({describe_failure(exc)})") from exc
        if code.startswith("SR_BACKEND_FAILURE"):
            raise BackupFailed(f"the pool could not take a snapshot: the storage manager failed ({describe_failure(exc)})") from exc
        raise
    tag_snapshot(xenapi, snapshot_ref, vm_backup.pk)
    return Prepared(export_ref=snapshot_ref, snapshot_uuid=conn.xenapi.VM.get_uuid(snapshot_ref))


def _prepare_offline(conn, vm_ref, record, vm_backup, name) -> Prepared:
    xenapi = conn.xenapi
    if record["power_state"] != "Running":
        # Already off: nothing to stop. A snapshot keeps the VM usable during the export.
        return _snapshot(conn, vm_ref, vm_backup, name, "snapshot")
    host = record["resident_on"] if record["resident_on"] != NULL_REF else None
    started = time.monotonic()
    warnings = _shut_down(conn, vm_ref, vm_backup)
    if not vm_backup.restart_after_snapshot:
        return Prepared(export_ref=vm_ref, restart_vm=True, start_host=host, warnings=warnings,
                        shutdown_started=started)
    try:
        prepared = _snapshot(conn, vm_ref, vm_backup, name, "snapshot")
    finally:
        _start(conn, vm_ref, host)
    prepared.downtime_seconds = time.monotonic() - started
    prepared.warnings.extend(warnings)
    return prepared


def _shut_down(conn, vm_ref, vm_backup):
    xenapi = conn.xenapi
    task = xenapi.Async.VM.clean_shutdown(vm_ref)
    try:
        conn.wait_task(task, timeout=vm_backup.shutdown_timeout)
        return []
    except (PoolTimeout, PoolTaskFailed) as exc:
        try:
            xenapi.task.cancel(task)
        except XenAPI.Failure:
            pass
        if not vm_backup.allow_hard_shutdown:
            raise BackupFailed(
                f"the VM did not shut down cleanly within {vm_backup.shutdown_timeout} s ({exc}); "
                "hard shutdown is not allowed for this backup, so it was left running"
            ) from exc
        xenapi.VM.hard_shutdown(vm_ref)
        return [f"the VM did not shut down cleanly within {vm_backup.shutdown_timeout} s; it was powered off hard"]
    finally:
        try:
            xenapi.task.destroy(task)
        except XenAPI.Failure:
            pass


def _start(conn, vm_ref, host):
    xenapi = conn.xenapi
    try:
        if host and xenapi.host.get_enabled(host):
            xenapi.VM.start_on(vm_ref, host, False, False)
        else:
            xenapi.VM.start(vm_ref, False, False)
    except XenAPI.Failure as exc:
        if failure_code(exc) == "VM_BAD_POWER_STATE":   # someone started it already
            return
        raise


def release(conn, prepared: Prepared, *, keep_vdis=()):
    """Undo the preparation: delete our snapshot (keeping `keep_vdis`), restart the VM."""
    problems = []
    if prepared.snapshot_uuid:
        try:
            snapshot_ref = conn.xenapi.VM.get_by_uuid(prepared.snapshot_uuid)
            destroy_snapshot(conn.xenapi, snapshot_ref, keep_vdis=keep_vdis)
        except DiskLeftOver as exc:
            problems.append(str(exc))
        except XenAPI.Failure as exc:
            if failure_code(exc) != "UUID_INVALID":
                problems.append(f"could not delete snapshot {prepared.snapshot_uuid}: {describe_failure(exc)}")
    if prepared.restart_vm:
        try:
            vm_ref = prepared.export_ref
            if conn.xenapi.VM.get_power_state(vm_ref) == "Halted":
                _start(conn, vm_ref, prepared.start_host)
            if prepared.shutdown_started is not None:
                prepared.downtime_seconds = time.monotonic() - prepared.shutdown_started
        except XenAPI.Failure as exc:
            problems.append(f"could not start the VM again: {describe_failure(exc)}")
    return problems
