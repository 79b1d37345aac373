"""Restore test helpers: back up a VM with the engine, restore a point, read the result."""
import pytest

from backups.choices import RunStatus, Trigger
from backups.restore.plan import default_plan, request_restore, run_restore
from backups.services import request_backup, run_in_this_process
from xenpools.models import Pool


def back_up(vm, store, method, **options):
    run = run_in_this_process(request_backup(vm=vm, store=store, method=method, trigger=Trigger.CLI, **options))
    vm_backup = run.vm_backups.get()
    assert vm_backup.status in (RunStatus.SUCCESS, RunStatus.WARNING), vm_backup.error
    return vm_backup


def restore(plan, user=None):
    """Request the restore and run it here, as the CLI does."""
    run = request_restore(plan, user, trigger=Trigger.CLI, queue=False)
    run_restore(run.pk)
    run.refresh_from_db()
    return run


def vm_config(reader, vm_uuid):
    """What a restore must bring back: memory, vCPUs, disks by userdevice, VIFs by device."""
    xenapi = reader.xenapi
    ref = reader.vm(vm_uuid)
    record = xenapi.VM.get_record(ref)
    vifs = {}
    for vif in record["VIFs"]:
        vif_record = xenapi.VIF.get_record(vif)
        vifs[vif_record["device"]] = vif_record["MAC"]
    return {"memory": record["memory_static_max"], "vcpus": record["VCPUs_max"],
            "disks": sorted(reader.disks(vm_uuid)), "vifs": vifs, "power_state": record["power_state"]}


def restored_disks(reader, vm_uuid):
    return {dev: reader.raw(uuid) for dev, uuid in reader.disks(vm_uuid).items()}


@pytest.fixture
def plan_for():
    def make(vm_backup, pool=None, **changes):
        point = vm_backup.restore_point
        plan = default_plan(point, pool or Pool.objects.get(uuid=point.pool_uuid))
        for name, value in changes.items():
            setattr(plan, name, value)
        return plan
    return make


def vms_and_vdis(reader):
    """Every non-snapshot VM and every VDI uuid in the pool (to prove nothing was left)."""
    vms = {r["uuid"] for r in reader.xenapi.VM.get_all_records().values() if not r["is_a_snapshot"]}
    vdis = {r["uuid"] for r in reader.xenapi.VDI.get_all_records().values()}
    return vms, vdis


@pytest.fixture
def second_pool(sim_factory, transactional_db):
    """Another simulator instance, registered as another pool; yields (pool, reader)."""
    from tests.backups.conftest import PoolReader
    from xenpools.connection import PoolConnection
    from xenpools.registration import register_pool

    other = sim_factory("--test-vms", "1", "--seed", "2")
    probe = PoolConnection.probe(other.url, "root", other.password, fingerprint=None)
    pool = register_pool("lab-2", other.url, "root", other.password, probe, sync=True)
    reader = PoolReader(other)
    yield pool, reader, other
    reader.close()
