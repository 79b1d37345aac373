"""Changed block tracking (CBT) as xapi and the storage manager (sm) keep it.

Where the rules come from (xapi-project/xen-api ``ocaml/xapi/xapi_vdi.ml``, xapi-project/sm
``libs/sm/VDI.py``); CBT.md beside this file lists them as facts for console authors.

- **Which SRs.** ``VDI.enable_cbt`` / ``disable_cbt`` / ``data_destroy`` /
  ``list_changed_blocks`` need the SR driver's ``VDI_CONFIG_CBT`` capability, else
  ``SR_OPERATION_NOT_SUPPORTED [sr]`` (``check_sm_feature_error``). Upstream sm lists it for
  EXT, File, NFS, SMB, LVHD (alias ``lvm``), LVHDoISCSI (``lvmoiscsi``) and LVHDoHBA
  (``lvmohba``) only (``CAPABILITIES`` in ``libs/sm/drivers/*SR.py``).
- **Licence.** ``enable_cbt`` checks ``Pool_features.assert_enabled ~f:CBT``: with
  ``pool.restrictions`` ``restrict_cbt`` not ``"false"`` (a missing key counts as restricted,
  ``Features.of_assoc_list``) it fails with ``LICENCE_RESTRICTION ["CBT"]``. ``disable_cbt``
  has no licence check.
- **Snapshots.** ``enable_cbt`` / ``disable_cbt`` on a snapshot: ``OPERATION_NOT_ALLOWED
  ["VDI is a snapshot: <ref>"]``; on a type other than user/system: ``VDI_INCOMPATIBLE_TYPE``.
- **The log.** sm keeps one ``<uuid>.cbtlog`` per VDI with parent and child pointers. Enabling
  creates a fresh log with neither; disabling deletes it and clears the parent's child pointer
  (``configure_blocktracking``). A snapshot renames the VDI's log to the snapshot and starts a
  new one for the VDI, linked snapshot.child = VDI, VDI.parent = snapshot, and the previous
  snapshot's child = the new snapshot (``_cbt_snapshot``). Deleting a VDI splices its
  neighbours together; ``data_destroy`` keeps the log (``delete(data_only=True)``).
- **list_changed_blocks(from, to)** walks child pointers from ``from`` until it reaches ``to``;
  a broken walk (CBT disabled and enabled again in between, the log lost after a host crash,
  arguments the wrong way round, either VDI without a log) fails with
  ``SR_BACKEND_FAILURE_460 ["", "Failed to calculate changed blocks for given VDIs. [opterr=Source
  and target VDI are unrelated]", ""]``; ``from == to`` with ``[opterr=Source and target VDI are
  same]``.
- **A lost log** (``_disable_cbt_on_error``, e.g. an inconsistent log found on attach after a
  host crash): sm deletes the log, sets ``cbt_enabled`` false and raises a
  ``VDI_CBT_METADATA_INCONSISTENT`` message.

The bitmap itself comes from the disk store's per-block versions (xapisim.disks), which is
what merging the logs along the walk gives.
"""

from .errors import XapiError
from .records import new_record
from .xmlrpc import Timestamp

# sm drivers whose CAPABILITIES include VDI_CONFIG_CBT, by SR.type (LVMSR, LVMoISCSISR and
# LVMoHBASR are the LVHD drivers under their legacy names).
CBT_SR_TYPES = frozenset({"ext", "file", "nfs", "smb", "lvm", "lvhd", "lvmoiscsi", "lvhdoiscsi",
                          "lvmohba", "lvhdohba"})
RESTRICT_CBT = "restrict_cbt"
CHANGED_BLOCKS_ERROR = "Failed to calculate changed blocks for given VDIs."
# xapi waits this long for a VDI's VBDs to disappear before data_destroy gives up
# (xapi_vdi.ml data_destroy = _data_destroy ~timeout:4).
DATA_DESTROY_VBD_WAIT = 4.0


def changed_blocks_error(reason: str) -> XapiError:
    """sm's CBTChangedBlocksError (code 460) as xapi reports it (sm_exec.ml)."""
    return XapiError("SR_BACKEND_FAILURE_460", "", "%s [opterr=%s]" % (CHANGED_BLOCKS_ERROR, reason), "")


# -- capability and licence ------------------------------------------------------------------
def assert_sr_supports_cbt(sim, sr: str) -> None:
    if sim.db.get("SR", sr)["type"] not in CBT_SR_TYPES:
        raise XapiError("SR_OPERATION_NOT_SUPPORTED", sr)


def licensed(sim) -> bool:
    restrictions = sim.db.get("pool", sim.pool_ref())["restrictions"]
    return restrictions.get(RESTRICT_CBT) == "false"


def set_licensed(sim, allowed: bool) -> None:
    pool = sim.pool_ref()
    restrictions = dict(sim.db.get("pool", pool)["restrictions"])
    restrictions[RESTRICT_CBT] = "false" if allowed else "true"
    sim.db.update("pool", pool, restrictions=restrictions)


def assert_cbt_configurable(sim, vdi: str) -> None:
    """xapi_vdi.ml check_operation_error for enable_cbt / disable_cbt, in xapi's order."""
    rec = sim.db.get("VDI", vdi)
    assert_sr_supports_cbt(sim, rec["SR"])
    if rec["type"] == "cbt_metadata":
        raise XapiError("VDI_INCOMPATIBLE_TYPE", vdi, "cbt_metadata")
    if rec["is_a_snapshot"]:
        raise XapiError("OPERATION_NOT_ALLOWED", "VDI is a snapshot: %s" % vdi)
    if rec["type"] not in ("user", "system"):
        raise XapiError("VDI_INCOMPATIBLE_TYPE", vdi, rec["type"])


# -- the log chain (sm VDI.py) ----------------------------------------------------------------
def _log(sim, uuid: str | None) -> dict | None:
    if uuid is None or not sim.disks.exists(uuid):
        return None
    return sim.disks.cbt_log(uuid)


def _point(sim, uuid: str | None, key: str, value: str | None) -> None:
    log = _log(sim, uuid)
    if log is not None:
        log[key] = value
        sim.disks.set_cbt_log(uuid, log)


def create_log(sim, uuid: str) -> None:
    sim.disks.set_cbt_log(uuid, {"parent": None, "child": None})


def delete_log(sim, uuid: str) -> None:
    """configure_blocktracking(enable=False): the parent no longer has a successor."""
    log = _log(sim, uuid)
    if log is None:
        return
    sim.disks.set_cbt_log(uuid, None)
    _point(sim, log["parent"], "child", None)


def on_snapshot(sim, vdi_uuid: str, snap_uuid: str) -> None:
    """_cbt_snapshot: the VDI's log becomes the snapshot's; the VDI starts a new one."""
    log = _log(sim, vdi_uuid)
    if log is None:
        return
    sim.disks.set_cbt_log(snap_uuid, {"parent": log["parent"], "child": vdi_uuid})
    _point(sim, log["parent"], "child", snap_uuid)
    sim.disks.set_cbt_log(vdi_uuid, {"parent": snap_uuid, "child": log["child"]})


def on_destroy(sim, uuid: str) -> None:
    """VDI.delete (not data_only): the neighbours are linked to each other."""
    log = _log(sim, uuid)
    if log is None:
        return
    _point(sim, log["parent"], "child", log["child"])
    _point(sim, log["child"], "parent", log["parent"])
    sim.disks.set_cbt_log(uuid, None)


def lose_log(sim, vdi: str) -> None:
    """_disable_cbt_on_error: the log is gone, CBT is off, and the pool says so in a message."""
    rec = sim.db.get("VDI", vdi)
    delete_log(sim, rec["uuid"])
    sim.db.update("VDI", vdi, cbt_enabled=False)
    message = new_record("message")           # its field "cls" clashes with create()'s argument
    message.update(name="VDI_CBT_METADATA_INCONSISTENT", priority=3, cls="VDI", obj_uuid=rec["uuid"],
                   timestamp=Timestamp.now(),
                   body="Changed Block Tracking metadata is inconsistent for disk %s." % rec["uuid"])
    sim.db.add("message", message)


def assert_related(sim, from_uuid: str, to_uuid: str) -> None:
    """list_changed_blocks' walk from ``from`` along child pointers to ``to``."""
    if from_uuid == to_uuid:
        raise changed_blocks_error("Source and target VDI are same")
    if _log(sim, from_uuid) is not None and _log(sim, to_uuid) is not None:
        current = from_uuid
        for _ in range(len(sim.db.all("VDI")) + 1):
            following = _log(sim, current)["child"]
            if _log(sim, following) is None:
                break
            current = following
            if current == to_uuid:
                return
    raise changed_blocks_error("Source and target VDI are unrelated")


def reconcile(sim) -> None:
    """A state saved before logs were kept: every CBT-enabled VDI gets a log without links
    (its next list_changed_blocks fails as after a reset), and the pool a CBT licence."""
    restrictions = sim.db.get("pool", sim.pool_ref())["restrictions"]
    if RESTRICT_CBT not in restrictions:
        set_licensed(sim, True)
    for rec in sim.db.all("VDI").values():
        if rec["cbt_enabled"] and sim.disks.exists(rec["uuid"]) and sim.disks.cbt_log(rec["uuid"]) is None:
            create_log(sim, rec["uuid"])
