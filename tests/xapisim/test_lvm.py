"""LVM-based (thick) SRs as xapi-project/sm's LVHDSR runs them (xapisim/lvhd.py)."""

import time

import pytest
import XenAPI

from xapisim import lvhd

MiB = 1 << 20


@pytest.fixture
def lvm(sim):
    sr = sim.control.create_sr(name="iSCSI LVM", type="lvmoiscsi", size=4096 * MiB)
    made = sim.control.create_vm("on-lvm", [64 * MiB], sr=sr["uuid"], power_state="Running")
    x = sim.session().xenapi
    vm = made["ref"]
    vdi = x.VDI.get_by_uuid(made["vdis"][0])
    return x, x.SR.get_by_uuid(sr["uuid"]), vm, vdi


def wait_for(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_a_thick_leaf_uses_its_full_size_and_a_snapshot_leaves_a_hidden_base_copy(sim, lvm):
    """LVHDVDI.create (thick): LV = lvhdutil.calcSizeVHDLV(size); LVHDVDI._snapshot: the old LV
    becomes a hidden read-only "base copy" (managed=false), both leaves get vhd-parent, the
    snapshot LV is thin."""
    x, sr, vm, vdi = lvm
    assert int(x.VDI.get_physical_utilisation(vdi)) == lvhd.full_lv(64 * MiB) == 72 * MiB
    sim.control.guest_write(blocks=40, vdi=x.VDI.get_uuid(vdi), seed=3)
    snap_vm = x.VM.snapshot(vm, "s1")
    (snap_vbd,) = x.VM.get_VBDs(snap_vm)
    snap = x.VBD.get_VDI(snap_vbd)
    bases = [r for r in x.VDI.get_all_records().values() if not r["managed"]]
    assert len(bases) == 1
    base = bases[0]
    assert base["name_label"] == "base copy" and base["read_only"] and base["SR"] == sr
    assert x.VDI.get_sm_config(vdi)["vhd-parent"] == base["uuid"] == x.VDI.get_sm_config(snap)["vhd-parent"]
    assert int(x.VDI.get_physical_utilisation(vdi)) == lvhd.full_lv(64 * MiB)
    assert int(x.VDI.get_physical_utilisation(snap)) == lvhd.THIN_LV == 8 * MiB
    assert 4 * MiB < int(base["physical_utilisation"]) <= lvhd.full_lv(64 * MiB)
    assert base["uuid"] in [x.VDI.get_uuid(v) for v in x.SR.get_VDIs(sr)]


def test_a_snapshot_needs_room_for_the_data_written_since_the_last_one(sim, lvm):
    """LVHDVDI._snapshot: size_req = deflated base + thin snapshot + 2 journals; short of it
    _ensureSpaceAvailable raises SRNoSpace (SR_BACKEND_FAILURE_44); a fully written disk
    needs about its full size."""
    x, sr, vm, vdi = lvm
    sim.control.fill_sr(sr=x.SR.get_uuid(sr), free_bytes=80 * MiB)
    x.VM.snapshot(vm, "nearly empty disk: fits")
    sim.control.guest_write(blocks=1024, vdi=x.VDI.get_uuid(vdi), seed=4)     # every block
    sim.control.fill_sr(sr=x.SR.get_uuid(sr), free_bytes=80 * MiB)
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.snapshot(vm, "full disk: does not fit")
    assert err.value.details == ["SR_BACKEND_FAILURE_44", "", "There is insufficient space", ""]
    assert len(x.VM.get_snapshots(vm)) == 1


def test_a_chain_30_deep_refuses_snapshots_until_the_sr_has_coalesced(sim, lvm):
    """LVHDVDI._snapshot: vhdutil.getDepth >= MAX_CHAIN_SIZE (30) raises SnapshotChainTooLong,
    SR_BACKEND_FAILURE_109; deleting snapshots kicks the GC (_kickGC), and the chain is shorter
    only once it has coalesced."""
    x, sr, vm, vdi = lvm
    snaps = [x.VDI.snapshot(vdi, {}) for _ in range(29)]
    with pytest.raises(XenAPI.Failure) as err:
        x.VDI.snapshot(vdi, {})
    assert err.value.details == ["SR_BACKEND_FAILURE_109", "", "The snapshot chain is too long", ""]
    sim.control.call("set_timing", coalesce=60)
    for snap in snaps:
        x.VDI.destroy(snap)
    with pytest.raises(XenAPI.Failure) as err:             # not coalesced yet
        x.VDI.snapshot(vdi, {})
    assert err.value.details[0] == "SR_BACKEND_FAILURE_109"
    sim.control.call("set_timing", coalesce=0.05)
    x.SR.scan(sr)                                          # kicks the GC again
    wait_for(lambda: all(r["managed"] for r in x.VDI.get_all_records().values() if r["SR"] == sr))
    assert "vhd-parent" not in x.VDI.get_sm_config(vdi)
    x.VDI.snapshot(vdi, {})


def test_base_copies_refuse_destroy_and_snapshot(lvm):
    """Xapi_vdi_helpers.assert_managed (destroy_and_data_destroy_common, snapshot_and_clone):
    VDI_NOT_MANAGED [vdi]."""
    x, sr, vm, vdi = lvm
    x.VDI.snapshot(vdi, {})
    (base,) = [ref for ref, r in x.VDI.get_all_records().items() if not r["managed"]]
    for call in (lambda: x.VDI.destroy(base), lambda: x.VDI.snapshot(base, {})):
        with pytest.raises(XenAPI.Failure) as err:
            call()
        assert err.value.details == ["VDI_NOT_MANAGED", base]
