"""Inventory and catalogue rows for protection tests: pools and VMs as the inventory sync
writes them, restore points as a backup records them (the rules under test read only these)."""
from datetime import timedelta
from itertools import count

from backups.choices import BackupKind, BackupMethod, VerifyState
from backups.models import RestorePoint
from xenpools.choices import PowerState
from xenpools.models import VM, Pool

_serial = count(1)


def make_pool(name="lab"):
    return Pool.objects.create(name=name, address=f"{name}.example.test", uuid=f"pool-{name}")


def vm_row(pool, name, *, tags=(), power_state=PowerState.RUNNING, removed_at=None):
    """An unsaved VM row (bulk_create it, or save())."""
    serial = next(_serial)
    return VM(pool=pool, uuid=f"00000000-0000-4000-8000-{serial:012d}", ref=f"OpaqueRef:vm-{serial}", name=name,
              power_state=power_state, tags=list(tags), tags_index=VM.index_tags(list(tags)), removed_at=removed_at)


def make_vm(pool, name, **fields):
    vm = vm_row(pool, name, **fields)
    vm.save()
    return vm


def point_row(store, vm, taken_at, *, verify_state=VerifyState.UNVERIFIED, job=None):
    return RestorePoint(store=store, point_id=f"{vm.uuid}/{taken_at:%Y%m%dT%H%M%S}-{next(_serial)}", vm_uuid=vm.uuid,
                        vm_name=vm.name, pool_uuid=vm.pool.uuid, taken_at=taken_at, method=BackupMethod.NORMAL,
                        kind=BackupKind.FULL, verify_state=verify_state, job=job)


def make_point(store, vm, age, *, now, **fields):
    point = point_row(store, vm, now - age, **fields)
    point.save()
    return point


HOURS = timedelta(hours=1)
