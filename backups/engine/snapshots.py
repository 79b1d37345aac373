"""Snapshots the backup engine takes on a pool, and how they are found and removed again.

Every snapshot or checkpoint the engine makes is tagged in its other_config with the
VmBackup id before anything else happens to it, so cleanup can find it even after the
worker was killed between creating it and recording it.
"""
import logging
import time

import XenAPI

log = logging.getLogger(__name__)

TAG_KEY = "sesamweb_backup"          # other_config key on snapshots the engine made
CHAIN_KEY = "sesamweb_chain"         # other_config key on VDIs kept for the next incremental
NULL_REF = "OpaqueRef:NULL"
BUSY_RETRIES = 30                    # seconds to wait for a snapshot still locked by an export


def tag_snapshot(xenapi, snapshot_ref, vm_backup_id):
    xenapi.VM.add_to_other_config(snapshot_ref, TAG_KEY, str(vm_backup_id))


def snapshot_disks(xenapi, vm_ref):
    """{disk key: VDI ref} of a VM or snapshot: 'vbd<userdevice>' per disk, 'suspend' for memory."""
    disks = {}
    for vbd_ref in xenapi.VM.get_VBDs(vm_ref):
        vbd = xenapi.VBD.get_record(vbd_ref)
        if vbd["type"] != "Disk" or vbd["VDI"] == NULL_REF:
            continue
        disks[f"vbd{vbd['userdevice']}"] = vbd["VDI"]
    suspend = xenapi.VM.get_suspend_VDI(vm_ref)
    if suspend != NULL_REF:
        disks["suspend"] = suspend
    return disks


def destroy_snapshot(xenapi, snapshot_ref, keep_vdis=()):
    """Delete a snapshot VM and its disks (as `xe snapshot-uninstall` does), except `keep_vdis`.

    Disks another VM still uses are left alone. Missing objects are not an error: the
    goal is that nothing of ours is left, not that we deleted it ourselves.
    """
    for attempt in range(BUSY_RETRIES):
        try:
            vdis = [ref for ref in snapshot_disks(xenapi, snapshot_ref).values() if ref not in keep_vdis]
            vdis = [ref for ref in vdis if _only_used_by(xenapi, ref, snapshot_ref)]
            xenapi.VM.destroy(snapshot_ref)
            break
        except XenAPI.Failure as failure:
            if failure.details[0] == "HANDLE_INVALID":
                return
            # An export that was just abandoned may still hold the snapshot for a moment.
            if failure.details[0] != "OTHER_OPERATION_IN_PROGRESS" or attempt == BUSY_RETRIES - 1:
                raise
            time.sleep(1)
    for vdi_ref in vdis:
        try:
            xenapi.VDI.destroy(vdi_ref)
        except XenAPI.Failure as failure:
            if failure.details[0] != "HANDLE_INVALID":
                raise


def _only_used_by(xenapi, vdi_ref, vm_ref):
    for vbd_ref in xenapi.VDI.get_VBDs(vdi_ref):
        if xenapi.VBD.get_VM(vbd_ref) != vm_ref:
            return False
    return True
