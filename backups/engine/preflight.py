"""Checks before a VM's snapshot is taken, so that a backup that cannot succeed is skipped
with the reason instead of failing half-way (and never with SR_BACKEND_FAILURE_44 from the
storage manager in the middle of a job):

- the data store has room for what this backup is expected to add;
- each SR holding the VM's disks has room for the snapshot. Thin SRs (ext, nfs, ...) need the
  data the new leaf may come to hold plus VHD metadata. On thick LVM SRs (lvm, lvmoiscsi,
  lvmohba: sm's LVHDSR) a snapshot needs the data written since the disk's last snapshot,
  rounded to 4 MiB logical volumes, plus an 8 MiB snapshot volume and two 4 MiB journals
  (LVHDVDI._snapshot); the data written is not visible through XenAPI (a thick disk's
  physical_utilisation is its full logical volume), so the bound is a fully written disk:
  the full logical volume (lvhdutil.calcSizeVHDLV) plus 16 MiB.

The same estimates serve the job page's prediction from the inventory mirror (`predict`).
"""
from dataclasses import dataclass, field

from ..choices import BackupMethod

THICK_SR_TYPES = {"lvm", "lvmoiscsi", "lvmohba", "lvmofcoe"}
SNAPSHOT_METADATA = 8 * 1024 * 1024        # per VDI: VHD headers, bitmaps, LV rounding
STORE_HEADROOM = 1.10                       # expected store growth is an estimate: keep 10 % spare


class BackupSkipped(Exception):
    """The backup was not attempted; the message says why (shown on the run as is)."""


@dataclass
class SrNeed:
    sr_name: str
    sr_type: str
    needed: int = 0
    free: int = 0

    @property
    def fits(self):
        return self.free >= self.needed


@dataclass
class Estimate:
    store_bytes: int = 0                         # what the store is expected to grow by
    srs: dict = field(default_factory=dict)      # sr uuid -> SrNeed


MiB = 1024 * 1024
LVM_EXTENT = 4 * MiB
LVM_SNAPSHOT_EXTRA = 16 * MiB               # thin snapshot volume (8 MiB) + two 4 MiB journals
LVM_VHD_METADATA = 4 * MiB + 132 * 1024     # vhdutil.calcOverheadEmpty of the 2 TiB maximum


def thick_lv_size(virtual_size):
    """lvhdutil.calcSizeVHDLV: a fully inflated VHD's logical volume (4 KiB of bitmap per
    2 MiB block, metadata for 2 TiB, rounded up to 4 MiB)."""
    bitmaps = -(-virtual_size // (2 * MiB)) * 4096
    return -(-(virtual_size + LVM_VHD_METADATA + bitmaps) // LVM_EXTENT) * LVM_EXTENT


def snapshot_need(sr_type, virtual_size, physical_utilisation):
    if sr_type in THICK_SR_TYPES:
        return thick_lv_size(virtual_size) + LVM_SNAPSHOT_EXTRA
    return physical_utilisation + SNAPSHOT_METADATA


def takes_snapshot(vm_backup_or_job, power_state):
    """An offline backup of a running VM without snapshot+restart exports the halted VM itself."""
    if vm_backup_or_job.method != BackupMethod.OFFLINE:
        return True
    return power_state != "Running" or vm_backup_or_job.restart_after_snapshot


def expected_store_growth(previous_points, disk_bytes_in_use, incremental):
    """(bytes, known) the store is expected to grow by: from the VM's last restore point on
    this store (an incremental adds about what the last one added, a full what the last full
    did), else the data on its disks (an upper bound: compression and dedup are unknown)."""
    for point in previous_points:
        if incremental or point.kind == "full":
            return point.bytes_stored, True
    return disk_bytes_in_use, False


def check_pool(xenapi, vm_ref) -> Estimate:
    """Live SR numbers for the VM's disks (XenAPI), just before the snapshot."""
    estimate = Estimate()
    for vbd_ref in xenapi.VM.get_VBDs(vm_ref):
        vbd = xenapi.VBD.get_record(vbd_ref)
        if vbd["type"] != "Disk" or vbd["VDI"] == "OpaqueRef:NULL":
            continue
        vdi = xenapi.VDI.get_record(vbd["VDI"])
        sr_ref = vdi["SR"]
        sr = xenapi.SR.get_record(sr_ref)
        need = estimate.srs.setdefault(sr["uuid"], SrNeed(
            sr_name=sr["name_label"], sr_type=sr["type"],
            free=int(sr["physical_size"]) - int(sr["physical_utilisation"])))
        need.needed += snapshot_need(sr["type"], int(vdi["virtual_size"]), int(vdi["physical_utilisation"]))
        estimate.store_bytes += int(vdi["physical_utilisation"])
    return estimate


def sr_problems(estimate: Estimate):
    return [f"storage repository {need.sr_name} has {_gb(need.free)} free; the snapshot needs about "
            f"{_gb(need.needed)} ({'thick LVM: up to the full disk size' if need.sr_type in THICK_SR_TYPES else 'the data on the disks'})"
            for need in estimate.srs.values() if not need.fits]


def store_problem(store_name, free, expected):
    if free is None or free >= expected * STORE_HEADROOM:
        return None
    return (f"data store {store_name} has {_gb(free)} free; this backup is expected to add about "
            f"{_gb(expected)}")


def _gb(n):
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def run_preflight(xenapi, vm_ref, vm_backup, repo, previous_points):
    """Raise BackupSkipped when the snapshot or the backup would not fit; returns warnings for
    what may not fit (a first backup, whose size after compression and dedup is unknown)."""
    power_state = xenapi.VM.get_power_state(vm_ref)
    estimate = check_pool(xenapi, vm_ref)
    problems = sr_problems(estimate) if takes_snapshot(vm_backup, power_state) else []
    expected, known = expected_store_growth(previous_points, estimate.store_bytes, vm_backup.incremental)
    store_text = store_problem(str(vm_backup.store), repo.backend.free_space(), expected)
    warnings = []
    if store_text and known:
        problems.append(store_text)
    elif store_text:
        warnings.append(store_text + " before compression and deduplication; it may not fit")
    if problems:
        raise BackupSkipped("skipped before the snapshot: " + "; ".join(problems))
    return warnings
