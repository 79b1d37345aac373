"""Changed block tracking (CBT) on a VM's disks: switched on before an incremental backup's
snapshot, and, where the pool refuses it, why this VM's backups cannot be incremental.

xapi refuses VDI.enable_cbt without the pool licence (LICENCE_RESTRICTION ["CBT"]), on SR
types whose storage driver has no CBT (SR_OPERATION_NOT_SUPPORTED [sr]; upstream only ext,
file, nfs, smb and the LVM kinds have it), on snapshots (OPERATION_NOT_ALLOWED) and on disks
that are not user/system disks or reset on boot. Such a VM is backed up in full every time;
the reason is kept in VmChangeTracking (the VM page shows it) and warned about once, when it
is first found or changes, never as an error and not again on every run.
"""
from dataclasses import dataclass, field

import XenAPI
from django.utils import timezone

from .prepare import describe_failure, failure_code
from .snapshots import snapshot_disks

REFUSED = {"LICENCE_RESTRICTION", "SR_OPERATION_NOT_SUPPORTED", "OPERATION_NOT_ALLOWED",
           "VDI_INCOMPATIBLE_TYPE", "VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION"}


@dataclass
class Tracking:
    enabled_now: set = field(default_factory=set)   # disks where CBT was off until now
    refused: str = ""                               # why CBT cannot be on, for people
    code: str = ""                                  # the pool's error code for it


def enable_tracking(xenapi, vm_ref) -> Tracking:
    """Turn CBT on for every disk of the VM (the memory image aside)."""
    tracking = Tracking()
    for key, vdi_ref in snapshot_disks(xenapi, vm_ref).items():
        if key == "suspend" or xenapi.VDI.get_cbt_enabled(vdi_ref):
            continue
        try:
            xenapi.VDI.enable_cbt(vdi_ref)
        except XenAPI.Failure as exc:
            if failure_code(exc) not in REFUSED:
                raise
            tracking.refused, tracking.code = refusal_reason(xenapi, key, vdi_ref, exc), failure_code(exc)
            return tracking
        tracking.enabled_now.add(key)
    return tracking


def refusal_reason(xenapi, key, vdi_ref, exc) -> str:
    code = failure_code(exc)
    if code == "LICENCE_RESTRICTION":
        return "the pool's licence does not include changed block tracking"
    if code == "SR_OPERATION_NOT_SUPPORTED":
        sr = xenapi.SR.get_record(xenapi.VDI.get_SR(vdi_ref))
        return (f"disk {key} is on storage repository {sr['name_label']} (type {sr['type']}), "
                "whose storage driver has no changed block tracking")
    if code == "VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION":
        return f"disk {key} is reset on every boot, which rules out changed block tracking"
    return f"the pool refused changed block tracking on disk {key}: {describe_failure(exc)}"


def record_tracking(vm_backup, tracking: Tracking) -> bool:
    """Keep (or clear) why the VM's backups cannot be incremental; True when that reason is
    new for this VM (then, and only then, the backup warns about it)."""
    from ..models import VmChangeTracking

    if not tracking.refused:
        VmChangeTracking.objects.filter(vm_uuid=vm_backup.vm_uuid).delete()
        return False
    known = VmChangeTracking.objects.filter(vm_uuid=vm_backup.vm_uuid).first()
    if known is not None and known.reason == tracking.refused:
        return False
    VmChangeTracking.objects.update_or_create(
        vm_uuid=vm_backup.vm_uuid,
        defaults={"pool": vm_backup.pool, "reason": tracking.refused, "code": tracking.code,
                  "noted_at": timezone.now()})
    return True
