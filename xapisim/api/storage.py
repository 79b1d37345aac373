"""VDI, VBD, VIF, SR and network calls, including CBT (notes section 7)."""

import base64
import time

from .. import cbt
from .. import inventory as inv
from .. import lvhd
from ..disks import DiskError
from ..errors import XapiError, bad_power_state
from ..records import NULL, TEMPLATES
from ..xmlrpc import Timestamp
from .registry import _coerce, api


def _record_fields(cls: str, record: dict, allowed: set[str]) -> dict:
    template = TEMPLATES[cls]
    return {k: _coerce(template[k], v) for k, v in record.items() if k in allowed and k in template}


def vdi_attached_to_running_vm(db, vdi: str) -> bool:
    for vbd in db.get("VDI", vdi)["VBDs"]:
        if db.exists("VBD", vbd) and db.get("VBD", vbd)["currently_attached"]:
            return True
    return False


def assert_has_data(call, vdi: str) -> None:
    """A cbt_metadata VDI refuses clone, copy, resize, snapshot, mirror, revert and the CBT
    switches (xapi_vdi.ml check_operation_error, allowed_for_cbt_metadata_vdi)."""
    if call.db.get("VDI", vdi)["type"] == "cbt_metadata":
        raise XapiError("VDI_INCOMPATIBLE_TYPE", vdi, "cbt_metadata")


# -- VDI ----------------------------------------------------------------------------
@api("VDI.create")
def vdi_create(call, record):
    fields = _record_fields("VDI", record, {"name_label", "name_description", "SR", "virtual_size", "type",
                                            "sharable", "read_only", "other_config", "xenstore_data",
                                            "sm_config", "tags"})
    sr = fields.pop("SR", NULL)
    call.db.get("SR", sr)
    size = fields.pop("virtual_size", 0)
    free = inv.sr_free(call.sim, sr)
    if lvhd.is_lvhd(call.sim, sr) and free < lvhd.full_lv(size):
        raise XapiError("SR_BACKEND_FAILURE_44", "", "There is insufficient space", "")
    if size > call.db.get("SR", sr)["physical_size"] or free <= 0:
        raise XapiError("SR_FULL", size, max(free, 0))
    return inv.create_vdi(call.sim, sr, size, fields.pop("name_label", ""), **fields)


def assert_managed(db, vdi: str) -> None:
    """Xapi_vdi_helpers.assert_managed: base copies (managed=false) refuse destroy, snapshot
    and clone."""
    if not db.get("VDI", vdi)["managed"]:
        raise XapiError("VDI_NOT_MANAGED", vdi)


@api("VDI.destroy")
def vdi_destroy(call, vdi):
    assert_managed(call.db, vdi)
    if vdi_attached_to_running_vm(call.db, vdi):
        raise XapiError("VDI_IN_USE", vdi, "destroy")
    inv.destroy_vdi(call.sim, vdi)
    return ""


@api("VDI.snapshot")
def vdi_snapshot(call, vdi, driver_params=None):
    from .vm import assert_space_for_snapshot
    assert_managed(call.db, vdi)
    assert_has_data(call, vdi)
    assert_space_for_snapshot(call.sim, [vdi])
    snap = inv.snapshot_vdi(call.sim, vdi, is_a_snapshot=True, snapshot_of=vdi, snapshot_time=Timestamp.now())
    call.db.add_to("VDI", vdi, "snapshots", snap)
    if lvhd.is_lvhd(call.sim, call.db.get("VDI", vdi)["SR"]):
        lvhd.after_snapshot(call.sim, vdi, snap)
    return snap


@api("VDI.clone")
def vdi_clone(call, vdi, driver_params=None):
    assert_has_data(call, vdi)
    new = inv.snapshot_vdi(call.sim, vdi, is_a_snapshot=False, snapshot_of=NULL)
    call.db.update("VDI", new, cbt_enabled=False)
    return new


@api("VDI.copy")
def vdi_copy(call, vdi, sr, base_vdi=NULL, into_vdi=NULL):
    assert_has_data(call, vdi)
    call.db.get("SR", sr)
    new = inv.snapshot_vdi(call.sim, vdi, sr=sr, is_a_snapshot=False, snapshot_of=NULL)
    call.db.update("VDI", new, cbt_enabled=False)
    return new


def _resize(call, vdi, size):
    assert_has_data(call, vdi)
    rec = call.db.get("VDI", vdi)
    size = int(size)
    if size < rec["virtual_size"]:
        raise XapiError("VDI_TOO_SMALL", vdi, size)
    call.sim.disks.resize(rec["uuid"], size)
    call.db.update("VDI", vdi, virtual_size=size)
    inv.refresh_sr(call.sim, rec["SR"])
    return ""


@api("VDI.resize")
def vdi_resize(call, vdi, size):
    return _resize(call, vdi, size)


@api("VDI.resize_online")
def vdi_resize_online(call, vdi, size):
    return _resize(call, vdi, size)


@api("VDI.enable_cbt")
def vdi_enable_cbt(call, vdi):
    """Checks first (message forwarding), then the licence (Xapi_vdi.enable_cbt); a VDI whose
    CBT is already on is left alone (change_cbt_status), so its log keeps its links."""
    cbt.assert_cbt_configurable(call.sim, vdi)
    if not cbt.licensed(call.sim):
        raise XapiError("LICENCE_RESTRICTION", "CBT")
    rec = call.db.get("VDI", vdi)
    if not rec["cbt_enabled"]:
        cbt.create_log(call.sim, rec["uuid"])
        call.db.update("VDI", vdi, cbt_enabled=True)
    return ""


@api("VDI.disable_cbt")
def vdi_disable_cbt(call, vdi):
    cbt.assert_cbt_configurable(call.sim, vdi)
    rec = call.db.get("VDI", vdi)
    if rec["cbt_enabled"]:
        cbt.delete_log(call.sim, rec["uuid"])
        call.db.update("VDI", vdi, cbt_enabled=False)
    return ""


@api("VDI.list_changed_blocks")
def vdi_list_changed_blocks(call, vdi_from, vdi_to):
    db = call.db
    old, new = db.get("VDI", vdi_from), db.get("VDI", vdi_to)
    if vdi_attached_to_running_vm(db, vdi_to):
        raise XapiError("VDI_IN_USE", vdi_to, "list_changed_blocks")
    if old["SR"] != new["SR"]:
        raise XapiError("VDI_INCOMPATIBLE_TYPE", vdi_to, "VDIs on different SRs")
    cbt.assert_sr_supports_cbt(call.sim, new["SR"])
    # sm answers from the logs alone: no log on either side, or no chain of child pointers
    # from vdi_from to vdi_to, is "unrelated" (VDI.py list_changed_blocks).
    cbt.assert_related(call.sim, old["uuid"], new["uuid"])
    try:
        bitmap = call.sim.disks.changed_blocks(old["uuid"], new["uuid"])
    except DiskError:
        raise XapiError("SR_BACKEND_FAILURE_460", "", "Failed to calculate changed blocks for given VDIs.", "") from None
    return base64.b64encode(bitmap).decode("ascii")


@api("VDI.data_destroy")
def vdi_data_destroy(call, vdi):
    rec = call.db.get("VDI", vdi)
    if rec["type"] == "cbt_metadata":
        return ""
    cbt.assert_sr_supports_cbt(call.sim, rec["SR"])
    if not rec["is_a_snapshot"]:
        raise XapiError("OPERATION_NOT_ALLOWED", "VDI is not a snapshot: %s" % vdi)
    if not rec["cbt_enabled"]:
        raise XapiError("VDI_NO_CBT_METADATA", vdi)
    _wait_for_vbds_to_go(call, vdi, rec["type"])
    call.sim.disks.data_destroy(rec["uuid"])
    call.db.update("VDI", vdi, type="cbt_metadata")
    inv.refresh_vdi(call.sim, vdi)
    inv.refresh_sr(call.sim, rec["SR"])
    return ""


def _wait_for_vbds_to_go(call, vdi, vdi_type):
    """xapi_vdi.ml _data_destroy: the VDI is marked cbt_metadata at once (no new VBD can
    use it), then xapi waits up to 4 s for every VBD of it, plugged or not, to be destroyed
    (an NBD connection's dom0 VBD goes when the client disconnects); still there: the type
    is put back and the call fails with VDI_IN_USE."""
    db = call.db
    db.update("VDI", vdi, type="cbt_metadata")
    deadline = time.monotonic() + cbt.DATA_DESTROY_VBD_WAIT
    while db.get("VDI", vdi)["VBDs"]:
        left = deadline - time.monotonic()
        if left <= 0:
            db.update("VDI", vdi, type=vdi_type)
            raise XapiError("VDI_IN_USE", vdi, "data_destroy")
        db.changed.wait(left)       # releases the db lock while waiting


@api("VDI.get_nbd_info")
def vdi_get_nbd_info(call, vdi):
    rec = call.db.get("VDI", vdi)
    if rec["type"] == "cbt_metadata":
        raise XapiError("VDI_INCOMPATIBLE_TYPE", vdi, "cbt_metadata")
    return call.sim.nbd_info(call.session, vdi)


# -- VBD / VIF ----------------------------------------------------------------------
@api("VBD.create")
def vbd_create(call, record):
    db = call.db
    fields = _record_fields("VBD", record, {"bootable", "mode", "type", "unpluggable", "empty",
                                            "other_config", "qos_algorithm_type", "qos_algorithm_params",
                                            "device"})
    vm, vdi = record.get("VM", NULL), record.get("VDI", NULL)
    vm_rec = db.get("VM", vm)
    if vdi != NULL:
        db.get("VDI", vdi)
    userdevice = str(record.get("userdevice", "autodetect"))
    used = {db.get("VBD", v)["userdevice"] for v in vm_rec["VBDs"]}
    if userdevice == "autodetect":
        userdevice = next(str(i) for i in range(64) if str(i) not in used)
    elif userdevice in used:
        raise XapiError("DEVICE_ALREADY_EXISTS", userdevice)
    fields.pop("empty", None)
    return inv.create_vbd(call.sim, vm, vdi, userdevice, **fields)


@api("VBD.destroy")
def vbd_destroy(call, vbd):
    rec = call.db.get("VBD", vbd)
    if rec["currently_attached"]:
        raise XapiError("OPERATION_NOT_ALLOWED", "VBD is currently attached")
    inv.destroy_vbd(call.sim, vbd)
    return ""


@api("VBD.plug")
def vbd_plug(call, vbd):
    rec = call.db.get("VBD", vbd)
    state = call.db.get("VM", rec["VM"])["power_state"]
    if state != "Running":
        raise bad_power_state(rec["VM"], "running", state)
    call.db.update("VBD", vbd, currently_attached=True)
    return ""


@api("VBD.unplug")
def vbd_unplug(call, vbd):
    call.db.get("VBD", vbd)
    call.db.update("VBD", vbd, currently_attached=False)
    return ""


@api("VIF.create")
def vif_create(call, record):
    db = call.db
    vm, network = record.get("VM", NULL), record.get("network", NULL)
    db.get("VM", vm)
    db.get("network", network)
    fields = _record_fields("VIF", record, {"MTU", "other_config", "qos_algorithm_type", "qos_algorithm_params",
                                            "locking_mode"})
    device = str(record.get("device", "0"))
    if any(db.get("VIF", v)["device"] == device for v in db.get("VM", vm)["VIFs"]):
        raise XapiError("DEVICE_ALREADY_EXISTS", device)
    return inv.create_vif(call.sim, vm, network, device, record.get("MAC", ""), **fields)


@api("VIF.destroy")
def vif_destroy(call, vif):
    call.db.get("VIF", vif)
    inv.destroy_vif(call.sim, vif)
    return ""


# -- SR / network -------------------------------------------------------------------
@api("SR.scan")
def sr_scan(call, sr):
    call.db.get("SR", sr)
    inv.refresh_sr(call.sim, sr)
    lvhd.kick_gc(call.sim, sr)          # LVHDSR.scan ends with _kickGC
    return ""


@api("SR.update")
def sr_update(call, sr):
    return sr_scan(call, sr)


@api("network.create")
def network_create(call, record):
    fields = _record_fields("network", record, {"name_label", "name_description", "MTU", "other_config",
                                                "bridge", "tags", "purpose"})
    fields.setdefault("bridge", "xapi%d" % len(call.db.all("network")))
    return call.db.create("network", **fields)


@api("network.destroy")
def network_destroy(call, network):
    rec = call.db.get("network", network)
    if rec["VIFs"]:
        raise XapiError("NETWORK_CONTAINS_VIF", rec["VIFs"])
    call.db.delete("network", network)
    return ""


@api("network.add_purpose")
def network_add_purpose(call, network, purpose):
    if purpose not in ("nbd", "insecure_nbd"):
        raise XapiError("INVALID_VALUE", "purpose", purpose)
    call.db.add_to("network", network, "purpose", purpose)
    call.sim.restart_nbd()
    return ""


@api("network.remove_purpose")
def network_remove_purpose(call, network, purpose):
    call.db.get("network", network)
    call.db.remove_from("network", network, "purpose", purpose)
    call.sim.restart_nbd()
    return ""
