"""LVM-based SRs (types lvm, lvmoiscsi, lvmohba): VHD on LVM, thick-provisioned, as the
storage manager's LVHDSR driver runs them (xapi-project/sm libs/sm/drivers/LVHDSR.py; the LVM*SR
drivers are copies of LVHDSR). Sizes follow libs/sm/lvhdutil.py and vhdutil.py:

- A VDI is a logical volume rounded to 4 MiB. A writable leaf is fully inflated:
  ``calcSizeVHDLV`` = virtual size + VHD metadata for the 2 TiB maximum (``calcOverheadEmpty``)
  + 4 KiB of bitmap per 2 MiB block (``calcOverheadBitmap``). Its ``physical_utilisation`` is
  that LV size whatever the guest wrote: the data size is not visible through XenAPI.
- ``VDI.snapshot`` (``LVHDVDI._snapshot``, SNAPSHOT_DOUBLE) turns the disk's LV into a hidden,
  read-only **base copy** (``managed=false``, name "base copy", deflated to the data written
  since its own parent), creates a new fully-inflated leaf that keeps the disk's identity and an
  empty thin snapshot leaf (8 MiB). Both leaves name the base in ``sm_config["vhd-parent"]``.
  Base copies are listed by ``VDI.get_all_records`` and in ``SR.VDIs``.
- Free space needed (``_ensureSpaceAvailable``): the base's deflated size + the thin snapshot LV
  + two 4 MiB journals; the new leaf reuses what deflating the old one frees. Short of it:
  ``SR_BACKEND_FAILURE_44`` (SRNoSpace). Up to the full disk size when every block was written.
- A disk whose VHD chain is ``MAX_CHAIN_SIZE`` (30) deep, itself included, cannot be
  snapshotted: ``SR_BACKEND_FAILURE_109 ["", "The snapshot chain is too long", ""]``.
- Deleting a snapshot kicks the garbage collector (``_kickGC``; ``SR.scan`` does too), which
  later coalesces: a base copy left with one child is merged with it, one left with none is
  removed. The chain gets shorter only then; the coalesce takes ``timings["coalesce"]``.
"""

import threading

from .errors import XapiError

LVHD_TYPES = {"lvm", "lvmoiscsi", "lvmohba", "lvhd", "lvhdoiscsi", "lvhdohba"}
MiB = 1 << 20
LVM_SIZE_INCREMENT = 4 * MiB
JOURNAL_LV = 4 * MiB
VHD_BLOCK = 2 * MiB
MSIZE = 2 * MiB * MiB          # 2 TiB: metadata is preallocated for this virtual size
MAX_CHAIN_SIZE = 30
BASE_COPY = "base copy"


def _roundup(unit: int, n: int) -> int:
    return -(-n // unit) * unit


def overhead_empty(virtual_size: int) -> int:
    size_mb = virtual_size // MiB
    overhead = _roundup(512, 3 * 1024 + (size_mb // 2) * 4)
    return _roundup(4096, overhead + (size_mb // 2) // 8)


def full_lv(virtual_size: int) -> int:
    """calcSizeVHDLV: the LV of a fully inflated VHD leaf."""
    bitmaps = -(-virtual_size // VHD_BLOCK) * 4096
    return _roundup(LVM_SIZE_INCREMENT, virtual_size + overhead_empty(MSIZE) + bitmaps)


THIN_LV = _roundup(LVM_SIZE_INCREMENT, overhead_empty(MSIZE))


def deflated_lv(blocks: int) -> int:
    """The LV of a VHD holding ``blocks`` 2 MiB blocks, deflated (base copies, snapshots)."""
    return _roundup(LVM_SIZE_INCREMENT, overhead_empty(MSIZE) + blocks * (VHD_BLOCK + 4096))


def is_lvhd(sim, sr: str) -> bool:
    return sim.db.get("SR", sr)["type"] in LVHD_TYPES


# -- chain --------------------------------------------------------------------------------
def parent_of(sim, vdi: str) -> str | None:
    """The base copy a VDI's VHD has as parent (sm_config vhd-parent), or None."""
    db = sim.db
    uuid = db.get("VDI", vdi)["sm_config"].get("vhd-parent")
    ref = db.by_uuid["VDI"].get(uuid) if uuid else None
    return ref if ref and db.exists("VDI", ref) else None


def chain_depth(sim, vdi: str) -> int:
    depth, node = 1, parent_of(sim, vdi)
    while node is not None:
        depth += 1
        node = parent_of(sim, node)
    return depth


def _own_blocks(sim, vdi: str) -> int:
    """2 MiB blocks a VDI's own VHD holds: what was written since its parent was made."""
    disks, uuid = sim.disks, sim.db.get("VDI", vdi)["uuid"]
    if not disks.exists(uuid) or not disks.has_data(uuid):
        return 0
    parent = parent_of(sim, vdi)
    per_block = VHD_BLOCK // 65536
    if parent is not None and disks.exists(sim.db.get("VDI", parent)["uuid"]):
        bitmap = disks.changed_blocks(sim.db.get("VDI", parent)["uuid"], uuid)
        small = [i * 8 + bit for i, byte in enumerate(bitmap) for bit in range(8) if byte & (0x80 >> bit)]
        return len({i // per_block for i in small})
    with disks.open_reader(uuid) as reader:
        blocks = set()
        for offset, length in reader.allocated_extents():
            blocks.update(range(offset // VHD_BLOCK, -(-(offset + length) // VHD_BLOCK)))
        return len(blocks)


def physical_utilisation(sim, vdi: str) -> int:
    rec = sim.db.get("VDI", vdi)
    if not rec["managed"]:
        return deflated_lv(_own_blocks(sim, vdi))
    if rec["is_a_snapshot"] or rec["type"] == "cbt_metadata":
        return deflated_lv(_own_blocks(sim, vdi)) if rec["type"] != "cbt_metadata" else 0
    return full_lv(rec["virtual_size"])


# -- snapshot -----------------------------------------------------------------------------
def check_snapshot(sim, vdis: list[str]) -> None:
    """LVHDVDI._snapshot's refusals, for every disk before any is touched."""
    from .inventory import sr_free
    needed: dict[str, int] = {}
    for vdi in vdis:
        sr = sim.db.get("VDI", vdi)["SR"]
        if chain_depth(sim, vdi) >= MAX_CHAIN_SIZE:
            raise XapiError("SR_BACKEND_FAILURE_109", "", "The snapshot chain is too long", "")
        needed[sr] = needed.get(sr, 0) + deflated_lv(_own_blocks(sim, vdi)) + THIN_LV + 2 * JOURNAL_LV
    for sr, need in needed.items():
        if sr_free(sim, sr) < need:
            raise XapiError("SR_BACKEND_FAILURE_44", "", "There is insufficient space", "")


def after_snapshot(sim, vdi: str, snapshot: str) -> None:
    """The disk's current VHD becomes a hidden base copy; the disk and its new snapshot are
    leaves on it."""
    from .inventory import refresh_sr
    db = sim.db
    rec = db.get("VDI", vdi)
    parent = rec["sm_config"].get("vhd-parent")
    base = db.create("VDI", SR=rec["SR"], virtual_size=rec["virtual_size"], name_label=BASE_COPY,
                     managed=False, read_only=True, type=rec["type"], allowed_operations=[],
                     sm_config={"vdi_type": "vhd", **({"vhd-parent": parent} if parent else {})})
    base_rec = db.get("VDI", base)
    base_rec["location"] = base_rec["uuid"]
    sim.disks.snapshot(rec["uuid"], base_rec["uuid"])        # the data as it is now, frozen
    db.add_to("SR", rec["SR"], "VDIs", base)
    for leaf in (vdi, snapshot):
        sm_config = dict(db.get("VDI", leaf)["sm_config"], vdi_type="vhd")
        sm_config["vhd-parent"] = base_rec["uuid"]
        db.update("VDI", leaf, sm_config=sm_config)
    db.update("VDI", base, physical_utilisation=physical_utilisation(sim, base))
    for leaf in (vdi, snapshot):
        db.update("VDI", leaf, physical_utilisation=physical_utilisation(sim, leaf))
    refresh_sr(sim, rec["SR"])


# -- garbage collection -------------------------------------------------------------------
def kick_gc(sim, sr: str) -> None:
    """Coalesce the SR after ``timings["coalesce"]`` seconds (LVHDSR._kickGC)."""
    from .timing import duration
    if not is_lvhd(sim, sr):
        return
    timer = threading.Timer(duration(sim, "coalesce"), _collect, (sim, sr))
    timer.daemon = True
    timer.start()


def _collect(sim, sr: str) -> None:
    from .inventory import refresh_sr
    db = sim.db
    with db.lock:
        if not db.exists("SR", sr):
            return
        changed = True
        while changed:
            changed = False
            for base in [v for v in db.get("SR", sr)["VDIs"] if not db.get("VDI", v)["managed"]]:
                uuid = db.get("VDI", base)["uuid"]
                children = [v for v in db.get("SR", sr)["VDIs"]
                            if db.get("VDI", v)["sm_config"].get("vhd-parent") == uuid]
                if len(children) > 1:
                    continue
                grandparent = db.get("VDI", base)["sm_config"].get("vhd-parent")
                for child in children:       # merged: the child now sits on the base's parent
                    sm_config = dict(db.get("VDI", child)["sm_config"])
                    sm_config.pop("vhd-parent", None)
                    if grandparent:
                        sm_config["vhd-parent"] = grandparent
                    db.update("VDI", child, sm_config=sm_config)
                _forget_base(sim, base)
                for child in children:
                    db.update("VDI", child, physical_utilisation=physical_utilisation(sim, child))
                changed = True
                break
        refresh_sr(sim, sr)


def _forget_base(sim, base: str) -> None:
    db = sim.db
    rec = db.get("VDI", base)
    if sim.disks.exists(rec["uuid"]):
        sim.disks.destroy(rec["uuid"])
    db.remove_from("SR", rec["SR"], "VDIs", base)
    db.delete("VDI", base)
