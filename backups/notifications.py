"""What backups tell the console's notifications (sesamweb/notify): one function per
event, called by the engines once the outcome is recorded. Each builds the names and
links a person needs (pool, host, job, data store, VMs with what happened to each) and
returns at once: sending is the notification workers' business."""
import functools
import logging

from django.db.models import Count
from django.urls import NoReverseMatch

from sesamweb import notify

from .choices import BackupKind, RunStatus
from .stores import open_repository

logger = logging.getLogger(__name__)
_RUN_EVENT = {RunStatus.FAILED: ("run.failed", "error"), RunStatus.WARNING: ("run.warning", "warning"),
              RunStatus.SUCCESS: ("run.succeeded", "info")}


def never_fails(function):
    """A report that cannot be built is logged; the backup or restore goes on."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            function(*args, **kwargs)
        except Exception:  # noqa: BLE001
            logger.exception("could not report %s%r to the notifications", function.__name__, args)
    return wrapper


def _url(obj) -> str:
    try:
        return obj.get_absolute_url()
    except (AttributeError, NoReverseMatch):   # e.g. a page that is not there yet
        return ""


def _named(obj, **extra):
    if obj is None:
        return None
    return {"id": obj.pk, "name": str(getattr(obj, "name", obj)), "url": _url(obj), **extra}


_TRANSPORTS = {"nbd": "CBT + NBD (changed blocks)", "vhd": "VHD delta (changed blocks)"}


def _transfer(vm_backup, repositories) -> str:
    """How the data came: a full XVA export, or for an incremental the transport its
    manifest records (NBD, or VHD delta when the pool offers no NBD)."""
    if vm_backup.kind == BackupKind.FULL:
        return "full XVA export"
    if vm_backup.kind != BackupKind.INCREMENTAL:
        return ""
    if vm_backup.restore_point is None:
        return "changed blocks (CBT)"
    try:
        if vm_backup.store_id not in repositories:
            repositories[vm_backup.store_id] = open_repository(vm_backup.store)
        transport = repositories[vm_backup.store_id].load_manifest(vm_backup.restore_point.point_id).metadata.get(
            "transport")
        return _TRANSPORTS.get(transport, "changed blocks (CBT)")
    except Exception:  # noqa: BLE001 - the report says less rather than not being sent
        logger.warning("could not read the transport of backup %s from its manifest", vm_backup.pk, exc_info=True)
        return "changed blocks (CBT)"


def _vm_entry(vm_backup, repositories) -> dict:
    read = vm_backup.bytes_read
    return {
        "id": vm_backup.vm_uuid, "uuid": vm_backup.vm_uuid, "name": vm_backup.vm_name,
        "url": _url(vm_backup), "status": vm_backup.status,
        "status_label": RunStatus(vm_backup.status).label, "method": vm_backup.get_method_display(),
        "kind": vm_backup.get_kind_display() if vm_backup.kind else "", "reason": vm_backup.kind_reason,
        "transfer": _transfer(vm_backup, repositories), "duration_seconds": vm_backup.duration_seconds,
        "bytes_read": read, "bytes_stored": vm_backup.bytes_stored, "error": vm_backup.error,
        "warnings": list(vm_backup.warnings or []),
        "host": vm_backup.vm.host.name if vm_backup.vm and vm_backup.vm.host else "",
    }


@never_fails
def run_finished(run_id) -> None:
    """A backup run reached its final status: failed, with warnings or succeeded."""
    from .models import BackupRun

    run = BackupRun.objects.select_related("job").get(pk=run_id)
    if run.status not in _RUN_EVENT:
        return  # cancelled or skipped: someone chose that
    name, severity = _RUN_EVENT[run.status]
    vm_backups = list(run.vm_backups.select_related("pool", "store", "vm__host", "restore_point")
                      .order_by("vm_name"))
    repositories = {}
    vms = [_vm_entry(vb, repositories) for vb in vm_backups]
    pools = {vb.pool_id: vb.pool for vb in vm_backups if vb.pool}
    stores = {vb.store_id: vb.store for vb in vm_backups}
    hosts = sorted({vm["host"] for vm in vms if vm["host"]})
    failed = [vm for vm in vms if vm["status"] == RunStatus.FAILED]
    objects = {"run": _named(run, name=str(run)), "vms": vms}
    if len(pools) == 1:
        objects["pool"] = _named(next(iter(pools.values())))
    elif pools:
        objects["pool"] = {"name": ", ".join(sorted(p.name for p in pools.values()))}
    if hosts:
        objects["host"] = {"name": ", ".join(hosts)}
    if len(stores) == 1:
        objects["store"] = _named(next(iter(stores.values())))
    if run.job is not None:
        objects["job"] = _named(run.job)
    subject = run.job.name if run.job is not None else (vms[0]["name"] if len(vms) == 1 else f"{len(vms)} VMs")
    if failed:
        title = f"Backup {subject}: {len(failed)} of {len(vms)} VM(s) failed"
    else:
        title = f"Backup {subject}: {RunStatus(run.status).label.lower()}"
    if "pool" in objects:
        title += f" (pool {objects['pool']['name']})"
    details = {"status": run.status, "error": "; ".join(f"{vm['name']}: {vm['error']}" for vm in failed),
               "duration_seconds": run.duration_seconds, "trigger": run.trigger,
               "summary": run.message or f"{len(vms) - len(failed)} of {len(vms)} VM(s) backed up"}
    notify.emit(name, severity, title=title, objects=objects, details=details)


@never_fails
def restore_finished(run) -> None:
    """A restore run ended (the engine has recorded its outcome)."""
    if run.status not in (RunStatus.SUCCESS, RunStatus.WARNING, RunStatus.FAILED):
        return
    failed = run.status == RunStatus.FAILED
    objects = {"run": _named(run, name=f"Restore run #{run.pk}"),
               "vms": [{"id": run.source_vm_uuid, "name": run.source_vm_name, "status": run.status,
                        "status_label": RunStatus(run.status).label, "transfer": run.path, "error": run.error,
                        "warnings": list(run.warnings or [])}]}
    if run.target_pool is not None:
        objects["pool"] = _named(run.target_pool)
    if run.target_host is not None:
        objects["host"] = _named(run.target_host)
    if run.store is not None:
        objects["store"] = _named(run.store)
    title = f"Restore of {run.source_vm_name}: {RunStatus(run.status).label.lower()}"
    notify.emit("restore.failed" if failed else "restore.succeeded", "error" if failed else "info", title=title,
                objects=objects, details={"status": run.status, "error": run.error, "point": run.store_point_id})


@never_fails
def verify_damaged(store, damaged_ids) -> None:
    """Verify found restore points with missing or corrupt chunks."""
    from .models import RestorePoint

    points = list(RestorePoint.objects.filter(store=store, point_id__in=damaged_ids)
                  .values("vm_uuid", "vm_name").annotate(n=Count("pk")))
    notify.emit("verify.damaged", "critical",
                title=f"Data store {store.name}: {len(damaged_ids)} damaged restore point(s)",
                objects={"store": _named(store),
                         "vms": [{"id": p["vm_uuid"], "name": p["vm_name"], "status": "failed",
                                  "error": f"{p['n']} damaged restore point(s)"} for p in points]},
                details={"error": "verify found missing or corrupt chunks: " + ", ".join(damaged_ids),
                         "points": list(damaged_ids)})


@never_fails
def rpo_missed(now=None):
    """VMs whose newest good restore point became older than their RPO: one event per VM and
    lapse (the watchdog calls this every minute; a VM is reported again only after a new good
    point, i.e. when it missed its RPO anew)."""
    from django.utils import timezone

    from sesamweb.notify.models import Event

    from .jobs.choices import Protection
    from .jobs.protection import protection_map

    now = now or timezone.now()
    missed = [p for p in protection_map(now=now, include_deleted=False).values() if p.status == Protection.MISSED]
    if not missed:
        return
    oldest = min(p.last_good_at for p in missed)
    reported = {}
    for about, created in Event.objects.filter(name="vm.rpo_missed", created__gte=oldest).values_list("about", "created"):
        uuid = (about.get("vm") or {}).get("uuid")
        reported[uuid] = max(created, reported.get(uuid, created))
    for state in missed:
        if reported.get(state.vm_uuid, state.last_good_at) > state.last_good_at:
            continue        # already reported since its last good point
        jobs = [{"id": job.pk, "name": job.name, "url": _url(job)} for job in state.jobs]
        notify.emit("vm.rpo_missed", "warning",
                    title=f"{state.vm_name} missed its RPO: newest good restore point "
                          f"{state.age.total_seconds() / 3600:.0f} h old, RPO {state.rpo.total_seconds() / 3600:.0f} h",
                    objects={"vm": {"id": state.vm_id, "name": state.vm_name, "uuid": state.vm_uuid}, "jobs": jobs},
                    details={"last_good_at": state.last_good_at.isoformat(), "jobs": [job["name"] for job in jobs],
                             "rpo_hours": state.rpo.total_seconds() / 3600})


# --- lasting states: reported once per crossing (sesamweb/notify/conditions.py) ----------

def _space(store):
    """(total, free) bytes of a local store's file system, None when unknown (S3)."""
    import shutil

    from .choices import StoreKind

    if store.kind != StoreKind.LOCAL or not store.path:
        return None
    usage = shutil.disk_usage(store.path)
    return usage.total, usage.free


def _unreachable_reason(store) -> str:
    """Why the store cannot be used now ("" when it can): its store.json must be readable
    where it should be (a share that is not mounted shows an empty directory or none)."""
    from .repository.store import STORE_FILE
    from .stores import backend_for

    try:
        if backend_for(store).exists(STORE_FILE):
            return ""
        return f"{STORE_FILE} is not at {store.location} (is the share mounted?)"
    except Exception as exc:  # noqa: BLE001 - whatever the medium says is the reason
        return str(exc) or f"{store.location}: {exc.__class__.__name__}"


@never_fails
def store_unreachable(store, error: str) -> None:
    """The store could not be reached (by the watchdog's check, or by a backup or job that
    needed it): reported once until it is reachable again."""
    from sesamweb.notify import conditions

    conditions.begin(f"store:{store.pk}:unreachable", "store.unreachable", "critical",
                     title=f"Data store {store.name} unreachable: {error}",
                     objects={"store": _named(store)}, details={"error": error, "location": store.location})


def check_store(store) -> str:
    """Reachable? Nearly full? Each reported when it begins (and again after it ended);
    returns the store's state in words."""
    from django.conf import settings

    from sesamweb.notify import conditions

    key = f"store:{store.pk}"
    error = _unreachable_reason(store)
    if error:
        store_unreachable(store, error)
        return f"unreachable: {error}"
    conditions.end(f"{key}:unreachable")
    space = _space(store)
    if space is None or not space[0]:
        return "reachable"
    total, free = space
    used = 100.0 * (total - free) / total
    threshold = settings.SESAM_STORE_NEARLY_FULL_PERCENT
    if used >= threshold:
        conditions.begin(f"{key}:nearly_full", "store.nearly_full", "warning",
                         title=f"Data store {store.name} is {used:.0f}% full ({_gib(free)} free, warning at "
                               f"{threshold:.0f}%)",
                         objects={"store": _named(store)},
                         details={"used_percent": round(used, 1), "free_bytes": free, "total_bytes": total,
                                  "threshold_percent": threshold, "location": store.location})
    elif used < threshold - settings.SESAM_STORE_NEARLY_FULL_HYSTERESIS:
        conditions.end(f"{key}:nearly_full")   # re-armed only well below: no report at every byte
    return f"{used:.0f}% full"


def _gib(size) -> str:
    return f"{size / 2**30:.1f} GiB"


@never_fails
def check_stores(cluster: str = "") -> None:
    """The watchdog's check of the data stores its cluster can see (a device server's stores
    are local to it: checked there)."""
    from .models import DataStore

    for store in DataStore.objects.filter(cluster=cluster):
        try:
            check_store(store)
        except Exception:  # noqa: BLE001 - one store's problem does not hide the others'
            logger.exception("could not check data store %s", store)


@never_fails
def device_server_down(*, name: str, site: str, last_heartbeat, url: str) -> None:
    """A device server stopped sending heartbeats: reported once until device_server_up.
    Plain values (the caller owns the DeviceServer model): its name, site, the time of its
    last heartbeat (a datetime, or None when it never sent one) and its page's URL."""
    from sesamweb.notify import conditions

    from django.utils import timezone

    last = last_heartbeat.isoformat() if last_heartbeat is not None else ""
    since = (f"no heartbeat since {timezone.localtime(last_heartbeat):%Y-%m-%d %H:%M %Z}".rstrip()
             if last_heartbeat else "never heard from")
    where = f" at {site}" if site else ""
    conditions.begin(f"device_server:{name}:down", "device_server.down", "critical",
                     title=f"Device server {name}{where} is down: {since}",
                     objects={"device_server": {"id": name, "name": name, "url": url, "site": site}},
                     details={"error": f"device server {name}{where}: {since}; backups to its data stores "
                                       "cannot run", "last_heartbeat": last, "site": site})


@never_fails
def device_server_up(*, name: str) -> None:
    """The device server is back: the next time it goes down is reported again."""
    from sesamweb.notify import conditions

    conditions.end(f"device_server:{name}:down")
