"""Operations that take time, task cancellation, and xapi's VM operation checks."""

import time

import pytest
import XenAPI

from .test_operations import vm_named


def wait_for(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_a_slow_snapshot_shows_as_an_operation_in_progress_until_it_is_done(sim_factory):
    """Xapi_vm_helpers.with_vm_operation lists the snapshot in the VM's current_operations;
    xapi_vm_lifecycle.ml is_allowed_concurrently refuses a clean shutdown meanwhile
    (OTHER_OPERATION_IN_PROGRESS [VM, ref, op, task])."""
    sim = sim_factory("--test-vms", "2", "--timing", "snapshot=2")
    x = sim.session().xenapi
    vm = vm_named(x, "test-vm-1")
    task = x.Async.VM.snapshot(vm, "slow")
    wait_for(lambda: task in x.VM.get_current_operations(vm))
    assert x.VM.get_current_operations(vm)[task] == "snapshot"
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.clean_shutdown(vm)
    assert err.value.details == ["OTHER_OPERATION_IN_PROGRESS", "VM", vm, "snapshot", task]
    wait_for(lambda: x.task.get_status(task) != "pending")
    assert x.task.get_status(task) == "success"
    assert x.VM.get_current_operations(vm) == {}


def test_cancel_marks_the_task_and_the_operation_fails_when_it_notices(sim_factory):
    """xapi_task.ml cancel sets `cancel in the task's current_operations; the operation
    notices (TaskHelper.exn_if_cancelling) and fails with TASK_CANCELLED [task], status
    cancelled (TaskHelper.failed); the VM stays as it was."""
    sim = sim_factory("--test-vms", "2", "--timing", "shutdown=60")
    x = sim.session().xenapi
    vm = vm_named(x, "test-vm-1")
    task = x.Async.VM.clean_shutdown(vm)
    wait_for(lambda: task in x.VM.get_current_operations(vm))
    x.task.cancel(task)
    wait_for(lambda: x.task.get_status(task) != "pending")
    record = x.task.get_record(task)
    assert record["status"] == "cancelled"
    assert record["error_info"] == ["TASK_CANCELLED", task]
    assert x.VM.get_power_state(vm) == "Running"


def test_cancelling_a_finished_task_is_not_refused(sim_factory):
    """TaskHelper.cancel_this only logs when the task is no longer pending."""
    sim = sim_factory("--test-vms", "2")
    x = sim.session().xenapi
    task = x.Async.VM.snapshot(vm_named(x, "test-vm-1"), "quick")
    wait_for(lambda: x.task.get_status(task) != "pending")
    x.task.cancel(task)
    assert x.task.get_status(task) == "success"


def test_timings_can_be_changed_on_a_running_pool(sim):
    assert sim.control.call("set_timing", checkpoint=0.5)["checkpoint"] == 0.5
    with pytest.raises(Exception) as err:
        sim.control.call("set_timing", reboot=1)
    assert "unknown timing" in str(err.value)


def test_snapshots_refuse_what_only_vms_do_with_the_operation_named(sim):
    """xapi_vm_lifecycle.ml check_snapshot: VM_IS_SNAPSHOT [ref, operation]."""
    x = sim.session().xenapi
    snap = x.VM.snapshot(vm_named(x, "test-vm-2"), "s")
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.snapshot(snap, "snapshot of a snapshot")
    assert err.value.details == ["VM_IS_SNAPSHOT", snap, "snapshot"]
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.start(snap, False, False)
    assert err.value.details == ["VM_IS_SNAPSHOT", snap, "start"]


def test_a_paused_vm_is_checkpointed_without_memory(sim):
    """xapi_vm_snapshot.ml checkpoint suspends only a Running VM; xapi_vm_clone.ml gives a
    checkpoint of a paused VM the power state Halted and no suspend VDI."""
    x = sim.session().xenapi
    vm = vm_named(x, "test-vm-1")
    x.VM.pause(vm)
    checkpoint = x.VM.get_record(x.VM.checkpoint(vm, "paused"))
    assert checkpoint["is_a_snapshot"] and checkpoint["power_state"] == "Halted"
    assert checkpoint["suspend_VDI"] == "OpaqueRef:NULL"
    assert x.VM.get_power_state(vm) == "Paused"


def test_a_suspended_vm_is_checkpointed_with_a_copy_of_its_memory_image(sim):
    """xapi_vm_clone.ml: Disk_op_checkpoint of a Suspended VM stays Suspended and clones the
    suspend VDI."""
    x = sim.session().xenapi
    vm = vm_named(x, "test-vm-1")
    x.VM.suspend(vm)
    image = x.VM.get_suspend_VDI(vm)
    checkpoint = x.VM.get_record(x.VM.checkpoint(vm, "suspended"))
    assert checkpoint["power_state"] == "Suspended"
    assert checkpoint["suspend_VDI"] not in ("OpaqueRef:NULL", image)
    assert x.VDI.get_type(checkpoint["suspend_VDI"]) == "suspend"
    assert x.VM.get_power_state(vm) == "Suspended" and x.VM.get_suspend_VDI(vm) == image
