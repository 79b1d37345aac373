"""HTTP transfers and tasks through PoolConnection against the simulator."""
import hashlib

import pytest

from xenpools.connection import PoolConnection, PoolTaskFailed

from .xenapi_helpers import guest_vms


def local_sr_of_member(x):
    """The uuid of a local SR that only the second host sees."""
    master = x.pool.get_master(x.pool.get_all()[0])
    pbds = x.PBD.get_all_records()
    for sr in x.SR.get_all_records().values():
        hosts = {pbds[p]["host"] for p in sr["PBDs"]}
        if not sr["shared"] and sr["content_type"] != "iso" and hosts and master not in hosts:
            return sr["uuid"]
    raise AssertionError("the simulated pool has no local SR on a member")


def test_a_raw_disk_export_streams_the_whole_disk(sim, make_pool):
    pool = make_pool(sim, sync=False)
    with PoolConnection.open(pool) as connection:
        x = connection.xenapi
        vm = next(iter(guest_vms(x).values()))
        vdi_ref = next(x.VBD.get_VDI(v) for v in vm["VBDs"] if x.VBD.get_type(v) == "Disk")
        size = int(x.VDI.get_virtual_size(vdi_ref))
        task = x.task.create("export for test", "")

        response = connection.open_transfer("GET", "/export_raw_vdi", {"vdi": vdi_ref, "format": "raw", "task_id": task})
        data = response.read()
        response.close()

        assert len(data) == size
        assert response.getheader("task-id") == task
        connection.wait_task(task, timeout=60)


def test_a_put_is_redirected_with_its_body_to_the_host_that_sees_the_disk(sim, make_pool):
    pool = make_pool(sim)
    with PoolConnection.open(pool) as connection:
        x = connection.xenapi
        vm = sim.control.create_vm("on a member", [4 << 20], sr=local_sr_of_member(x))
        vdi_ref = x.VDI.get_by_uuid(vm["vdis"][0])
        size = int(x.VDI.get_virtual_size(vdi_ref))
        content = (b"sesamweb" * (size // 8 + 1))[:size]
        task = x.task.create("import for test", "")

        response = connection.open_transfer("PUT", "/import_raw_vdi", {"vdi": vdi_ref, "format": "raw", "task_id": task},
                                            body=iter([content[:size // 2], content[size // 2:]]), content_length=size)
        response.read()
        response.close()
        connection.wait_task(task, timeout=60)
        assert response.transfer_host == "127.0.0.2"      # redirected by the master

        back = connection.open_transfer("GET", "/export_raw_vdi", {"vdi": vdi_ref, "format": "raw"})
        assert hashlib.sha256(back.read()).digest() == hashlib.sha256(content).digest()
        back.close()


def test_wait_task_returns_the_decoded_result_or_raises_the_error(sim, make_pool):
    pool = make_pool(sim, sync=False)
    with PoolConnection.open(pool) as connection:
        x = connection.xenapi
        vm_ref = next(ref for ref, vm in guest_vms(x).items() if vm["power_state"] == "Running")
        progress = []

        snapshot = connection.wait_task(x.Async.VM.snapshot(vm_ref, "from a task"), on_progress=progress.append, timeout=60)

        assert x.VM.get_is_a_snapshot(snapshot) is True and progress
        with pytest.raises(PoolTaskFailed) as failed:
            connection.wait_task(x.Async.VM.destroy(vm_ref), timeout=60)   # a running VM cannot be destroyed
        assert failed.value.error_info[0] == "VM_BAD_POWER_STATE"
