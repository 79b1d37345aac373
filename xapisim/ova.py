"""ova.xml: building it for /export and /export_metadata, and turning one into objects for
/import with xapi's restore rules (notes sections 5 and 6)."""

import itertools
import time

from . import inventory as inv
from . import xmlrpc
from .errors import XapiError
from .records import NULL, TEMPLATES, new_record
from .xmlrpc import EPOCH, Timestamp

EXPORT_VSN = 2
# Export ids are a process-global counter in xapi, so numbering does not start at 0.
_export_ids = itertools.count(7)
_EXPORT_ORDER = ["host", "VM", "VM_metrics", "VM_guest_metrics", "VBD", "VIF", "network", "VDI", "SR"]


class Export:
    """The objects of one export: ova.xml bytes and the VDIs to stream by their Ref:n."""

    def __init__(self, sim):
        self.sim = sim
        self.ids: dict[str, str] = {}             # internal ref -> "Ref:n"
        self.objects: dict[str, list[str]] = {c: [] for c in _EXPORT_ORDER}
        self.vm_overrides: dict[str, dict] = {}
        self.streamed_vdis: list[str] = []

    def add(self, cls: str, ref: str) -> None:
        if ref == NULL or ref in self.ids or not self.sim.db.exists(cls, ref):
            return
        self.ids[ref] = "Ref:%d" % next(_export_ids)
        self.objects[cls].append(ref)

    def add_vm(self, vm: str, *, preserve_power_state: bool, keep_snapshot_fields: bool = False,
               stream_disks: bool = True) -> None:
        db = self.sim.db
        rec = db.get("VM", vm)
        self.add("host", rec["resident_on"])
        self.add("VM", vm)
        self.add("VM_metrics", rec["metrics"])
        self.add("VM_guest_metrics", rec["guest_metrics"])
        overrides = {"current_operations": {}, "allowed_operations": [], "consoles": [], "crash_dumps": [],
                     "blobs": {}}
        if not keep_snapshot_fields:
            overrides.update(is_a_snapshot=False, snapshot_of=NULL, snapshots=[], snapshot_time=EPOCH,
                             parent=NULL, children=[])
        suspended = rec["power_state"] == "Suspended"
        if not preserve_power_state:
            overrides.update(power_state="Halted", suspend_VDI=NULL, resident_on=NULL)
        self.vm_overrides[vm] = overrides
        for vbd in rec["VBDs"]:
            vbd_rec = db.get("VBD", vbd)
            vdi = vbd_rec["VDI"]
            if vbd_rec["type"] == "CD" or vdi == NULL:
                continue
            if db.get("SR", db.get("VDI", vdi)["SR"])["content_type"] == "iso":
                continue
            self.add("VBD", vbd)
            self._add_vdi(vdi, stream_disks)
        for vif in rec["VIFs"]:
            self.add("VIF", vif)
            self.add("network", db.get("VIF", vif)["network"])
        if preserve_power_state and suspended and rec["suspend_VDI"] != NULL:
            self._add_vdi(rec["suspend_VDI"], stream_disks)

    def _add_vdi(self, vdi: str, stream: bool) -> None:
        self.add("VDI", vdi)
        self.add("SR", self.sim.db.get("VDI", vdi)["SR"])
        if stream and vdi not in self.streamed_vdis:
            self.streamed_vdis.append(vdi)

    def ova_xml(self) -> bytes:
        sim = self.sim
        master = sim.db.get("host", sim.master())
        major, minor = sim.product.xapi_build   # importexport.ml rpc_of_version: the xapi build
        version = {
            "hostname": master["hostname"], "date": time.strftime("%Y-%m-%d"),
            "product_version": sim.product.version, "product_brand": sim.product.brand,
            "build_number": sim.product.version, "xapi_major": major, "xapi_minor": minor,
            "export_vsn": EXPORT_VSN,
        }
        objects = []
        for cls in _EXPORT_ORDER:
            for ref in self.objects[cls]:
                snapshot = dict(sim.db.get(cls, ref))
                snapshot.update(self.vm_overrides.get(ref, {}))
                objects.append({"class": cls, "id": self.ids[ref], "snapshot": self._rewrite(snapshot)})
        body = xmlrpc.value_fragment({"version": version, "objects": objects})
        return body.encode("utf-8")

    def _rewrite(self, value):
        """Internal refs become Ref:n when exported, OpaqueRef:NULL otherwise (dropped from sets)."""
        if isinstance(value, str) and value.startswith("OpaqueRef:"):
            return self.ids.get(value, NULL)
        if isinstance(value, dict):
            return {k: self._rewrite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.ids[v] if v in self.ids else self._rewrite(v) for v in value
                    if not (isinstance(v, str) and v.startswith("OpaqueRef:") and v not in self.ids)]
        return value

    def disk_names(self) -> list[tuple[str, str]]:
        """(Ref:n, VDI uuid) of the disks streamed after ova.xml."""
        return [(self.ids[v], self.sim.db.get("VDI", v)["uuid"]) for v in self.streamed_vdis]


# -- import ---------------------------------------------------------------------------
class Import:
    """Creates the objects of an ova.xml in the database, remembering them so a failed
    import can be undone. Callers hold the db lock."""

    def __init__(self, sim, sr: str, *, restore: bool, force: bool):
        self.sim = sim
        self.sr = sr
        self.restore = restore
        self.force = force
        self.refs: dict[str, str] = {}          # Ref:n -> new ref
        self.vdi_sizes: dict[str, int] = {}     # Ref:n -> virtual size
        self.created: list[tuple[str, str]] = []
        self.vms: list[str] = []
        self.skipped: list[str] = []            # uuids of VMs left alone (running, force)

    def load(self, ova_xml: bytes) -> None:
        doc = ova_xml.decode("utf-8")
        if doc.startswith("<?xml"):
            doc = doc[doc.index("?>") + 2:]
        try:
            root = xmlrpc.parse_value(doc.strip())
            version, objects = root["version"], root["objects"]
        except Exception as e:
            raise XapiError("IMPORT_ERROR", "cannot parse ova.xml: %s" % e) from None
        # importexport.ml assert_compatible: an export made by a newer xapi build is refused,
        # force or not; the API version and product version play no part.
        if (int(version.get("xapi_major", 0)), int(version.get("xapi_minor", 0))) > self.sim.product.xapi_build:
            raise XapiError("IMPORT_INCOMPATIBLE_VERSION")
        by_class: dict[str, list[dict]] = {}
        for obj in objects:
            by_class.setdefault(obj["class"], []).append(obj)
        srs = {o["id"]: o["snapshot"] for o in by_class.get("SR", [])}
        disks = [o for o in by_class.get("VDI", []) if srs.get(o["snapshot"].get("SR"), {}).get("content_type") != "iso"]
        needed = sum(int(o["snapshot"].get("virtual_size", 0)) for o in disks)
        free = inv.sr_free(self.sim, self.sr)
        if needed > free:
            raise XapiError("SR_FULL", needed, max(free, 0))
        for obj in disks:
            self._vdi(obj)
        for obj in by_class.get("network", []):
            self._network(obj)
        guest = {o["id"]: o["snapshot"] for o in by_class.get("VM_guest_metrics", [])}
        for obj in by_class.get("VM", []):
            if not obj["snapshot"].get("is_control_domain"):
                self._vm(obj, guest.get(obj["snapshot"].get("guest_metrics")))
        for obj in by_class.get("VBD", []):
            self._vbd(obj)
        for obj in by_class.get("VIF", []):
            self._vif(obj)

    def _track(self, cls: str, ref: str) -> str:
        self.created.append((cls, ref))
        return ref

    def _vdi(self, obj: dict) -> None:
        s = obj["snapshot"]
        size = int(s.get("virtual_size", 0))
        fields = {k: s[k] for k in ("name_description", "sharable", "read_only", "tags") if k in s}
        fields["other_config"] = dict(s.get("other_config", {}))
        vdi_type = s.get("type", "user")
        ref = inv.create_vdi(self.sim, self.sr, size, s.get("name_label", ""), type=vdi_type if vdi_type in (
            "user", "system", "suspend", "ephemeral") else "user", **fields)
        # VDIs always get fresh UUIDs, restore or not (import.ml).
        self.refs[obj["id"]] = self._track("VDI", ref)
        self.vdi_sizes[obj["id"]] = size

    def _network(self, obj: dict) -> None:
        """Match by name_label, then by bridge, else create (import.ml)."""
        db = self.sim.db
        s = obj["snapshot"]
        match = db.find("network", name_label=s.get("name_label", "")) or db.find("network", bridge=s.get("bridge", ""))
        if match:
            self.refs[obj["id"]] = match[0]
            return
        ref = db.create("network", name_label=s.get("name_label", ""), name_description=s.get("name_description", ""),
                        bridge=s.get("bridge", "") or "xapi%d" % len(db.all("network")), MTU=int(s.get("MTU", 1500)),
                        other_config=dict(s.get("other_config", {})))
        self.refs[obj["id"]] = self._track("network", ref)

    def _vm(self, obj: dict, guest: dict | None) -> None:
        sim, db = self.sim, self.sim.db
        s = obj["snapshot"]
        uuid = s.get("uuid")
        if self.restore and uuid:
            if not self._make_room_for(uuid, s):
                self.skipped.append(uuid)
                return
        else:
            uuid = None
        template = TEMPLATES["VM"]
        skip = {"uuid", "VBDs", "VIFs", "metrics", "guest_metrics", "snapshots", "children", "resident_on",
                "suspend_VDI", "affinity", "parent", "snapshot_of", "consoles", "crash_dumps", "VTPMs", "VGPUs",
                "attached_PCIs", "VUSBs", "current_operations", "allowed_operations", "domid",
                "scheduled_to_be_resident_on", "suspend_SR", "protection_policy", "snapshot_schedule", "appliance"}
        fields = {k: _typed(template[k], v) for k, v in s.items() if k in template and k not in skip}
        other = dict(fields.get("other_config", {}))
        if not self.restore or "mac_seed" not in other:
            other["mac_seed"] = str(sim.uuid4())
        other["import_task"] = "OpaqueRef:NULL"
        fields.update(other_config=other, power_state="Halted", is_control_domain=False)
        suspend_vdi = self.refs.get(s.get("suspend_VDI"))
        if s.get("power_state") == "Suspended" and suspend_vdi:
            # An export made with preserve_power_state brings its memory image (import.ml).
            fields.update(power_state="Suspended", suspend_VDI=suspend_vdi)
        metrics = self._track("VM_metrics", db.create("VM_metrics", memory_actual=fields.get("memory_target", 0)))
        guest_ref = NULL
        if guest:
            gt = TEMPLATES["VM_guest_metrics"]
            guest_ref = self._track("VM_guest_metrics", db.create(
                "VM_guest_metrics", **{k: _typed(gt[k], v) for k, v in guest.items() if k in gt}))
        record = new_record("VM", **fields)
        record.update(metrics=metrics, guest_metrics=guest_ref)
        if uuid:
            record["uuid"] = uuid
        ref = self._track("VM", db.add("VM", record))
        inv.refresh_allowed_operations(sim, ref)
        self.refs[obj["id"]] = ref
        self.vms.append(ref)

    def _make_room_for(self, uuid: str, s: dict) -> bool:
        """xapi's same-UUID rules for restore=true (import.ml assert_can_restore_backup and
        VMHandler.precheck): False when the VM is to be skipped. A VM with the same UUID that
        is not halted fails the import with VM_BAD_POWER_STATE [vm, "Halted", actual] (power
        states capitalised: Record_util.vm_power_state_to_string), or with force is skipped:
        it keeps running, no VM is created, and the disks already imported stay behind
        unattached (the VDI handler ran before the VM handler)."""
        db = self.sim.db
        existing = db.by_uuid["VM"].get(uuid)
        mac_seed = s.get("other_config", {}).get("mac_seed")
        if mac_seed:
            for ref, rec in db.all("VM").items():
                if ref != existing and rec["other_config"].get("mac_seed") == mac_seed and not rec["is_a_snapshot"]:
                    raise XapiError("DUPLICATE_MAC_SEED", mac_seed)
        if existing is None:
            return True
        rec = db.get("VM", existing)
        if rec["power_state"] != "Halted":
            if not self.force:
                raise XapiError("VM_BAD_POWER_STATE", existing, "Halted", rec["power_state"])
            return False
        imported_version = int(s.get("version", 0) or 0)
        if not self.force and imported_version <= rec["version"]:
            raise XapiError("VM_TO_IMPORT_IS_NOT_NEWER_VERSION", existing, rec["version"], imported_version)
        inv.destroy_vm(self.sim, existing)
        return True

    def _vbd(self, obj: dict) -> None:
        s = obj["snapshot"]
        vm = self.refs.get(s.get("VM"))
        if vm is None:
            return
        vdi = self.refs.get(s.get("VDI"), NULL)
        if s.get("type") == "CD" and vdi == NULL:
            return  # CDs are ejected unless their ISO is found (import.ml)
        ref = inv.create_vbd(self.sim, vm, vdi, str(s.get("userdevice", "0")), bootable=bool(s.get("bootable")),
                             mode=s.get("mode", "RW"), type=s.get("type", "Disk"),
                             other_config=dict(s.get("other_config", {})))
        self._keep_uuid("VBD", ref, s)
        self._track("VBD", ref)

    def _vif(self, obj: dict) -> None:
        s = obj["snapshot"]
        vm = self.refs.get(s.get("VM"))
        network = self.refs.get(s.get("network"))
        if vm is None or network is None:
            return
        mac = s.get("MAC", "") if self.restore else ""  # without restore MACs are regenerated
        ref = inv.create_vif(self.sim, vm, network, str(s.get("device", "0")), mac, MTU=int(s.get("MTU", 1500)),
                             other_config=dict(s.get("other_config", {})))
        self._keep_uuid("VIF", ref, s)
        self._track("VIF", ref)

    def _keep_uuid(self, cls: str, ref: str, s: dict) -> None:
        db = self.sim.db
        uuid = s.get("uuid")
        if self.restore and uuid and uuid not in db.by_uuid[cls]:
            rec = db.get(cls, ref)
            del db.by_uuid[cls][rec["uuid"]]
            rec["uuid"] = uuid
            db.by_uuid[cls][uuid] = ref
            db.touch(cls, ref)

    def vdi_uuid(self, export_id: str) -> str | None:
        ref = self.refs.get(export_id)
        return self.sim.db.get("VDI", ref)["uuid"] if ref else None

    def finish(self, task: str) -> None:
        for vm in self.vms:
            rec = self.sim.db.get("VM", vm)
            rec["other_config"]["import_task"] = task
            self.sim.db.touch("VM", vm)
        for _, ref in self.created:
            if self.sim.db.exists("VDI", ref):
                inv.refresh_vdi(self.sim, ref)
        inv.refresh_sr(self.sim, self.sr)

    def undo(self) -> None:
        """Remove everything this import created (a failed import leaves nothing behind)."""
        db = self.sim.db
        for cls, ref in reversed(self.created):
            if not db.exists(cls, ref):
                continue
            if cls == "VM":
                inv.destroy_vm(self.sim, ref)
            elif cls == "VDI":
                inv.destroy_vdi(self.sim, ref)
            elif cls == "VBD":
                inv.destroy_vbd(self.sim, ref)
            elif cls == "VIF":
                inv.destroy_vif(self.sim, ref)
            else:
                db.delete(cls, ref)


def _typed(template_value, value):
    """ova.xml carries ints as strings; records keep ints as ints."""
    if isinstance(template_value, bool):
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true")
    if isinstance(template_value, int):
        try:
            return int(value)
        except (TypeError, ValueError):
            return template_value
    if isinstance(template_value, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            return template_value
    if isinstance(template_value, Timestamp):
        return Timestamp(str(value))
    return value
