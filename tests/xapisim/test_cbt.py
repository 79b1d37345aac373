"""Changed block tracking as xapi and sm keep it: log resets, data-destroyed bases, where CBT
cannot be enabled, and the dom0 VBD of every NBD connection (xapisim/cbt.py, xapisim/CBT.md)."""

import base64
import time

import pytest
import XenAPI

from backups.formats.nbd import connect_from_nbd_info
from tests.xapisim.test_transfers import Client

MiB = 1 << 20
UNRELATED = ["SR_BACKEND_FAILURE_460", "",
             "Failed to calculate changed blocks for given VDIs. [opterr=Source and target VDI are unrelated]", ""]


@pytest.fixture
def x(sim):
    return sim.session().xenapi


def disks_of(x, vm):
    return [x.VBD.get_VDI(vbd) for vbd in x.VM.get_VBDs(vm)
            if x.VBD.get_type(vbd) == "Disk" and x.VBD.get_VDI(vbd) != "OpaqueRef:NULL"]


def tracked_vm(x, name="test-vm-2"):
    vm = x.VM.get_by_name_label(name)[0]
    (vdi,) = disks_of(x, vm)
    x.VDI.enable_cbt(vdi)
    return vm, vdi


def snap_disk(x, vm, label):
    return disks_of(x, x.VM.snapshot(vm, label))[0]


def marked(bitmap_b64):
    bitmap = base64.b64decode(bitmap_b64)
    return [i for i in range(len(bitmap) * 8) if bitmap[i >> 3] & (0x80 >> (i & 7))]


def failure(call, *args):
    with pytest.raises(XenAPI.Failure) as err:
        call(*args)
    return err.value.details


def wait_until(predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.05)


# -- 1. log resets -------------------------------------------------------------------------
def test_disabling_and_enabling_cbt_again_makes_older_snapshots_unrelated(sim, x):
    """sm libs/sm/VDI.py configure_blocktracking (disable deletes the log, enable starts an
    unlinked one) and list_changed_blocks (walk of child pointers from vdi_from to vdi_to,
    else CBTChangedBlocksError "Source and target VDI are unrelated", code 460)."""
    vm, vdi = tracked_vm(x)
    older = snap_disk(x, vm, "before reset")
    x.VDI.disable_cbt(vdi)
    x.VDI.enable_cbt(vdi)
    written = sim.control.guest_write(4, vdi=x.VDI.get_uuid(vdi), seed=3)["blocks"]
    newer = snap_disk(x, vm, "after reset")

    assert failure(x.VDI.list_changed_blocks, older, newer) == UNRELATED
    assert failure(x.VDI.list_changed_blocks, newer, older) == UNRELATED
    # The new chain works from its first snapshot on.
    sim.control.guest_write(2, vdi=x.VDI.get_uuid(vdi), seed=4)
    assert marked(x.VDI.list_changed_blocks(newer, snap_disk(x, vm, "next")))
    assert written


def test_the_chain_only_runs_forward_and_never_from_a_disk_to_itself(x):
    """sm VDI.list_changed_blocks: the walk follows child pointers only ("unrelated" for
    reversed arguments) and refuses vdi_from == vdi_to ("Source and target VDI are same")."""
    vm, _vdi = tracked_vm(x)
    first, second = snap_disk(x, vm, "one"), snap_disk(x, vm, "two")
    assert marked(x.VDI.list_changed_blocks(first, second)) == []
    assert failure(x.VDI.list_changed_blocks, second, first) == UNRELATED
    assert failure(x.VDI.list_changed_blocks, first, first)[2].endswith("[opterr=Source and target VDI are same]")


def test_deleting_a_snapshot_in_the_middle_keeps_the_chain(sim, x):
    """sm VDI.delete (not data_only): the parent's child and the child's parent are linked,
    the bitmaps coalesced, so changes across the deleted snapshot still add up."""
    vm, vdi = tracked_vm(x)
    first = snap_disk(x, vm, "one")
    a = sim.control.guest_write(3, vdi=x.VDI.get_uuid(vdi), seed=1)["blocks"]
    middle = snap_disk(x, vm, "two")
    b = sim.control.guest_write(3, vdi=x.VDI.get_uuid(vdi), seed=2)["blocks"]
    last = snap_disk(x, vm, "three")
    x.VDI.destroy(middle)
    assert marked(x.VDI.list_changed_blocks(first, last)) == sorted(set(a) | set(b))


def test_a_log_lost_after_a_host_crash_turns_cbt_off_with_a_message(sim, x):
    """sm VDI._disable_cbt_on_error (an inconsistent log found by VDI.activate): the log is
    deleted, VDI.cbt_enabled set false, a VDI_CBT_METADATA_INCONSISTENT message created."""
    vm, vdi = tracked_vm(x)
    older = snap_disk(x, vm, "before crash")
    sim.control.lose_cbt_log(vdi=x.VDI.get_uuid(vdi))
    assert x.VDI.get_cbt_enabled(vdi) is False
    names = [m["name"] for m in x.message.get_all_records().values()]
    assert "VDI_CBT_METADATA_INCONSISTENT" in names
    x.VDI.enable_cbt(vdi)
    assert failure(x.VDI.list_changed_blocks, older, snap_disk(x, vm, "after crash")) == UNRELATED


def test_enable_cbt_on_an_enabled_disk_keeps_its_log(x):
    """xapi_vdi.ml change_cbt_status: nothing is done when cbt_enabled already has the value
    asked for, so the log keeps its links."""
    vm, vdi = tracked_vm(x)
    first = snap_disk(x, vm, "one")
    x.VDI.enable_cbt(vdi)
    assert marked(x.VDI.list_changed_blocks(first, snap_disk(x, vm, "two"))) == []


# -- 2. data-destroyed bases ---------------------------------------------------------------
def data_destroyed_base(x, vm):
    snapshot = x.VM.snapshot(vm, "base")
    base = disks_of(x, snapshot)[0]
    x.VM.destroy(snapshot)
    x.VDI.data_destroy(base)
    return base


def test_a_cbt_metadata_vdi_refuses_everything_that_needs_its_data(x):
    """xapi_vdi.ml check_operation_error, allowed_for_cbt_metadata_vdi: clone, copy,
    resize, snapshot and the CBT switches fail with VDI_INCOMPATIBLE_TYPE [vdi, "cbt_metadata"];
    destroy and list_changed_blocks are allowed."""
    vm, _vdi = tracked_vm(x)
    base = data_destroyed_base(x, vm)
    refused = ["VDI_INCOMPATIBLE_TYPE", base, "cbt_metadata"]
    sr = x.VDI.get_SR(base)
    assert failure(x.VDI.snapshot, base, {}) == refused
    assert failure(x.VDI.clone, base, {}) == refused
    assert failure(x.VDI.copy, base, sr) == refused
    assert failure(x.VDI.resize, base, str(128 * MiB)) == refused
    assert failure(x.VDI.enable_cbt, base) == refused
    assert failure(x.VDI.disable_cbt, base) == refused
    assert failure(x.VDI.get_nbd_info, base) == refused
    assert marked(x.VDI.list_changed_blocks(base, snap_disk(x, vm, "newer"))) == []
    x.VDI.destroy(base)


def test_data_destroy_waits_for_the_vbds_then_fails_with_vdi_in_use(x):
    """xapi_vdi.ml _data_destroy / wait_for_vbds_to_be_unplugged_and_destroyed: up to 4 s for
    every VBD of the VDI to go, then VDI_IN_USE [vdi, "data_destroy"] and the type put back."""
    vm, _vdi = tracked_vm(x)
    base = snap_disk(x, vm, "still a snapshot VM")        # the snapshot VM's VBD holds it
    assert failure(x.VDI.data_destroy, base) == ["VDI_IN_USE", base, "data_destroy"]
    assert x.VDI.get_type(base) == "user"


def test_a_vhd_delta_against_a_data_destroyed_base_fails_after_the_headers(sim, x):
    """xapi export_raw_vdi.ml localhost_handler: the 200 headers are sent, then
    Sm_fs_ops.with_block_attached_device attaches the base to dom0, which VBD.create refuses
    for a cbt_metadata VDI (xapi_vbd.ml create): empty body, the task fails."""
    client = Client(sim, sim.session())
    vm, _vdi = tracked_vm(client.x)
    base = data_destroyed_base(client.x, vm)
    newer = snap_disk(client.x, vm, "newer")
    reply, body = client.get("/export_raw_vdi", {"vdi": newer, "format": "vhd", "base": base})
    assert reply.status == 200 and body == b""
    task = reply.getheader("task-id")
    assert client.x.task.get_status(task) == "failure"
    assert client.x.task.get_error_info(task) == ["VDI_INCOMPATIBLE_TYPE", base, "cbt_metadata"]


# -- 3. where CBT cannot be enabled ---------------------------------------------------------
def test_without_the_licence_enable_cbt_is_refused(sim, x):
    """xapi_vdi.ml enable_cbt: Pool_features.assert_enabled ~f:CBT raises
    LICENCE_RESTRICTION [name_of_feature CBT]; disable_cbt has no licence check."""
    vm = x.VM.get_by_name_label("test-vm-3")[0]
    (vdi,) = disks_of(x, vm)
    assert x.pool.get_restrictions(x.pool.get_all()[0])["restrict_cbt"] == "false"
    sim.control.set_cbt_licence(allowed=False)
    assert failure(x.VDI.enable_cbt, vdi) == ["LICENCE_RESTRICTION", "CBT"]
    assert x.VDI.get_cbt_enabled(vdi) is False
    x.VDI.disable_cbt(vdi)
    sim.control.set_cbt_licence(allowed=True)
    x.VDI.enable_cbt(vdi)
    assert x.VDI.get_cbt_enabled(vdi) is True


@pytest.mark.parametrize("sr_type", ["iscsi", "hba", "zfs"])
def test_on_an_sr_type_without_cbt_enable_cbt_is_refused(sim, x, sr_type):
    """xapi_vdi.ml check_sm_feature_error: without the driver's VDI_CONFIG_CBT capability
    (upstream sm: only EXT, File, NFS, SMB, LVHD, LVHDoISCSI, LVHDoHBA have it)
    SR_OPERATION_NOT_SUPPORTED [sr]."""
    vm = x.VM.get_by_name_label("test-vm-3")[0]
    (vdi,) = disks_of(x, vm)
    sr = x.VDI.get_SR(vdi)
    sim.control.set_sr_type(sr=sr, type=sr_type)
    assert failure(x.VDI.enable_cbt, vdi) == ["SR_OPERATION_NOT_SUPPORTED", sr]


@pytest.mark.parametrize("sr_type", ["ext", "nfs", "lvm", "lvmoiscsi", "lvmohba", "smb", "file"])
def test_sr_types_whose_sm_driver_has_cbt_accept_it(sim, x, sr_type):
    """sm libs/sm/drivers/{EXT,NFS,LVHD,LVHDoISCSI,LVHDoHBA,SMB,File}SR.py CAPABILITIES
    include VDI_CONFIG_CBT (LVMSR, LVMoISCSISR, LVMoHBASR are the LVHD drivers)."""
    vm = x.VM.get_by_name_label("test-vm-3")[0]
    (vdi,) = disks_of(x, vm)
    sim.control.set_sr_type(sr=x.VDI.get_SR(vdi), type=sr_type)
    x.VDI.enable_cbt(vdi)


def test_cbt_cannot_be_switched_on_a_snapshot(x):
    """xapi_vdi.ml check_operation_error, `enable_cbt | `disable_cbt: OPERATION_NOT_ALLOWED
    ["VDI is a snapshot: <ref>"]."""
    vm, _vdi = tracked_vm(x)
    snap = snap_disk(x, vm, "s")
    assert failure(x.VDI.enable_cbt, snap) == ["OPERATION_NOT_ALLOWED", f"VDI is a snapshot: {snap}"]
    assert failure(x.VDI.disable_cbt, snap) == ["OPERATION_NOT_ALLOWED", f"VDI is a snapshot: {snap}"]


# -- 5. NBD connections plug the VDI into dom0 ------------------------------------------------
def dom0_vbds(x, vdi):
    return [vbd for vbd in x.VDI.get_VBDs(vdi) if x.VM.get_is_control_domain(x.VBD.get_VM(vbd))]


def test_an_nbd_connection_holds_a_dom0_vbd_that_blocks_destroy(x):
    """xapi-nbd src/main.ml handle_connection -> Cleanup.VBD.with_vbd (VBD.create on the
    control domain, RO, plug; unplug and destroy at the end); xapi_vdi.ml
    destroy_and_data_destroy_common: VDI_IN_USE while a VBD is attached."""
    vm, _vdi = tracked_vm(x)
    snapshot = x.VM.snapshot(vm, "read over nbd")
    snap = disks_of(x, snapshot)[0]
    x.VM.destroy(snapshot)
    client = connect_from_nbd_info(x.VDI.get_nbd_info(snap), tls=False)
    try:
        client.read(0, 512)
        (vbd,) = dom0_vbds(x, snap)
        record = x.VBD.get_record(vbd)
        assert record["mode"] == "RO" and record["currently_attached"] is True
        assert failure(x.VDI.destroy, snap) == ["VDI_IN_USE", snap, "destroy"]
        assert failure(x.VDI.data_destroy, snap) == ["VDI_IN_USE", snap, "data_destroy"]
    finally:
        client.close()
    wait_until(lambda: not dom0_vbds(x, snap))
    x.VDI.data_destroy(snap)
    x.VDI.destroy(snap)
