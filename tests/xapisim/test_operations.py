"""VM and VDI operations through the real XenAPI client."""

import base64
import time
import urllib.request

import pytest
import XenAPI

MiB = 1 << 20


@pytest.fixture
def x(sim):
    return sim.session().xenapi


def vm_named(x, name):
    return x.VM.get_by_name_label(name)[0]


def disks_of(x, vm):
    vdis = []
    for vbd in x.VM.get_VBDs(vm):
        rec = x.VBD.get_record(vbd)
        if rec["type"] == "Disk" and rec["VDI"] != "OpaqueRef:NULL":
            vdis.append(rec["VDI"])
    return vdis


def wait_task(x, task, timeout=30):
    deadline = time.monotonic() + timeout
    while x.task.get_status(task) == "pending":
        assert time.monotonic() < deadline, "task still pending"
        time.sleep(0.05)
    return x.task.get_record(task)


def test_a_snapshot_is_a_cow_copy_of_the_disks(x, sim):
    vm = vm_named(x, "test-vm-1")
    snap = x.VM.snapshot(vm, "before backup")
    rec = x.VM.get_record(snap)
    assert rec["is_a_snapshot"] and rec["snapshot_of"] == vm
    assert "revert" in rec["allowed_operations"] and "start" not in rec["allowed_operations"]
    assert "checkpoint" in x.VM.get_allowed_operations(vm)
    assert rec["snapshot_info"]["power-state-at-snapshot"] == "Running"
    assert snap in x.VM.get_snapshots(vm)
    (vdi,), (snap_vdi,) = disks_of(x, vm), disks_of(x, snap)
    snap_rec = x.VDI.get_record(snap_vdi)
    assert snap_rec["is_a_snapshot"] and snap_rec["snapshot_of"] == vdi
    assert snap_rec["virtual_size"] == x.VDI.get_virtual_size(vdi)
    assert x.VM.get_power_state(vm) == "Running"


def test_a_snapshot_can_leave_out_disks(sim, x):
    made = sim.control.create_vm("two-disks", [8 * MiB, 8 * MiB])
    vm = made["ref"]
    first, second = disks_of(x, vm)
    snap = x.VM.snapshot(vm, "partial", [second])
    assert [x.VDI.get_snapshot_of(v) for v in disks_of(x, snap)] == [first]


def test_a_checkpoint_keeps_memory_and_the_vm_running(x):
    vm = vm_named(x, "test-vm-1")
    cp = x.VM.checkpoint(vm, "live")
    rec = x.VM.get_record(cp)
    assert rec["power_state"] == "Suspended" and rec["is_a_snapshot"]
    image = x.VDI.get_record(rec["suspend_VDI"])
    assert image["type"] == "suspend" and int(image["physical_utilisation"]) > 0
    assert x.VM.get_power_state(vm) == "Running"


def test_a_checkpoint_needs_a_vm_that_is_not_halted(x):
    """xapi_vm_lifecycle.ml allowed_power_states `checkpoint: Paused, Suspended, Running;
    report_power_state_error joins them with ", "."""
    vm = vm_named(x, "test-vm-2")
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.checkpoint(vm, "cp")
    assert err.value.details == ["VM_BAD_POWER_STATE", vm, "paused, suspended, running", "halted"]


def test_quiesced_snapshots_are_removed_from_8_1_on(x):
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.snapshot_with_quiesce(vm_named(x, "test-vm-1"), "q")
    assert err.value.details == ["MESSAGE_REMOVED"]


def test_quiesced_snapshots_work_for_windows_on_7_x(sim):
    sim.control.set_product_version("7.1.2")
    x = sim.session().xenapi
    assert x.host.get_API_version_minor(x.host.get_all()[0]) == "6"
    windows = vm_named(x, "test-vm-2")
    x.VM.start(windows, False, False)
    snap = x.VM.snapshot_with_quiesce(windows, "vss")
    assert x.VM.get_is_a_snapshot(snap)
    linux = vm_named(x, "test-vm-1")
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.snapshot_with_quiesce(linux, "q")
    assert err.value.details[:2] == ["VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED", linux]


def test_power_operations_follow_the_state_machine(x):
    vm = vm_named(x, "test-vm-2")
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.clean_shutdown(vm)
    assert err.value.details == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert "start" in x.VM.get_allowed_operations(vm)
    x.VM.start(vm, False, False)
    assert x.VM.get_power_state(vm) == "Running"
    assert "clean_shutdown" in x.VM.get_allowed_operations(vm)
    assert x.VM.get_resident_on(vm) != "OpaqueRef:NULL"
    assert all(x.VBD.get_currently_attached(v) for v in x.VM.get_VBDs(vm))
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.start(vm, False, False)
    assert err.value.details == ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    x.VM.suspend(vm)
    assert x.VM.get_power_state(vm) == "Suspended"
    x.VM.resume(vm, False, False)
    x.VM.hard_shutdown(vm)
    assert x.VM.get_power_state(vm) == "Halted"
    hosts = x.host.get_all()
    member = [h for h in hosts if h != x.pool.get_master(x.pool.get_all()[0])][0]
    x.VM.start_on(vm, member, False, False)
    assert x.VM.get_resident_on(vm) == member
    x.VM.clean_shutdown(vm)
    assert x.VM.get_resident_on(vm) == "OpaqueRef:NULL"


def test_destroy_needs_a_halted_vm_and_keeps_its_disks(x):
    running = vm_named(x, "test-vm-1")
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.destroy(running)
    assert err.value.details == ["VM_BAD_POWER_STATE", running, "halted, suspended", "running"]
    vm = vm_named(x, "test-vm-2")
    vdis = disks_of(x, vm)
    x.VM.destroy(vm)
    with pytest.raises(XenAPI.Failure):
        x.VM.get_record(vm)
    assert [x.VDI.get_VBDs(v) for v in vdis] == [[]]


def test_templates_cannot_start(x):
    """xapi_vm_lifecycle.ml check_template: VM_IS_TEMPLATE [ref, operation]."""
    template = [r for r, v in x.VM.get_all_records().items() if v["is_a_template"] and not v["is_a_snapshot"]][0]
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.start(template, False, False)
    assert err.value.details == ["VM_IS_TEMPLATE", template, "start"]


def test_clone_and_copy_make_new_vms_with_new_macs(x):
    vm = vm_named(x, "test-vm-2")
    mac = x.VIF.get_MAC(x.VM.get_VIFs(vm)[0])
    clone = x.VM.clone(vm, "clone")
    copy = x.VM.copy(vm, "copy", "OpaqueRef:NULL")
    for new in (clone, copy):
        rec = x.VM.get_record(new)
        assert rec["power_state"] == "Halted" and not rec["is_a_snapshot"]
        assert x.VIF.get_MAC(rec["VIFs"][0]) != mac
        assert disks_of(x, new) and set(disks_of(x, new)).isdisjoint(disks_of(x, vm))
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.clone(vm_named(x, "test-vm-1"), "running clone")
    assert err.value.details[0] == "VM_BAD_POWER_STATE"


def raw_disk(sim, vdi):
    session = sim.session()
    url = f"{sim.url}/export_raw_vdi?session_id={session.handle}&vdi={vdi}"
    with urllib.request.urlopen(url) as reply:
        return reply.read()


def test_revert_brings_back_the_snapshot_disks(sim, x):
    vm = vm_named(x, "test-vm-2")
    (vdi,) = disks_of(x, vm)
    at_snapshot = raw_disk(sim, vdi)
    snap = x.VM.snapshot(vm, "s")
    sim.control.guest_write(4, vm="test-vm-2")
    assert raw_disk(sim, vdi) != at_snapshot  # the write changed the disk: reverting has work to do
    x.VM.revert(snap)
    (reverted,) = disks_of(x, vm)
    assert raw_disk(sim, reverted) == at_snapshot
    assert x.VM.get_power_state(vm) == "Halted"


def test_vdi_destroy_refuses_a_disk_of_a_running_vm(x):
    (vdi,) = disks_of(x, vm_named(x, "test-vm-1"))
    with pytest.raises(XenAPI.Failure) as err:
        x.VDI.destroy(vdi)
    assert err.value.details == ["VDI_IN_USE", vdi, "destroy"]


def test_vdi_snapshot_clone_resize_and_destroy(x):
    (vdi,) = disks_of(x, vm_named(x, "test-vm-2"))
    snap = x.VDI.snapshot(vdi, {})
    clone = x.VDI.clone(vdi, {})
    assert x.VDI.get_snapshot_of(snap) == vdi and not x.VDI.get_is_a_snapshot(clone)
    x.VDI.resize(clone, str(64 * MiB))
    assert x.VDI.get_virtual_size(clone) == str(64 * MiB)
    sr = x.VDI.get_SR(clone)
    x.VDI.destroy(clone)
    assert clone not in x.SR.get_VDIs(sr)


def test_changed_blocks_mark_exactly_the_guest_writes(sim, x):
    vm = vm_named(x, "test-vm-2")
    (vdi,) = disks_of(x, vm)
    x.VDI.enable_cbt(vdi)
    base = disks_of(x, x.VM.snapshot(vm, "base"))[0]
    assert x.VDI.get_cbt_enabled(base)
    written = sim.control.guest_write(5, vdi=x.VDI.get_uuid(vdi), seed=7)["blocks"]
    newer = disks_of(x, x.VM.snapshot(vm, "newer"))[0]
    bitmap = base64.b64decode(x.VDI.list_changed_blocks(base, newer))
    size = int(x.VDI.get_virtual_size(vdi))
    assert len(bitmap) == -(-(-(-size // 65536)) // 8)
    marked = [i for i in range(len(bitmap) * 8) if bitmap[i >> 3] & (0x80 >> (i & 7))]
    assert marked == sorted(written)


UNRELATED = ["SR_BACKEND_FAILURE_460", "",
             "Failed to calculate changed blocks for given VDIs. [opterr=Source and target VDI are unrelated]", ""]


def test_changed_blocks_need_cbt_and_a_detached_target(x):
    """xapi_vdi.ml check_operation_error (VDI_IN_USE for an attached vdi_to); without CBT logs
    sm's VDI.list_changed_blocks finds the VDIs unrelated (CBTChangedBlocksError, 460)."""
    running = vm_named(x, "test-vm-1")
    (vdi,) = disks_of(x, running)
    snap = disks_of(x, x.VM.snapshot(running, "s"))[0]
    with pytest.raises(XenAPI.Failure) as err:
        x.VDI.list_changed_blocks(snap, vdi)
    assert err.value.details == ["VDI_IN_USE", vdi, "list_changed_blocks"]
    other = disks_of(x, x.VM.snapshot(running, "t"))[0]
    with pytest.raises(XenAPI.Failure) as err:
        x.VDI.list_changed_blocks(snap, other)
    assert err.value.details == UNRELATED


def test_data_destroy_keeps_cbt_metadata(sim, x):
    vm = vm_named(x, "test-vm-2")
    (vdi,) = disks_of(x, vm)
    with pytest.raises(XenAPI.Failure) as err:
        x.VDI.data_destroy(vdi)
    assert err.value.details[0] == "OPERATION_NOT_ALLOWED"
    plain = disks_of(x, x.VM.snapshot(vm, "no cbt"))[0]
    with pytest.raises(XenAPI.Failure) as err:
        x.VDI.data_destroy(plain)
    assert err.value.details == ["VDI_NO_CBT_METADATA", plain]
    x.VDI.enable_cbt(vdi)
    snapshot = x.VM.snapshot(vm, "base")
    base = disks_of(x, snapshot)[0]
    x.VM.destroy(snapshot)      # its VBD would block data_destroy (VDI_IN_USE): tests/xapisim/test_cbt.py
    x.VDI.data_destroy(base)
    x.VDI.data_destroy(base)  # idempotent
    assert x.VDI.get_type(base) == "cbt_metadata"
    written = sim.control.guest_write(3, vdi=x.VDI.get_uuid(vdi))["blocks"]
    newer = disks_of(x, x.VM.snapshot(vm, "newer"))[0]
    bitmap = base64.b64decode(x.VDI.list_changed_blocks(base, newer))
    assert [i for i in range(len(bitmap) * 8) if bitmap[i >> 3] & (0x80 >> (i & 7))] == sorted(written)
    with pytest.raises(XenAPI.Failure) as err:
        x.VDI.get_nbd_info(base)
    assert err.value.details == ["VDI_INCOMPATIBLE_TYPE", base, "cbt_metadata"]


def test_a_full_sr_fails_snapshots_like_lvm(sim, x):
    vm = vm_named(x, "test-vm-1")
    sr = x.VDI.get_SR(disks_of(x, vm)[0])
    sim.control.fill_sr(x.SR.get_uuid(sr), 0)
    assert int(x.SR.get_physical_utilisation(sr)) == int(x.SR.get_physical_size(sr))
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.snapshot(vm, "no room")
    assert err.value.details == ["SR_BACKEND_FAILURE_44", "", "There is insufficient space", ""]
    sim.control.call("clear_faults")
    assert x.VM.snapshot(vm, "room again")


def test_restore_building_blocks_create_vm_vdi_vbd_vif(x):
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    net = x.network.get_all()[0]
    vdi = x.VDI.create({"name_label": "restored disk", "SR": sr, "virtual_size": str(16 * MiB), "type": "user",
                        "sharable": False, "read_only": False, "other_config": {}})
    vm = x.VM.create({"name_label": "restored", "memory_static_max": str(256 * MiB), "VCPUs_max": "2",
                      "VCPUs_at_startup": "2", "other_config": {}})
    x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW", "type": "Disk",
                  "empty": False, "other_config": {}})
    x.VIF.create({"VM": vm, "network": net, "device": "0", "MAC": "02:00:00:00:00:01", "MTU": "1500",
                  "other_config": {}})
    x.VM.start(vm, False, False)
    assert x.VM.get_power_state(vm) == "Running"
    assert x.VIF.get_MAC(x.VM.get_VIFs(vm)[0]) == "02:00:00:00:00:01"
    assert disks_of(x, vm) == [vdi]


def test_async_calls_return_tasks_with_xmlrpc_results(x):
    vm = vm_named(x, "test-vm-1")
    task = x.Async.VM.snapshot(vm, "async")
    rec = wait_task(x, task)
    assert rec["status"] == "success" and rec["progress"] == 1.0
    assert rec["result"].startswith("<value>OpaqueRef:") and rec["result"].endswith("</value>")
    assert rec["allowed_operations"] == []
    failing = x.Async.VM.start(vm, False, False)
    rec = wait_task(x, failing)
    assert rec["status"] == "failure"
    assert rec["error_info"] == ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    x.task.destroy(task)


def test_clients_can_create_and_cancel_tasks(x):
    """xapi_task.ml cancel only marks the task (`cancel in current_operations); nothing runs a
    task made with task.create, so it stays pending."""
    task = x.task.create("backup", "a console task")
    assert x.task.get_status(task) == "pending"
    x.task.cancel(task)
    assert x.task.get_status(task) == "pending"
    assert list(x.task.get_current_operations(task).values()) == ["cancel"]
