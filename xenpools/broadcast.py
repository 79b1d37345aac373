"""What the pools app tells open browsers (through sesamweb.live.publish) when the inventory
changes: one small event per changed VM on topic "vms", a pool summary on "pool:<id>" and
"pools". Pages apply these in place (static/js/xenpools.js)."""
from django.db.models import Count, Q
from sesamweb.units import size_text as filesizeformat

from sesamweb.live.publish import publish

from .choices import PoolHealth, PowerState
from .models import VM, Pool


def vm_event(vm: VM, host_names: dict) -> dict:
    return {
        "type": "vm",
        "id": vm.pk,
        "uuid": vm.uuid,
        "pool": vm.pool_id,
        "name": vm.name,
        "power_state": vm.power_state,
        "power_label": PowerState(vm.power_state).label if vm.power_state in PowerState.values else vm.power_state,
        "power_badge": vm.power_badge,
        "host": host_names.get(vm.host_id, ""),
        "os": vm.os_name,
        "removed": vm.removed_at is not None,
    }


def publish_vm_changes(pool: Pool, vms) -> None:
    if not vms:
        return
    host_names = dict(pool.hosts.values_list("pk", "name"))
    for vm in vms:
        publish("vms", vm_event(vm, host_names))


def pool_state(pool: Pool) -> dict:
    counts = VM.objects.filter(pool=pool, removed_at__isnull=True, is_snapshot=False).aggregate(
        total=Count("pk"), running=Count("pk", filter=Q(power_state=PowerState.RUNNING)))
    return {
        "type": "pool",
        "id": pool.pk,
        "health": pool.health,
        "health_label": PoolHealth(pool.health).label,
        "health_badge": pool.health_badge,
        "last_error": pool.last_error,
        "master": pool.master_address,
        "ha_enabled": pool.ha_enabled,
        "vm_count": counts["total"],
        "running": counts["running"],
        "hosts": [
            {"id": h.pk, "live": h.live, "enabled": h.enabled, "is_master": h.is_master}
            for h in pool.hosts.all()
        ],
        "srs": [
            {"id": sr.pk, "usage_percent": sr.usage_percent, "free": filesizeformat(sr.free_space)}
            for sr in pool.srs.all()
        ],
    }


def publish_pool_state(pool: Pool) -> None:
    state = pool_state(pool)
    publish(f"pool:{pool.pk}", state)
    publish("pools", state)
