"""A restore from start to finish: lease, connect, create on the pool, stream, configure, start.

Two ways to put a VM back (plan.choose_path):
- xva-import: the XVA is rebuilt on the fly from the point's ova.xml (adjusted for the plan)
  and its verified chunks, and PUT to /import on the target SR (restore=true keeps the VM,
  VBD and VIF UUIDs and the MACs; force=true only when replacing the original).
- per-disk: VM.create from the ova.xml record, VDI.create on each disk's SR, VBD.create,
  VIF.create, then each disk PUT to /import_raw_vdi as a sparse VHD.

Every object a restore creates carries its run id in other_config before data flows, so a
damaged chunk, a wrong key, a dropped transfer, a cancel or a killed worker leaves nothing
behind: the import task is cancelled and whatever carries the tag is destroyed.
"""
import http.client
import logging
import os
import socket
import time

import XenAPI
from django.utils import timezone

from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import acting_as, record_event
from xenpools.connection import PoolConnection, PoolError, PoolTaskFailed
from xenpools.inventory import sync_pool

from ..choices import RunStatus
from ..engine.allocator import keep_buffers_resident
from ..engine.leftovers import clean_restore_leftovers
from ..formats.xva import NULL_REF, XvaError, parse_ova_xml
from ..models_restore import RestoreKind, RestorePhase, RestoreRun
from ..notifications import restore_finished
from ..repository import ChunkCorruptError, RepositoryError, StoreError, WrongKeyError
from ..stores import open_repository
from . import metadata
from .plan import PER_DISK, RestorePlan, RestorePlanError, StartMode, choose_path, describe_point, validate_plan
from .progress import RestoreCancelled, RestoreProgress
from .streams import (
    StreamLengthMismatch,
    nonzero_ranges,
    raw_upload,
    vhd_fits,
    vhd_upload,
    xva_chunks_with_data,
    xva_upload,
)

log = logging.getLogger(__name__)

LEASE_STALE_AFTER = 120        # seconds without a heartbeat before a running restore is presumed dead
TASK_FINISH_TIMEOUT = 600      # seconds xapi may take to finish an import after the last byte
ABORT_TIMEOUT = 60


class RestoreFailed(Exception):
    """The restore cannot go on; the message is for the administrator."""


def worker_identity():
    return f"{socket.gethostname()}:{os.getpid()}"


def acquire_lease(run_id, owner) -> bool:
    now = timezone.now()
    return RestoreRun.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING, lease_owner=owner, lease_heartbeat=now, started_at=now,
        phase=RestorePhase.CONNECTING) == 1


def fail_abandoned_restores(now=None):
    """Restores whose worker stopped heart-beating are failed; the next restore to the same
    pool removes what they created (remove_leftovers)."""
    cutoff = (now or timezone.now()) - timezone.timedelta(seconds=LEASE_STALE_AFTER)
    return RestoreRun.objects.filter(status=RunStatus.RUNNING, lease_heartbeat__lt=cutoff).update(
        status=RunStatus.FAILED, phase=RestorePhase.DONE, finished_at=timezone.now(),
        error="the worker stopped during the restore (killed or lost); what it created on the pool "
              "is removed by the next restore to that pool")


# -- the run ---------------------------------------------------------------------------------
def run_restore(run_id, *, owner=None):
    """Run one queued restore to its end. Returns the RestoreRun, or None if another worker has it."""
    keep_buffers_resident()
    fail_abandoned_restores()
    owner = owner or worker_identity()
    if not acquire_lease(run_id, owner):
        return None
    run = RestoreRun.objects.select_related("point__store", "store", "target_pool", "target_host").get(pk=run_id)
    progress = RestoreProgress(run)
    progress.publish({"type": "restore.started"})
    progress.start_heartbeat()
    outcome = RunStatus.FAILED
    try:
        with acting_as(run.requested_by, source=f"worker:{owner}"):
            if run.kind == RestoreKind.DISK:
                _restore_disk(run, progress)
            else:
                _restore_vm(run, progress)
        outcome = RunStatus.WARNING if run.warnings else RunStatus.SUCCESS
    except RestoreCancelled as exc:
        outcome, run.error = RunStatus.CANCELLED, str(exc)
    except RestoreFailed as exc:
        run.error = str(exc)
    except RestorePlanError as exc:
        run.error = f"the plan is no longer valid: {exc}"
    except ChunkCorruptError as exc:
        run.error = f"the restore point is damaged: {exc}; nothing was left on the pool"
    except WrongKeyError as exc:
        run.error = f"cannot open data store {run.store}: {exc}"
    except (StoreError, RepositoryError) as exc:
        run.error = f"data store {run.store}: {exc}"
    except PoolTaskFailed as exc:
        run.error = f"the pool refused the import: {' '.join(map(str, exc.error_info))}"
    except PoolError as exc:
        run.error = f"pool {run.target_pool}: {exc}"
    except XenAPI.Failure as exc:
        run.error = f"the pool refused: {' '.join(map(str, exc.details))}"
    except (XvaError, StreamLengthMismatch) as exc:
        run.error = f"cannot rebuild the VM from the restore point: {exc}"
    except Exception as exc:  # noqa: BLE001 - recorded on the run; the worker stays up
        log.exception("restore %s failed unexpectedly", run.pk)
        run.error = f"unexpected error: {exc.__class__.__name__}: {exc}"
    finally:
        progress.stop_heartbeat()
    run.status, run.finished_at = outcome, timezone.now()
    if outcome in (RunStatus.SUCCESS, RunStatus.WARNING):
        run.bytes_done, run.phase = run.bytes_total, RestorePhase.DONE
    RestoreRun.objects.filter(pk=run.pk).update(
        status=outcome, phase=run.phase, finished_at=run.finished_at, error=run.error,
        warnings=run.warnings, bytes_done=run.bytes_done, bytes_total=run.bytes_total, path=run.path,
        restored_vm_uuid=run.restored_vm_uuid, restored_vdi_uuid=run.restored_vdi_uuid,
    )
    progress.publish({"type": "restore.finished", "status": outcome, "error": run.error,
                      "restored_vm_uuid": run.restored_vm_uuid, "restored_vdi_uuid": run.restored_vdi_uuid})
    succeeded = outcome in (RunStatus.SUCCESS, RunStatus.WARNING)
    with acting_as(run.requested_by, source=f"worker:{owner}"):
        record_event(AuditAction.RESTORE, target=run, outcome="success" if succeeded else "failure",
                     message=f"restore of {run.source_vm_name} ({run.store_point_id}) to pool {run.target_pool}: "
                             f"{RunStatus(outcome).label}" + (f": {run.error}" if run.error else ""))
    restore_finished(run)
    return run


def _open_point(run):
    if run.point is None:
        raise RestoreFailed(f"the restore point {run.store_point_id} is no longer indexed (pruned?)")
    repo = open_repository(run.point.store)        # a wrong key fails before the pool is touched
    manifest = repo.load_manifest(run.point.point_id)
    return repo, manifest


def _restore_vm(run, progress):
    repo, manifest = _open_point(run)
    details = describe_point(run.point, manifest)
    plan = RestorePlan.from_run(run)
    problems = validate_plan(plan, details)
    if problems:
        raise RestorePlanError(problems)
    disks = details.restored_disks(plan.start_mode)
    progress.set_total(sum(d.virtual_size for d in disks))
    path, _reason = choose_path(plan, details)
    run.path = path
    RestoreRun.objects.filter(pk=run.pk).update(path=path)
    progress.phase(RestorePhase.CONNECTING)
    with PoolConnection.open(run.target_pool) as conn:
        remove_leftovers(conn, progress)
        progress.check_cancelled(force=True)
        progress.phase(RestorePhase.PREPARING)
        replaced_vdis = _original_disks_to_replace(conn, plan, details) if plan.replace_original else []
        try:
            if path == PER_DISK:
                vm_ref = _create_per_disk(conn, run, plan, details, repo, manifest, progress)
            else:
                vm_ref = _import_xva(conn, run, plan, details, repo, manifest, progress)
            progress.phase(RestorePhase.CONFIGURING)
            run.restored_vm_uuid = conn.xenapi.VM.get_uuid(vm_ref)
            RestoreRun.objects.filter(pk=run.pk).update(restored_vm_uuid=run.restored_vm_uuid)
            if plan.disconnect_vifs:
                for vif in conn.xenapi.VM.get_VIFs(vm_ref):
                    conn.xenapi.VIF.set_locking_mode(vif, "disabled")
            progress.check_cancelled(force=True)
            _untag(conn, vm_ref)
        except BaseException:
            stopped_in = run.phase
            progress.phase(RestorePhase.CLEANING_UP)
            _clean_up_after_failure(conn, run, progress)
            if replaced_vdis:
                _report_kept_original_disks(conn, details, replaced_vdis, progress)
            run.phase = stopped_in      # the run page names the phase the restore failed in
            raise
        try:        # the VM is complete now: a start that fails leaves it restored, halted
            _start(conn, vm_ref, plan, progress)
        except XenAPI.Failure as exc:
            progress.warn(f"the VM was restored but could not be {'resumed' if plan.start_mode == StartMode.RESUME else 'started'}: "
                          f"{' '.join(map(str, exc.details))}")
        for vdi_ref in replaced_vdis:
            _destroy_vdi(conn, vdi_ref, progress, "a disk of the replaced original VM")
        if run.replication_policy is not None:
            _prune_replicas(conn, run, progress)
    _sync_inventory(run, progress)


def _original_disks_to_replace(conn, plan, details):
    """The original VM's disks: xapi's forced import destroys the VM record but keeps its disks."""
    xenapi = conn.xenapi
    try:
        vm_ref = xenapi.VM.get_by_uuid(details.vm_uuid)
    except XenAPI.Failure:
        return []
    record = xenapi.VM.get_record(vm_ref)
    if record["power_state"] != "Halted":
        raise RestoreFailed(f"the original VM {record['name_label']} is {record['power_state'].lower()}: "
                            "shut it down first, then restore over it")
    disks = []
    for vbd in record["VBDs"]:
        vbd_record = xenapi.VBD.get_record(vbd)
        if vbd_record["type"] == "Disk" and vbd_record["VDI"] != NULL_REF:
            if len(xenapi.VDI.get_VBDs(vbd_record["VDI"])) == 1:
                disks.append(vbd_record["VDI"])
    return disks


def _report_kept_original_disks(conn, details, vdis, progress):
    """A forced import that failed may already have removed the original VM's record (xapi
    does so before reading the disks); its disks are never deleted then: say where they are."""
    xenapi = conn.xenapi
    try:
        xenapi.VM.get_by_uuid(details.vm_uuid)
        return
    except XenAPI.Failure:
        pass
    uuids = []
    for vdi in vdis:
        try:
            uuids.append(xenapi.VDI.get_uuid(vdi))
        except XenAPI.Failure:
            pass
    progress.warn(f"the pool removed the original VM {details.vm_name} when the import began; its disks are "
                  f"kept untouched: {', '.join(uuids)}")


# -- path A: PUT /import of a rebuilt XVA --------------------------------------------------------
def _import_xva(conn, run, plan, details, repo, manifest, progress):
    xenapi = conn.xenapi
    restored = details.restored_disks(plan.start_mode)
    with_memory = any(d.is_memory for d in restored)
    network_map, drop = _network_rewrite(plan, details)
    target_xapi = _xapi_build(conn)
    source_xapi = metadata.xapi_build_of(parse_ova_xml(details.ova_xml).version)
    ova_xml, refs = metadata.import_ova_xml(
        details.ova_xml, plan=plan, vm_uuid=details.vm_uuid, run_id=run.pk, with_memory=with_memory,
        network_map=network_map, drop_vifs=drop, extra_other_config=_vm_tags(run), target_xapi=target_xapi)
    if target_xapi and source_xapi and source_xapi > target_xapi:
        progress.warn(f"the backup was made by xapi {'%d.%d' % source_xapi}; pool {run.target_pool} runs the older "
                      f"xapi {'%d.%d' % target_xapi}, which refuses imports from newer versions: the import names "
                      "the pool's own version, and settings the older pool does not know are left out")
    sr = plan.sr_by_disk[restored[0].key] if restored else None
    sr_ref = xenapi.SR.get_by_uuid(sr.uuid) if sr else None
    streams = []
    done_before = 0
    for disk in restored:
        entry = manifest.disk(disk.key)
        with_data = xva_chunks_with_data(entry, repo.read_chunk)
        streams.append((refs[disk.key], entry.virtual_size, with_data,
                        verified_pieces(repo, run.point.point_id, entry, progress, done_before)))
        done_before += entry.virtual_size
    upload = xva_upload(ova_xml, streams, checksum=_checksum_for(run.target_pool))
    query = {"restore": "true" if plan.identity == "keep" else "false"}
    if sr_ref:
        query["sr_id"] = sr_ref
    if plan.replace_original:
        query["force"] = "true"
    progress.phase(RestorePhase.STREAMING)
    try:
        result = _put(conn, "/import", query, upload, f"restore #{run.pk}: import of {details.vm_name}")
    except PoolTaskFailed as exc:
        if exc.error_info[:1] == ["VM_BAD_POWER_STATE"] and plan.identity == "keep":
            raise RestoreFailed(_running_original(conn, details, skipped=False)) from exc
        raise
    vm_refs = result if isinstance(result, list) else [r for r in str(result).split(",") if r]
    if not vm_refs:
        if plan.identity == "keep" and _original_power_state(conn, details) not in (None, "Halted"):
            raise RestoreFailed(_running_original(conn, details, skipped=True))
        raise RestoreFailed("the pool finished the import without creating a VM")
    return vm_refs[0]


def _original_power_state(conn, details):
    try:
        return conn.xenapi.VM.get_power_state(conn.xenapi.VM.get_by_uuid(details.vm_uuid))
    except XenAPI.Failure:
        return None


def _running_original(conn, details, *, skipped):
    """What happened when the VM with the restored UUID was not halted at import time (it was
    started after the restore checked it): xapi's import skips it when forced, else refuses
    (import.ml VMHandler.precheck)."""
    state = (_original_power_state(conn, details) or "running").lower()
    what = ("the pool skipped the VM and left it running untouched: nothing was restored"
            if skipped else "the pool refused to replace it: nothing was restored")
    return (f"the original VM {details.vm_name} ({details.vm_uuid}) is {state} (it was started after the restore "
            f"checked it); {what}. Shut it down, then restore again")


def _xapi_build(conn):
    """The target pool's xapi build (the master's software_version "xapi": "major.minor")."""
    xenapi = conn.xenapi
    try:
        master = xenapi.pool.get_master(xenapi.pool.get_all()[0])
        major, minor = xenapi.host.get_software_version(master)["xapi"].split(".")[:2]
        return int(major), int(minor)
    except (XenAPI.Failure, KeyError, IndexError, ValueError):
        return None


def _network_rewrite(plan, details):
    """(source network name -> target {name_label, bridge}, VIF devices to leave out)."""
    mapping, drop = {}, []
    for vif in details.vifs:
        network = plan.network_by_vif.get(vif.device)
        if network is None:
            drop.append(vif.device)
        elif vif.network_name:
            mapping[vif.network_name] = {"name_label": network.name, "bridge": network.bridge}
    return mapping, drop


def _checksum_for(pool):
    """xapi before 1.170 (XenServer 7.x, 8.0) knows only SHA-1 checksum members."""
    try:
        major, minor = (int(x) for x in (pool.product_version or "8.2").split(".")[:2])
    except ValueError:
        return "xxhash"
    return "sha1" if (major, minor) < (8, 1) else "xxhash"


# -- path B: VM.create + /import_raw_vdi per disk -----------------------------------------------
def _create_per_disk(conn, run, plan, details, repo, manifest, progress):
    xenapi = conn.xenapi
    meta = parse_ova_xml(details.ova_xml)
    keep = plan.identity == "keep"
    vm_ref = xenapi.VM.create(metadata.vm_create_record(meta, name=plan.name, keep_macs=keep, run_id=run.pk,
                                                        extra_other_config=_vm_tags(run)))
    vbds = {metadata.disk_key_of(str(v.get("userdevice", ""))): v for v in meta.vbds if v.get("type") != "CD"}
    targets = []
    for disk in details.restored_disks(plan.start_mode):
        vbd = vbds.get(disk.key, {})
        vdi_record = meta.record(vbd.get("VDI", NULL_REF)) or {}
        sr_ref = xenapi.SR.get_by_uuid(plan.sr_by_disk[disk.key].uuid)
        vdi_ref = _create_vdi(xenapi, sr_ref, disk.virtual_size, vdi_record.get("name_label", disk.name),
                              vdi_record.get("name_description", ""), run.pk)
        xenapi.VBD.create({
            "VM": vm_ref, "VDI": vdi_ref, "userdevice": disk.userdevice, "bootable": disk.bootable,
            "mode": vbd.get("mode", "RW"), "type": "Disk", "unpluggable": bool(vbd.get("unpluggable", True)),
            "empty": False, "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {},
        })
        targets.append((disk, vdi_ref))
    for vif in meta.vifs:
        network = plan.network_by_vif.get(str(vif.get("device", "")))
        if network is None:
            continue
        xenapi.VIF.create({
            "device": str(vif.get("device", "0")), "network": xenapi.network.get_by_uuid(network.uuid),
            "VM": vm_ref, "MAC": vif.get("MAC", "") if keep else "", "MTU": str(vif.get("MTU", "1500")),
            "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {},
            "locking_mode": vif.get("locking_mode", "network_default"),
        })
    progress.phase(RestorePhase.STREAMING)
    done_before = 0
    for disk, vdi_ref in targets:
        _upload_disk(conn, run, repo, manifest.disk(disk.key), vdi_ref, progress, done_before)
        done_before += disk.virtual_size
    return vm_ref


def _create_vdi(xenapi, sr_ref, virtual_size, name, description, run_id):
    return xenapi.VDI.create({
        "name_label": name, "name_description": description, "SR": sr_ref, "virtual_size": str(virtual_size),
        "type": "user", "sharable": False, "read_only": False, "other_config": {metadata.RESTORE_TAG: str(run_id)},
        "xenstore_data": {}, "sm_config": {}, "tags": [],
    })


def _upload_disk(conn, run, repo, entry, vdi_ref, progress, done_before):
    pieces = verified_pieces(repo, run.store_point_id, entry, progress, done_before)
    if vhd_fits(entry.virtual_size):
        upload, fmt = vhd_upload(entry.virtual_size, nonzero_ranges(entry), pieces), "vhd"
    else:
        upload, fmt = raw_upload(entry.virtual_size, pieces), "raw"
    _put(conn, "/import_raw_vdi", {"vdi": vdi_ref, "format": fmt}, upload,
         f"restore #{run.pk}: disk {entry.key}")


# -- one disk as a new VDI -------------------------------------------------------------------
def _restore_disk(run, progress):
    repo, manifest = _open_point(run)
    key, sr_uuid = run.plan["disk"], run.plan["sr"]
    entry = manifest.disk(key)
    progress.set_total(entry.virtual_size)
    run.path = "per-disk"
    progress.phase(RestorePhase.CONNECTING)
    with PoolConnection.open(run.target_pool) as conn:
        remove_leftovers(conn, progress)
        xenapi = conn.xenapi
        progress.phase(RestorePhase.PREPARING)
        try:
            sr_ref = xenapi.SR.get_by_uuid(sr_uuid)
            vdi_ref = _create_vdi(xenapi, sr_ref, entry.virtual_size, run.plan.get("name", key),
                                  f"restored from {run.store_point_id}", run.pk)
            progress.phase(RestorePhase.STREAMING)
            _upload_disk(conn, run, repo, entry, vdi_ref, progress, 0)
            run.restored_vdi_uuid = xenapi.VDI.get_uuid(vdi_ref)
        except BaseException:
            stopped_in = run.phase
            progress.phase(RestorePhase.CLEANING_UP)
            _clean_up_after_failure(conn, run, progress)
            run.phase = stopped_in      # the run page names the phase the restore failed in
            raise
        xenapi.VDI.remove_from_other_config(vdi_ref, metadata.RESTORE_TAG)
    _sync_inventory(run, progress)


# -- transfers ---------------------------------------------------------------------------------
def verified_pieces(repo, point_id, entry, progress, done_before):
    """The disk's chunks that hold data, verified as read; progress and cancel as they pass."""
    chunks = repo.open_disk(point_id, entry.key).chunks()
    try:
        for offset, data in chunks:
            progress.check_cancelled()
            if data is not None:
                yield offset, data
            progress.advance(done_before + min(entry.virtual_size, offset + entry.chunk_size))
    finally:
        chunks.close()


def _put(conn, path, query, upload, label):
    """PUT a body with its exact Content-Length under our own task; returns the task result.

    Whatever goes wrong (the body's source, the connection, a cancel), the task is cancelled
    and waited for, so the pool has finished (and undone) the import when this returns."""
    xenapi = conn.xenapi
    task = xenapi.task.create(label, "sesamweb restore")
    try:
        try:
            response = conn.open_transfer("PUT", path, {**query, "task_id": task},
                                          body=upload.blocks, content_length=upload.length)
            try:
                response.read()
            except (OSError, http.client.HTTPException):
                pass        # xapi closes the connection when the import ends; the task tells how
            finally:
                response.close()
            return conn.wait_task(task, timeout=TASK_FINISH_TIMEOUT)
        except PoolTaskFailed:
            raise
        except BaseException as exc:
            refusal = _abort_task(conn, task)
            if refusal and isinstance(exc, PoolError):     # the pool hung up because it refused
                raise PoolTaskFailed(task, refusal) from exc
            raise
    finally:
        try:
            conn.xenapi.task.destroy(task)
        except (XenAPI.Failure, OSError, PoolError):
            pass


def _abort_task(conn, task):
    """Cancel the transfer's task and wait until the pool is done with it; returns the
    task's error_info when the pool itself failed it (its reason for hanging up)."""
    try:
        conn.reconnect()
    except PoolError:
        return None
    xenapi = conn.xenapi
    try:
        xenapi.task.cancel(task)
    except (XenAPI.Failure, PoolError):
        pass
    deadline = time.monotonic() + ABORT_TIMEOUT
    while time.monotonic() < deadline:
        try:
            record = xenapi.task.get_record(task)
        except (XenAPI.Failure, PoolError):
            return None
        if record["status"] not in ("pending", "cancelling"):
            error = [str(e) for e in record.get("error_info") or []]
            return error if error and error[0] not in ("TASK_CANCELLED", "CANCELLED") else None
        time.sleep(0.2)
    return None


# -- start modes ---------------------------------------------------------------------------------
def _start(conn, vm_ref, plan, progress):
    xenapi = conn.xenapi
    host_ref = xenapi.host.get_by_uuid(plan.target_host.uuid) if plan.target_host else None
    if plan.start_mode == StartMode.RUNNING:
        progress.phase(RestorePhase.STARTING)
        if host_ref:
            xenapi.VM.start_on(vm_ref, host_ref, False, False)
        else:
            xenapi.VM.start(vm_ref, False, False)
    elif plan.start_mode == StartMode.RESUME:
        progress.phase(RestorePhase.STARTING)
        if host_ref:
            xenapi.VM.resume_on(vm_ref, host_ref, False, False)
        else:
            xenapi.VM.resume(vm_ref, False, False)


# -- clean-up --------------------------------------------------------------------------------
def _vm_tags(run):
    tags = {metadata.RESTORED_FROM: f"{run.point.store.name}:{run.point.point_id}"}
    if run.replication_policy_id:
        tags.update({metadata.REPLICA_OF: run.source_vm_uuid, metadata.REPLICA_POLICY: str(run.replication_policy_id),
                     metadata.REPLICA_TIME: run.point.taken_at.isoformat()})
    return tags


def _untag(conn, vm_ref):
    xenapi = conn.xenapi
    xenapi.VM.remove_from_other_config(vm_ref, metadata.RESTORE_TAG)
    for vdi in _vm_vdis(xenapi, vm_ref):
        xenapi.VDI.remove_from_other_config(vdi, metadata.RESTORE_TAG)


def _vm_vdis(xenapi, vm_ref):
    vdis = [xenapi.VBD.get_VDI(vbd) for vbd in xenapi.VM.get_VBDs(vm_ref)]
    suspend = xenapi.VM.get_suspend_VDI(vm_ref)
    return [vdi for vdi in vdis + [suspend] if vdi != NULL_REF]


def _clean_up_after_failure(conn, run, progress):
    try:
        conn.reconnect()
        report = clean_restore_leftovers(conn.xenapi, {str(run.pk)})
    except (PoolError, XenAPI.Failure, OSError) as exc:
        progress.warn(f"could not remove what the failed restore created on the pool ({exc}); "
                      "the next restore to this pool retries")
        return
    if report.removed:
        log.info("restore %s: removed %d object(s) it had created", run.pk, len(report.removed))
    for leftover, reason in report.kept:
        progress.warn(f"could not remove {leftover.describe()} ({reason}); the pool's next clean-up retries")


def remove_leftovers(conn, progress=None) -> int:
    """Objects of failed or cancelled restores (also those of a killed worker) are removed.
    Objects of running and successful restores are never touched."""
    removed = len(clean_restore_leftovers(conn.xenapi).removed)
    if removed and progress:
        progress.warn(f"removed {removed} object(s) left on the pool by interrupted restores")
    return removed


def _destroy_vdi(conn, vdi_ref, progress, what):
    try:
        conn.xenapi.VDI.destroy(vdi_ref)
    except XenAPI.Failure as exc:
        progress.warn(f"could not delete {what}: {' '.join(map(str, exc.details))}")


def _prune_replicas(conn, run, progress):
    from .replication import prune_replicas

    try:
        prune_replicas(conn, run.replication_policy, run.source_vm_uuid, progress.warn)
    except (XenAPI.Failure, PoolError, OSError) as exc:
        progress.warn(f"the replica is in place, but older replicas could not be pruned: {exc}")


def _sync_inventory(run, progress):
    try:
        sync_pool(run.target_pool)
    except PoolError as exc:
        progress.warn(f"restored, but the inventory of {run.target_pool} could not be refreshed: {exc}")
