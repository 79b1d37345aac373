"""What interrupted backups and restores leave on a pool: found, then removed one by one.

The engine tags everything it creates before anything else happens to it:
- snapshots (and checkpoints) of a backup: other_config `sesamweb_backup` = VmBackup id
  (snapshots.TAG_KEY); the disks of a snapshot get the same tag just before it is deleted, so
  a disk that outlives it (still in use then: an NBD connection's dom0 VBD) is found too;
- disks kept for the next incremental: other_config `sesamweb_chain` = VmBackup id
  (snapshots.CHAIN_KEY), needed as long as a restore point's chain names them;
- VMs and disks a restore creates: other_config `sesamweb_restore` = RestoreRun id
  (restore.metadata.RESTORE_TAG).

A tagged object is a leftover when its owner is no longer running (a backup: not queued or
running, and no restore point's chain names the disk; a restore: failed or cancelled) and the
owner has shown no sign of life (lease heartbeat) for `min_age`. The pool's records are read
BEFORE the owners' states, so a backup that starts meanwhile is never mistaken for a dead
one: its objects did not exist yet when the records were read.

A leftover that cannot be removed (a disk still attached to another VM, such as dom0 for an
open NBD connection: xapi answers VDI_IN_USE) is kept and reported with the reason; it is
still tagged, so the next pass retries. A snapshot whose disk is attached elsewhere is kept
whole (destroying the VM first would leave an untagged disk nobody would find again).

Callers: the next backup on a pool (backup.cleanup_leftovers), the next restore
(restore.engine.remove_leftovers) and the periodic clean-up of every pool (backups/pool_cleanup.py).
"""
import logging
from dataclasses import dataclass, field
from datetime import timedelta

import XenAPI
from django.utils import timezone

from xenpools.connection import PoolError

from ..choices import RunStatus
from ..models import RestorePoint, RestoreRun, VmBackup
from ..restore import metadata
from .prepare import describe_failure
from .snapshots import CHAIN_KEY, NULL_REF, TAG_KEY, DiskLeftOver, destroy_snapshot

log = logging.getLogger(__name__)

SNAPSHOT, SNAPSHOT_DISK, CHAIN_DISK = "snapshot", "disk of a deleted snapshot", "chain disk"
RESTORED_VM, RESTORED_DISK = "restored VM", "restored disk"
LIVE_BACKUP = (RunStatus.QUEUED, RunStatus.RUNNING)
DEAD_RESTORE = (RunStatus.FAILED, RunStatus.CANCELLED)


@dataclass
class Leftover:
    kind: str            # SNAPSHOT, SNAPSHOT_DISK, CHAIN_DISK, RESTORED_VM, RESTORED_DISK
    ref: str
    uuid: str
    name: str
    owner: str           # "backup #12", "restore #3"
    in_use: str = ""     # why it cannot be removed now (found before trying)

    def describe(self) -> str:
        return f"{self.kind} '{self.name}' ({self.uuid}) of {self.owner}"

    def as_dict(self) -> dict:
        return {"kind": self.kind, "uuid": self.uuid, "name": self.name, "owner": self.owner}


@dataclass
class CleanupReport:
    removed: list = field(default_factory=list)      # [Leftover]
    kept: list = field(default_factory=list)         # [(Leftover, reason)]: retried next time
    waiting: int = 0                                  # owners that showed life within min_age

    def add(self, other: "CleanupReport") -> "CleanupReport":
        self.removed += other.removed
        self.kept += other.kept
        self.waiting += other.waiting
        return self


# -- finding --------------------------------------------------------------------------------
def _quiet_since(now, min_age):
    return now - min_age if min_age else None


def find_backup_leftovers(xenapi, *, min_age=timedelta(0), now=None) -> tuple[list, int]:
    """([Leftover], number left alone because their backup showed life within min_age)."""
    vms = xenapi.VM.get_all_records()
    vdis = xenapi.VDI.get_all_records()
    vbds = xenapi.VBD.get_all_records()
    tagged = {r["other_config"][TAG_KEY] for r in vms.values() if r["is_a_snapshot"] and r["other_config"].get(TAG_KEY)}
    tagged |= {r["other_config"][CHAIN_KEY] for r in vdis.values() if r["other_config"].get(CHAIN_KEY)}
    tagged |= {r["other_config"][TAG_KEY] for r in vdis.values() if r["other_config"].get(TAG_KEY)}
    if not tagged:
        return [], 0
    # Owners' states after the records (see the module docstring), chains after the states.
    owners = {str(pk): (status, heartbeat) for pk, status, heartbeat in
              VmBackup.objects.filter(pk__in=[t for t in tagged if t.isdigit()])
              .values_list("pk", "status", "lease_heartbeat")}
    chain_uuids = {
        link["vdi_uuid"]
        for chain in RestorePoint.objects.exclude(chain={}).values_list("chain", flat=True)
        for link in chain.values()
    }
    quiet_since = _quiet_since(now or timezone.now(), min_age)
    found, waiting = [], 0

    def owner_gone(tag):
        nonlocal waiting
        status, heartbeat = owners.get(tag, (None, None))
        if status in LIVE_BACKUP:
            return False
        if quiet_since is not None and heartbeat is not None and heartbeat > quiet_since:
            waiting += 1
            return False
        return True

    for ref, record in vms.items():
        tag = record["other_config"].get(TAG_KEY)
        if record["is_a_snapshot"] and tag and owner_gone(tag):
            found.append(Leftover(SNAPSHOT, ref, record["uuid"], record["name_label"], f"backup #{tag}",
                                  in_use=_disks_in_use(ref, record, vdis, vbds, vms)))
    of_snapshots = {vbds[vbd]["VDI"] for r in vms.values() if r["is_a_snapshot"] for vbd in r["VBDs"] if vbd in vbds}
    for ref, record in vdis.items():
        tag = record["other_config"].get(CHAIN_KEY)
        if tag is not None and record["uuid"] not in chain_uuids and owner_gone(tag):
            found.append(Leftover(CHAIN_DISK, ref, record["uuid"], record["name_label"], f"backup #{tag}",
                                  in_use=_attached_elsewhere(ref, vdis, vbds, vms)))
        orphan = record["other_config"].get(TAG_KEY)
        if tag is None and orphan and ref not in of_snapshots and owner_gone(orphan):
            found.append(Leftover(SNAPSHOT_DISK, ref, record["uuid"], record["name_label"], f"backup #{orphan}",
                                  in_use=_attached_elsewhere(ref, vdis, vbds, vms)))
    return found, waiting


def find_restore_leftovers(xenapi, run_ids=None, *, min_age=timedelta(0), now=None) -> tuple[list, int]:
    """Objects tagged by the given restore runs, or (run_ids None) by failed or cancelled ones."""
    vms = xenapi.VM.get_all_records()
    vdis = xenapi.VDI.get_all_records()
    tag_of = metadata.RESTORE_TAG
    if run_ids is None:
        tagged = {r["other_config"].get(tag_of) for r in [*vms.values(), *vdis.values()]} - {None}
        runs = RestoreRun.objects.filter(pk__in=[t for t in tagged if t.isdigit()], status__in=DEAD_RESTORE)
        quiet_since = _quiet_since(now or timezone.now(), min_age)
        recent = {str(pk) for pk, heartbeat in runs.values_list("pk", "lease_heartbeat")
                  if quiet_since is not None and heartbeat is not None and heartbeat > quiet_since}
        run_ids = {str(pk) for pk in runs.values_list("pk", flat=True)} - recent
        waiting = len(recent)
    else:
        waiting = 0
    found, own_disks = [], set()
    for ref, record in vms.items():
        tag = record["other_config"].get(tag_of)
        if tag in run_ids:
            found.append(Leftover(RESTORED_VM, ref, record["uuid"], record["name_label"], f"restore #{tag}"))
            own_disks.update(_vm_disk_refs(record, vdis, xenapi))
    for ref, record in vdis.items():
        tag = record["other_config"].get(tag_of)
        if tag in run_ids and ref not in own_disks:
            found.append(Leftover(RESTORED_DISK, ref, record["uuid"], record["name_label"], f"restore #{tag}"))
    return found, waiting


def _vm_disk_refs(record, vdis, xenapi):
    refs = {xenapi.VBD.get_VDI(vbd) for vbd in record["VBDs"]}
    refs.add(record.get("suspend_VDI", NULL_REF))
    return {ref for ref in refs if ref != NULL_REF and ref in vdis}


def _attached_elsewhere(vdi_ref, vdis, vbds, vms, owner_vm=None) -> str:
    """Why the disk cannot be destroyed now: a plugged VBD of another VM (xapi: VDI_IN_USE)."""
    for vbd_ref in vdis.get(vdi_ref, {}).get("VBDs", []):
        vbd = vbds.get(vbd_ref)
        if vbd and vbd["VM"] != owner_vm and vbd.get("currently_attached"):
            vm = vms.get(vbd["VM"], {})
            who = "the control domain (dom0)" if vm.get("is_control_domain") else f"VM '{vm.get('name_label', vbd['VM'])}'"
            return f"disk {vdis[vdi_ref]['uuid']} is attached to {who} (VDI_IN_USE): an export or NBD connection may still be open"
    return ""


def _disks_in_use(snapshot_ref, record, vdis, vbds, vms) -> str:
    for vbd_ref in record["VBDs"]:
        vdi_ref = vbds.get(vbd_ref, {}).get("VDI", NULL_REF)
        reason = _attached_elsewhere(vdi_ref, vdis, vbds, vms, owner_vm=snapshot_ref) if vdi_ref in vdis else ""
        if reason:
            return reason
    return ""


# -- removing -------------------------------------------------------------------------------
def remove_leftovers(xenapi, leftovers) -> CleanupReport:
    """Remove each leftover; what xapi refuses is kept in the report with its reason."""
    report = CleanupReport()
    for index, leftover in enumerate(leftovers):
        if leftover.in_use:
            report.kept.append((leftover, leftover.in_use))
            continue
        try:
            _remove(xenapi, leftover)
        except DiskLeftOver as exc:
            # The snapshot is gone, a disk of it was still in use: tagged, found next time.
            report.kept.append((leftover, str(exc)))
        except XenAPI.Failure as failure:
            log.warning("could not remove %s: %s", leftover.describe(), describe_failure(failure))
            report.kept.append((leftover, describe_failure(failure)))
        except (PoolError, OSError) as exc:
            # The pool went away midway: what was removed so far is reported, the rest kept.
            report.kept += [(rest, f"the connection to the pool was lost: {exc}") for rest in leftovers[index:]]
            break
        else:
            report.removed.append(leftover)
    return report


def _remove(xenapi, leftover):
    if leftover.kind == SNAPSHOT:
        destroy_snapshot(xenapi, leftover.ref)
    elif leftover.kind == RESTORED_VM:
        _remove_restored_vm(xenapi, leftover.ref)
    else:
        _destroy_vdi(xenapi, leftover.ref)


def _remove_restored_vm(xenapi, vm_ref):
    try:
        if xenapi.VM.get_power_state(vm_ref) != "Halted":
            xenapi.VM.hard_shutdown(vm_ref)
        vdis = [xenapi.VBD.get_VDI(vbd) for vbd in xenapi.VM.get_VBDs(vm_ref)] + [xenapi.VM.get_suspend_VDI(vm_ref)]
        xenapi.VM.destroy(vm_ref)
    except XenAPI.Failure as failure:
        if failure.details[:1] == ["HANDLE_INVALID"]:
            return
        raise
    for vdi in vdis:
        if vdi != NULL_REF:
            _destroy_vdi(xenapi, vdi)


def _destroy_vdi(xenapi, vdi_ref):
    try:
        xenapi.VDI.destroy(vdi_ref)
    except XenAPI.Failure as failure:
        if failure.details[:1] != ["HANDLE_INVALID"]:      # gone already: nothing of ours is left
            raise


def clean_backup_leftovers(xenapi, *, min_age=timedelta(0), now=None) -> CleanupReport:
    found, waiting = find_backup_leftovers(xenapi, min_age=min_age, now=now)
    report = remove_leftovers(xenapi, found)
    report.waiting = waiting
    return report


def clean_restore_leftovers(xenapi, run_ids=None, *, min_age=timedelta(0), now=None) -> CleanupReport:
    found, waiting = find_restore_leftovers(xenapi, run_ids, min_age=min_age, now=now)
    report = remove_leftovers(xenapi, found)
    report.waiting = waiting
    return report
