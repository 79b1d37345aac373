"""Building and tearing down objects with their links kept consistent (VM <-> VBD <-> VDI,
SR.VDIs, network.VIFs, host.resident_VMs). Callers hold ``sim.db.lock``.

A VDI's content lives in the DiskStore under the VDI's uuid.
"""

import random

from . import cbt
from .errors import XapiError
from .records import NULL
from .xmlrpc import EPOCH, Timestamp


# -- allowed operations -------------------------------------------------------------
# What xapi lists in VM.allowed_operations per power state (xapi_vm_lifecycle.ml), trimmed to
# the operations the simulator serves. Clients check these before calling.
_VM_OPERATIONS = {
    "Halted": ["start", "start_on", "clone", "copy", "snapshot", "export", "destroy", "make_into_template",
               "changing_memory_limits", "changing_VCPUs", "changing_static_range", "provision",
               "metadata_export"],
    "Running": ["clean_shutdown", "hard_shutdown", "clean_reboot", "hard_reboot", "suspend", "pause", "snapshot",
                "checkpoint", "changing_dynamic_range", "changing_VCPUs_live", "metadata_export"],
    "Suspended": ["resume", "resume_on", "hard_shutdown", "snapshot", "export", "metadata_export"],
    "Paused": ["unpause", "hard_shutdown", "hard_reboot", "snapshot", "metadata_export"],
}
_SNAPSHOT_OPERATIONS = ["clone", "copy", "export", "destroy", "revert", "metadata_export"]
_TEMPLATE_OPERATIONS = ["clone", "copy", "export", "destroy", "provision", "metadata_export"]
VDI_OPERATIONS = ["snapshot", "clone", "copy", "destroy", "resize", "update", "forget", "generate_config",
                  "enable_cbt", "disable_cbt", "data_destroy", "list_changed_blocks", "set_on_boot", "mirror"]


def refresh_allowed_operations(sim, vm: str) -> None:
    rec = sim.db.get("VM", vm)
    if rec["is_control_domain"]:
        ops = []
    elif rec["is_a_snapshot"]:
        ops = _SNAPSHOT_OPERATIONS
    elif rec["is_a_template"]:
        ops = _TEMPLATE_OPERATIONS
    else:
        ops = list(_VM_OPERATIONS.get(rec["power_state"], []))
        if rec["power_state"] == "Running" and sim.product.has_snapshot_with_quiesce:
            ops.append("snapshot_with_quiesce")
    if rec["allowed_operations"] != ops:
        sim.db.update("VM", vm, allowed_operations=list(ops))


# -- storage ------------------------------------------------------------------------
def sr_usage(sim, sr: str) -> tuple[int, int]:
    """(physical utilisation, virtual allocation) of an SR, including injected fill."""
    # Sums the VDI records' physical_utilisation, which refresh_vdi keeps in step with the
    # disk store after every write (asking the store for each VDI made builds quadratic).
    db = sim.db
    used = alloc = 0
    for vdi in db.get("SR", sr)["VDIs"]:
        rec = db.get("VDI", vdi)
        alloc += rec["virtual_size"]
        used += rec["physical_utilisation"]
    return used + sim.faults.sr_fill.get(sr, 0), alloc


def refresh_sr(sim, sr: str) -> None:
    used, alloc = sr_usage(sim, sr)
    rec = sim.db.get("SR", sr)
    if rec["physical_utilisation"] != used or rec["virtual_allocation"] != alloc:
        sim.db.update("SR", sr, physical_utilisation=used, virtual_allocation=alloc)


def sr_free(sim, sr: str) -> int:
    used, _ = sr_usage(sim, sr)
    return sim.db.get("SR", sr)["physical_size"] - used


def refresh_vdi(sim, vdi: str) -> None:
    from . import lvhd
    rec = sim.db.get("VDI", vdi)
    if lvhd.is_lvhd(sim, rec["SR"]):      # logical volumes: sizes by the LVHD rules
        used = lvhd.physical_utilisation(sim, vdi)
        if used != rec["physical_utilisation"]:
            sim.db.update("VDI", vdi, physical_utilisation=used)
    elif sim.disks.exists(rec["uuid"]):
        used = sim.disks.physical_utilisation(rec["uuid"])
        if used != rec["physical_utilisation"]:
            sim.db.update("VDI", vdi, physical_utilisation=used)


def create_vdi(sim, sr: str, virtual_size: int, name_label: str, **fields) -> str:
    if sim.db.get("SR", sr)["content_type"] == "iso":
        raise XapiError("SR_OPERATION_NOT_SUPPORTED", sr)
    fields.setdefault("sm_config", {})
    fields.setdefault("allowed_operations", list(VDI_OPERATIONS))
    ref = sim.db.create("VDI", SR=sr, virtual_size=int(virtual_size), name_label=name_label, **fields)
    rec = sim.db.get("VDI", ref)
    rec["location"] = rec["uuid"]
    sim.disks.create(rec["uuid"], int(virtual_size))
    sim.db.add_to("SR", sr, "VDIs", ref)
    refresh_vdi(sim, ref)
    refresh_sr(sim, sr)
    return ref


def snapshot_vdi(sim, vdi: str, sr: str | None = None, **fields) -> str:
    """A copy-on-write copy of ``vdi`` (snapshot, clone and copy all start here)."""
    db = sim.db
    src = db.get("VDI", vdi)
    sr = sr or src["SR"]
    copied = {k: src[k] for k in ("name_label", "name_description", "type", "sharable", "read_only",
                                  "cbt_enabled", "on_boot")}
    copied["other_config"] = dict(src["other_config"])
    copied["sm_config"] = {}
    copied["allowed_operations"] = list(VDI_OPERATIONS)
    copied.update(fields)
    ref = db.create("VDI", SR=sr, virtual_size=src["virtual_size"], **copied)
    rec = db.get("VDI", ref)
    rec["location"] = rec["uuid"]
    sim.disks.snapshot(src["uuid"], rec["uuid"])
    if fields.get("is_a_snapshot"):
        cbt.on_snapshot(sim, src["uuid"], rec["uuid"])
    db.add_to("SR", sr, "VDIs", ref)
    refresh_vdi(sim, ref)
    refresh_sr(sim, sr)
    return ref


def destroy_vdi(sim, vdi: str) -> None:
    db = sim.db
    rec = db.get("VDI", vdi)
    for vbd in list(rec["VBDs"]):
        if db.exists("VBD", vbd):
            db.update("VBD", vbd, VDI=NULL, empty=True)
    if rec["snapshot_of"] != NULL and db.exists("VDI", rec["snapshot_of"]):
        db.remove_from("VDI", rec["snapshot_of"], "snapshots", vdi)
    for snap in rec["snapshots"]:
        if db.exists("VDI", snap):
            db.update("VDI", snap, snapshot_of=NULL)
    if sim.disks.exists(rec["uuid"]):
        cbt.on_destroy(sim, rec["uuid"])
        sim.disks.destroy(rec["uuid"])
    db.remove_from("SR", rec["SR"], "VDIs", vdi)
    db.delete("VDI", vdi)
    if rec["sm_config"].get("vhd-parent"):
        from .lvhd import kick_gc
        kick_gc(sim, rec["SR"])         # LVM SRs coalesce the chain a while later
    # Blocks the destroyed disk shared may now count for a snapshot or clone of it.
    for other in db.get("SR", rec["SR"])["VDIs"]:
        refresh_vdi(sim, other)
    refresh_sr(sim, rec["SR"])


def hosts_seeing_sr(sim, sr: str) -> list[str]:
    db = sim.db
    return [db.get("PBD", p)["host"] for p in db.get("SR", sr)["PBDs"] if db.get("PBD", p)["currently_attached"]]


def vm_disk_srs(sim, vm: str) -> set[str]:
    db = sim.db
    srs = set()
    for vbd in db.get("VM", vm)["VBDs"]:
        vdi = db.get("VBD", vbd)["VDI"]
        if vdi != NULL and db.exists("VDI", vdi):
            srs.add(db.get("VDI", vdi)["SR"])
    return srs


# -- devices ------------------------------------------------------------------------
def random_mac(rng: random.Random) -> str:
    # Locally administered, unicast, like xapi's generated MACs.
    octets = [rng.randrange(256) for _ in range(6)]
    octets[0] = (octets[0] & 0xFC) | 0x02
    return ":".join("%02x" % o for o in octets)


def create_vbd(sim, vm: str, vdi: str, userdevice: str, **fields) -> str:
    db = sim.db
    fields.setdefault("bootable", userdevice == "0")
    ref = db.create("VBD", VM=vm, VDI=vdi, userdevice=str(userdevice), empty=vdi == NULL, **fields)
    db.add_to("VM", vm, "VBDs", ref)
    if vdi != NULL:
        db.add_to("VDI", vdi, "VBDs", ref)
    return ref


def destroy_vbd(sim, vbd: str) -> None:
    db = sim.db
    rec = db.delete("VBD", vbd)
    db.remove_from("VM", rec["VM"], "VBDs", vbd)
    if rec["VDI"] != NULL:
        db.remove_from("VDI", rec["VDI"], "VBDs", vbd)


def create_vif(sim, vm: str, network: str, device: str, mac: str = "", **fields) -> str:
    db = sim.db
    autogen = not mac
    ref = db.create("VIF", VM=vm, network=network, device=str(device),
                    MAC=mac or random_mac(sim.rng), MAC_autogenerated=autogen, **fields)
    db.add_to("VM", vm, "VIFs", ref)
    db.add_to("network", network, "VIFs", ref)
    return ref


def destroy_vif(sim, vif: str) -> None:
    db = sim.db
    rec = db.delete("VIF", vif)
    db.remove_from("VM", rec["VM"], "VIFs", vif)
    db.remove_from("network", rec["network"], "VIFs", vif)


# -- VMs ----------------------------------------------------------------------------
LINUX = {"name": "Debian GNU/Linux 12 (bookworm)", "distro": "debian", "major": "12", "minor": "5",
         "uname": "6.1.0-18-amd64"}
WINDOWS = {"name": "Microsoft Windows Server 2019 Standard|C:\\Windows|\\Device\\Harddisk0\\Partition2",
           "distro": "windows", "major": "10", "minor": "0", "spmajor": "0", "spminor": "0"}


def create_vm(sim, name_label: str, *, memory: int = 256 << 20, vcpus: int = 1, os: str = "linux",
              **fields) -> str:
    """A VM with metrics and guest metrics; ``os`` 'linux' or 'windows' sets what the guest
    agent reports (Windows guests report VSS support, which quiesced snapshots need)."""
    db = sim.db
    metrics = db.create("VM_metrics", memory_actual=memory, VCPUs_number=vcpus)
    guest = NULL
    if os in ("linux", "windows"):
        windows = os == "windows"
        other = {"feature-vss": "1", "feature-shutdown": "1"} if windows else {"feature-shutdown": "1"}
        guest = db.create("VM_guest_metrics", os_version=dict(WINDOWS if windows else LINUX),
                          PV_drivers_version={"major": "9", "minor": "3", "micro": "3", "build": "0"},
                          other=other, last_updated=Timestamp.now())
    other_config = {"mac_seed": str(sim.uuid4()), **fields.pop("other_config", {})}
    platform = {"timeoffset": "0", "device-model": "qemu-upstream-compat", "viridian": "true" if os == "windows" else "false",
                "acpi": "1", "apic": "true", "pae": "true", "nx": "true", "vga": "std", "videoram": "8"}
    ref = db.create("VM", name_label=name_label, memory_static_max=memory, memory_dynamic_max=memory,
                    memory_dynamic_min=memory, memory_static_min=min(memory, 128 << 20), memory_target=memory,
                    memory_overhead=memory // 128, VCPUs_max=vcpus, VCPUs_at_startup=vcpus,
                    metrics=metrics, guest_metrics=guest, other_config=other_config, platform=platform,
                    **fields)
    refresh_allowed_operations(sim, ref)
    return ref


def vm_disks(sim, vm: str) -> list[tuple[str, str]]:
    """(VBD, VDI) pairs of the VM's disks, ordered by userdevice."""
    db = sim.db
    pairs = []
    for vbd in db.get("VM", vm)["VBDs"]:
        rec = db.get("VBD", vbd)
        if rec["type"] == "Disk" and rec["VDI"] != NULL and db.exists("VDI", rec["VDI"]):
            pairs.append((vbd, rec["VDI"]))
    pairs.sort(key=lambda p: int(db.get("VBD", p[0])["userdevice"] or 0))
    return pairs


def set_power_state(sim, vm: str, state: str, host: str = NULL) -> None:
    """Move a VM between power states, keeping resident_on, host.resident_VMs, VBD/VIF
    attachment and metrics in step."""
    db = sim.db
    rec = db.get("VM", vm)
    old_host = rec["resident_on"]
    running = state in ("Running", "Paused")
    if old_host != NULL and db.exists("host", old_host):
        db.remove_from("host", old_host, "resident_VMs", vm)
    new_host = host if running else NULL
    if new_host != NULL:
        db.add_to("host", new_host, "resident_VMs", vm)
    db.update("VM", vm, power_state=state, resident_on=new_host,
              domid=sim.next_domid() if running else -1)
    for vbd in rec["VBDs"]:
        vbd_rec = db.get("VBD", vbd)
        device = vbd_rec["device"]
        if running and not device:
            device = "xvd" + "abcdefghijklmnop"[int(vbd_rec["userdevice"] or 0) % 16]  # set when plugged
        db.update("VBD", vbd, currently_attached=running, device=device)
    for vif in rec["VIFs"]:
        db.update("VIF", vif, currently_attached=running)
    refresh_allowed_operations(sim, vm)
    if rec["metrics"] != NULL and db.exists("VM_metrics", rec["metrics"]):
        db.update("VM_metrics", rec["metrics"], start_time=Timestamp.now() if running else EPOCH,
                  state=["running"] if running else [])


def destroy_vm(sim, vm: str) -> None:
    """Remove a VM and its VBDs/VIFs/metrics; its VDIs stay (as xapi's VM.destroy)."""
    db = sim.db
    rec = db.get("VM", vm)
    for vbd in list(rec["VBDs"]):
        destroy_vbd(sim, vbd)
    for vif in list(rec["VIFs"]):
        destroy_vif(sim, vif)
    for field, cls in (("metrics", "VM_metrics"), ("guest_metrics", "VM_guest_metrics")):
        if rec[field] != NULL and db.exists(cls, rec[field]):
            db.delete(cls, rec[field])
    if rec["snapshot_of"] != NULL and db.exists("VM", rec["snapshot_of"]):
        db.remove_from("VM", rec["snapshot_of"], "snapshots", vm)
    for snap in rec["snapshots"]:
        if db.exists("VM", snap):
            db.update("VM", snap, snapshot_of=NULL)
    if rec["resident_on"] != NULL and db.exists("host", rec["resident_on"]):
        db.remove_from("host", rec["resident_on"], "resident_VMs", vm)
    db.delete("VM", vm)


def copy_vm_record(sim, vm: str, name_label: str, **overrides) -> str:
    """A new VM record copied from ``vm`` (no devices), with fresh metrics."""
    db = sim.db
    src = db.get("VM", vm)
    skip = {"uuid", "VBDs", "VIFs", "metrics", "guest_metrics", "snapshots", "children", "resident_on",
            "current_operations", "allowed_operations", "consoles", "crash_dumps", "VTPMs", "VGPUs",
            "attached_PCIs", "VUSBs", "domid", "suspend_VDI"}
    fields = {k: _copy_value(v) for k, v in src.items() if k not in skip}
    fields.update(name_label=name_label, power_state="Halted", resident_on=NULL)
    metrics = db.create("VM_metrics", memory_actual=src["memory_target"], VCPUs_number=src["VCPUs_at_startup"])
    guest = NULL
    if src["guest_metrics"] != NULL and db.exists("VM_guest_metrics", src["guest_metrics"]):
        g = db.get("VM_guest_metrics", src["guest_metrics"])
        guest = db.create("VM_guest_metrics", **{k: _copy_value(v) for k, v in g.items() if k != "uuid"})
    fields.update(metrics=metrics, guest_metrics=guest)
    fields.update(overrides)
    ref = db.create("VM", **fields)
    refresh_allowed_operations(sim, ref)
    return ref


def _copy_value(v):
    if isinstance(v, dict):
        return dict(v)
    if isinstance(v, list):
        return list(v)
    return v
