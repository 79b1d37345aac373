"""Snapshots the backup engine takes on a pool, and how they are found and removed again.

Every snapshot or checkpoint the engine makes is tagged in its other_config with the
VmBackup id before anything else happens to it, so cleanup can find it even after the
worker was killed between creating it and recording it. Its disks get the same tag just
before the snapshot VM is deleted, so a disk that could not be deleted after it is still
known as ours (cleanup_leftovers and the pool clean-up look for TAG_KEY on VDIs too).

A disk read over NBD is plugged into the host's dom0 while the connection is open (xapi-nbd
creates, plugs, then unplugs and destroys a VBD); until that VBD is gone, VDI.destroy and
VDI.data_destroy fail with VDI_IN_USE. The engine closes its connections first, and
destroy_vdi retries for a short while.
"""
import logging
import time

import XenAPI

log = logging.getLogger(__name__)

TAG_KEY = "sesamweb_backup"          # other_config key on snapshots the engine made
CHAIN_KEY = "sesamweb_chain"         # other_config key on VDIs kept for the next incremental
NULL_REF = "OpaqueRef:NULL"
BUSY_RETRIES = 30                    # seconds to wait for a snapshot still locked by an export
VDI_IN_USE_SECONDS = 20              # to wait for a dom0 VBD of a closed NBD connection to go
VDI_IN_USE_POLL = 0.5


class DiskLeftOver(Exception):
    """A disk of ours stayed in use on the pool; the message says which and how it is tagged."""


def destroy_vdi(xenapi, vdi_ref, *, data_only=False, clock=time.monotonic, sleep=time.sleep,
                timeout=VDI_IN_USE_SECONDS):
    """VDI.destroy (or VDI.data_destroy), retried while the pool answers VDI_IN_USE, until
    `timeout` seconds have passed on `clock`; then the VDI_IN_USE failure is raised. A disk
    already gone is not an error."""
    deadline = clock() + timeout
    while True:
        try:
            if data_only:
                xenapi.VDI.data_destroy(vdi_ref)
            else:
                xenapi.VDI.destroy(vdi_ref)
            return
        except XenAPI.Failure as failure:
            code = failure.details[0] if failure.details else ""
            if code == "HANDLE_INVALID" and not data_only:
                return
            if code != "VDI_IN_USE" or clock() >= deadline:
                raise
        sleep(VDI_IN_USE_POLL)


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


def destroy_snapshot(xenapi, snapshot_ref, keep_vdis=(), **retry):
    """Delete a snapshot VM and its disks (as `xe snapshot-uninstall` does), except `keep_vdis`.

    Disks another VM still uses are left alone. Missing objects are not an error: the
    goal is that nothing of ours is left, not that we deleted it ourselves. A disk still in
    use when destroy_vdi gives up (`retry`: its clock, sleep, timeout) raises DiskLeftOver
    after the others were deleted; it keeps the snapshot's TAG_KEY for the pool clean-up.
    """
    for attempt in range(BUSY_RETRIES):
        try:
            vdis = [ref for ref in snapshot_disks(xenapi, snapshot_ref).values() if ref not in keep_vdis]
            vdis = [ref for ref in vdis if _only_used_by(xenapi, ref, snapshot_ref)]
            tag = xenapi.VM.get_other_config(snapshot_ref).get(TAG_KEY)
            if tag:
                for vdi_ref in vdis:
                    _tag_disk(xenapi, vdi_ref, tag)
            xenapi.VM.destroy(snapshot_ref)
            break
        except XenAPI.Failure as failure:
            if failure.details[0] == "HANDLE_INVALID":
                return
            # An export that was just abandoned may still hold the snapshot for a moment.
            if failure.details[0] != "OTHER_OPERATION_IN_PROGRESS" or attempt == BUSY_RETRIES - 1:
                raise
            time.sleep(1)
    left = []
    for vdi_ref in vdis:
        try:
            destroy_vdi(xenapi, vdi_ref, **retry)
        except XenAPI.Failure as failure:
            if failure.details[0] != "VDI_IN_USE":
                raise
            left.append(_describe_leftover(xenapi, vdi_ref, tag))
    if left:
        log.warning("disks left on the pool: %s", "; ".join(left))
        raise DiskLeftOver("; ".join(left))


def _tag_disk(xenapi, vdi_ref, tag):
    try:
        xenapi.VDI.add_to_other_config(vdi_ref, TAG_KEY, tag)
    except XenAPI.Failure:
        pass            # already tagged (MAP_DUPLICATE_KEY) or gone


def _describe_leftover(xenapi, vdi_ref, tag):
    try:
        record = xenapi.VDI.get_record(vdi_ref)
        what = f"disk {record['uuid']} ({record['name_label']})"
    except XenAPI.Failure:
        what = f"disk {vdi_ref}"
    return (f"{what} could not be deleted: it is still in use (VDI_IN_USE, e.g. an NBD connection's "
            f"dom0 VBD); it is tagged {TAG_KEY}={tag} for the pool clean-up")


def _only_used_by(xenapi, vdi_ref, vm_ref):
    """No other VM uses the disk. A control domain's VBD is not a use: the host plugs a disk
    into dom0 only for a while (an NBD connection, an export), and destroy_vdi waits for it."""
    for vbd_ref in xenapi.VDI.get_VBDs(vdi_ref):
        try:
            owner = xenapi.VBD.get_VM(vbd_ref)
            if owner != vm_ref and not xenapi.VM.get_is_control_domain(owner):
                return False
        except XenAPI.Failure as exc:
            # The VBD went between the two calls (an NBD connection ending): not a use.
            if exc.details[:1] != ["HANDLE_INVALID"]:
                raise
    return True
