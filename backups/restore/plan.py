"""What a restore will do, checked before it starts.

describe_point() reads a restore point's VM from its manifest (the export's ova.xml), so a VM
deleted from its pool can still be restored. default_plan() proposes targets, validate_plan()
lists every problem with a message an administrator can act on, and request_restore() saves
the plan as a RestoreRun (audited) and queues it on the workers. The wizard, the API and the
CLI all go through these functions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import record_event
from sesamweb.identifiers import parse_id
from sesamweb.live.publish import publish
from xenpools.choices import PowerState
from xenpools.models import VM, Host, Network, Pool, StorageRepository

from ..choices import RunStatus, Trigger, VerifyState
from ..cli import human_bytes
from ..formats.xva import NULL_REF, XvaError, parse_ova_xml
from ..models import RestorePoint
from ..models_restore import RestoreKind, RestoreRun
from ..repository import RepositoryError
from ..stores import open_repository


class StartMode:
    HALTED = "halted"        # halted VM (a memory point's memory image is left out)
    SUSPENDED = "suspended"  # memory points: suspended with the memory image, ready to resume
    RUNNING = "running"      # booted after the restore
    RESUME = "resume"        # memory points: resumed from the memory image
    CHOICES = [(HALTED, "Halted"), (SUSPENDED, "Suspended (memory image kept)"), (RUNNING, "Started"),
               (RESUME, "Resumed from memory")]
    WITH_MEMORY = {SUSPENDED, RESUME}


class Identity:
    NEW = "new"      # new VM UUID and new MACs: safe next to the original
    KEEP = "keep"    # the original VM UUID and MACs
    CHOICES = [(NEW, "New UUID and MAC addresses"), (KEEP, "Keep the original UUID and MAC addresses")]


class RestorePlanError(ValueError):
    """The plan cannot be started; .problems says why, per wizard step and field."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("; ".join(p.message for p in self.problems) or "invalid restore plan")


@dataclass
class PlanProblem:
    step: str       # "point" | "target" | "storage" | "network" | "identity" | "start"
    field: str      # the form field the message belongs to
    message: str


@dataclass
class DiskDetails:
    key: str                  # "vbd<userdevice>" or "suspend" (the memory image)
    name: str
    virtual_size: int
    userdevice: str = ""
    bootable: bool = False
    is_memory: bool = False
    sr_uuid: str = ""         # the SR it came from
    sr_name: str = ""


@dataclass
class VifDetails:
    device: str
    mac: str
    network_name: str
    bridge: str
    network_uuid: str = ""


@dataclass
class PointDetails:
    point: RestorePoint
    vm_uuid: str
    vm_name: str
    description: str
    memory: int               # memory_static_max, bytes
    vcpus: int
    has_memory: bool
    power_state: str          # as exported ("Suspended" for a memory point)
    disks: list[DiskDetails] = field(default_factory=list)
    vifs: list[VifDetails] = field(default_factory=list)
    ova_xml: bytes = b""

    @property
    def disk_keys(self):
        return [disk.key for disk in self.disks]

    def disk(self, key):
        for disk in self.disks:
            if disk.key == key:
                return disk
        raise KeyError(key)

    def restored_disks(self, start_mode):
        """The disks a restore with this start mode brings back (no memory image when halted)."""
        with_memory = self.has_memory and start_mode in StartMode.WITH_MEMORY
        return [d for d in self.disks if with_memory or not d.is_memory]


@dataclass
class RestorePlan:
    point: RestorePoint
    target_pool: Pool
    target_host: Host | None = None
    sr_by_disk: dict = field(default_factory=dict)       # disk key -> StorageRepository
    network_by_vif: dict = field(default_factory=dict)   # VIF device -> Network, or None: leave the VIF out
    identity: str = Identity.NEW
    replace_original: bool = False
    name: str = ""
    start_mode: str = StartMode.HALTED
    disconnect_vifs: bool = False     # VIFs created but passing no traffic (locking mode disabled)

    def to_json(self):
        return {
            "name": self.name, "identity": self.identity, "replace_original": self.replace_original,
            "start_mode": self.start_mode, "disconnect_vifs": self.disconnect_vifs,
            "sr_by_disk": {key: sr.uuid for key, sr in self.sr_by_disk.items()},
            "network_by_vif": {device: (net.uuid if net is not None else None)
                               for device, net in self.network_by_vif.items()},
        }

    @classmethod
    def from_run(cls, run: RestoreRun) -> "RestorePlan":
        """The plan a run was started with, with the target rows looked up again."""
        data, pool = run.plan, run.target_pool
        srs = {sr.uuid: sr for sr in StorageRepository.objects.filter(pool=pool)}
        networks = {net.uuid: net for net in Network.objects.filter(pool=pool)}
        missing = [uuid for uuid in data.get("sr_by_disk", {}).values() if uuid not in srs]
        missing += [uuid for uuid in data.get("network_by_vif", {}).values() if uuid and uuid not in networks]
        if missing:
            raise RestorePlanError([PlanProblem("target", "target_pool",
                                                f"the target pool {pool} no longer has {', '.join(missing)}")])
        return cls(
            point=run.point, target_pool=pool, target_host=run.target_host,
            sr_by_disk={key: srs[uuid] for key, uuid in data.get("sr_by_disk", {}).items()},
            network_by_vif={device: (networks[uuid] if uuid else None)
                            for device, uuid in data.get("network_by_vif", {}).items()},
            identity=data.get("identity", Identity.NEW), replace_original=data.get("replace_original", False),
            name=data.get("name", ""), start_mode=data.get("start_mode", StartMode.HALTED),
            disconnect_vifs=data.get("disconnect_vifs", False),
        )


# -- the restore point's VM ---------------------------------------------------------------
def load_manifest(point: RestorePoint):
    return open_repository(point.store).load_manifest(point.point_id)


def describe_point(point: RestorePoint, manifest=None) -> PointDetails:
    """The VM as the restore point holds it: disks, VIFs, memory, vCPUs (from ova.xml)."""
    manifest = manifest or load_manifest(point)
    ova_xml = manifest.attachments.get("ova.xml")
    if not ova_xml:
        raise XvaError(f"restore point {point.point_id} carries no VM description (ova.xml)")
    meta = parse_ova_xml(ova_xml)
    vm = meta.vm
    sizes = {disk.key: disk.virtual_size for disk in manifest.disks}
    disks = []
    for xva_disk in meta.disks():
        key = f"vbd{xva_disk.userdevice}" if xva_disk.userdevice != "" else "suspend"
        vdi = meta.record(xva_disk.ref) or {}
        sr = meta.record(vdi.get("SR", NULL_REF)) or {}
        disks.append(DiskDetails(
            key=key, name=xva_disk.name_label, virtual_size=sizes.get(key, xva_disk.virtual_size),
            userdevice=xva_disk.userdevice, bootable=xva_disk.bootable, is_memory=key == "suspend",
            sr_uuid=sr.get("uuid", ""), sr_name=sr.get("name_label", ""),
        ))
    disks.sort(key=lambda d: (d.is_memory, parse_id(d.userdevice) or 0))
    vifs = []
    for vif in meta.vifs:
        network = meta.record(vif.get("network", NULL_REF)) or {}
        vifs.append(VifDetails(device=str(vif.get("device", "")), mac=vif.get("MAC", ""),
                               network_name=network.get("name_label", ""), bridge=network.get("bridge", ""),
                               network_uuid=network.get("uuid", "")))
    return PointDetails(
        point=point, vm_uuid=point.vm_uuid, vm_name=manifest.metadata.get("vm_name") or vm.get("name_label", ""),
        description=vm.get("name_description", ""), memory=int(vm.get("memory_static_max", 0) or 0),
        vcpus=int(vm.get("VCPUs_max", 0) or vm.get("VCPUs_at_startup", 0) or 0),
        has_memory=bool(manifest.metadata.get("has_memory")) and any(d.is_memory for d in disks),
        power_state=vm.get("power_state", "Halted"), disks=disks, vifs=vifs, ova_xml=ova_xml,
    )


# -- defaults -------------------------------------------------------------------------------
def default_name(vm_name, when=None):
    return f"{vm_name} (restored {timezone.localtime(when or timezone.now()):%Y-%m-%d %H:%M})"


def default_plan(point: RestorePoint, target_pool: Pool, details: PointDetails | None = None) -> RestorePlan:
    """Original SRs and networks where the target pool has them, else the SR with the most
    free space (shared first) and networks matched by name, then bridge (an interface with no
    match is left unset, for the administrator to choose); new identity; halted."""
    details = details or describe_point(point)
    srs = [sr for sr in StorageRepository.objects.filter(pool=target_pool) if _holds_disks(sr)]
    by_uuid = {sr.uuid: sr for sr in srs}
    fallback = max(srs, key=lambda sr: (sr.shared, sr.free_space), default=None)
    sr_by_disk = {}
    for disk in details.disks:
        sr = by_uuid.get(disk.sr_uuid) or next((s for s in srs if disk.sr_name and s.name == disk.sr_name), None)
        if sr is not None or fallback is not None:
            sr_by_disk[disk.key] = sr or fallback
    networks = list(Network.objects.filter(pool=target_pool))
    network_by_vif = {}
    for vif in details.vifs:
        match = (next((n for n in networks if n.uuid == vif.network_uuid), None)
                 or next((n for n in networks if n.name == vif.network_name), None)
                 or next((n for n in networks if vif.bridge and n.bridge == vif.bridge), None))
        if match is not None:       # unmatched interfaces stay unset: validate_plan asks for them
            network_by_vif[vif.device] = match
    return RestorePlan(point=point, target_pool=target_pool, sr_by_disk=sr_by_disk,
                       network_by_vif=network_by_vif, name=default_name(details.vm_name))


def _holds_disks(sr):
    return sr.content_type != "iso" and sr.type not in ("iso", "udev")


# -- validation -----------------------------------------------------------------------------
def validate_plan(plan: RestorePlan, details: PointDetails | None = None) -> list[PlanProblem]:
    """Every reason the plan cannot run, each tied to a wizard step and field."""
    problems = []
    point, pool = plan.point, plan.target_pool
    if point is None:
        return [PlanProblem("point", "point", "choose a restore point")]
    if point.verify_state == VerifyState.DAMAGED:
        problems.append(PlanProblem("point", "point", f"the restore point of {point.vm_name} taken "
                                    f"{point.taken_at:%Y-%m-%d %H:%M} is damaged (verify found missing or "
                                    "corrupt chunks): choose another restore point"))
    if details is None:
        try:
            details = describe_point(point)
        except (RepositoryError, XvaError, OSError) as exc:
            return problems + [PlanProblem("point", "point", f"cannot read the restore point: {exc}")]
    if pool is None:
        return problems + [PlanProblem("target", "target_pool", "choose a target pool")]
    problems += _check_target(plan, pool)
    problems += _check_storage(plan, details, pool)
    problems += _check_networks(plan, details, pool)
    problems += _check_identity(plan, details, pool)
    problems += _check_start(plan, details)
    if not problems:
        problems += _check_path(plan, details)
    return problems


def _check_target(plan, pool):
    problems = []
    host = plan.target_host
    if host is not None:
        if host.pool_id != pool.pk:
            problems.append(PlanProblem("target", "target_host", f"host {host} belongs to pool {host.pool}, "
                                        f"not to the target pool {pool}"))
        elif not (host.enabled and host.live):
            problems.append(PlanProblem("target", "target_host", f"host {host} is disabled or down"))
    return problems


def _check_storage(plan, details, pool):
    problems = []
    needed = {}
    for disk in details.restored_disks(plan.start_mode):
        sr = plan.sr_by_disk.get(disk.key)
        field_name = f"sr_{disk.key}"
        what = "the memory image" if disk.is_memory else f"disk {disk.userdevice} ({disk.name})"
        if sr is None:
            problems.append(PlanProblem("storage", field_name, f"choose an SR for {what}"))
            continue
        if sr.pool_id != pool.pk:
            problems.append(PlanProblem("storage", field_name, f"SR {sr} belongs to pool {sr.pool}, "
                                        f"not to the target pool {pool}"))
            continue
        if not _holds_disks(sr):
            problems.append(PlanProblem("storage", field_name, f"SR {sr} holds ISO images, not disks"))
            continue
        needed.setdefault(sr, []).append(disk)
    for sr, disks in needed.items():
        total = sum(d.virtual_size for d in disks)
        if total > sr.free_space:
            problems.append(PlanProblem("storage", f"sr_{disks[0].key}", (
                f"SR {sr} has {_size(sr.free_space)} free; the {len(disks)} disk(s) restored there need "
                f"{_size(total)}: choose another SR or free space")))
    unknown = set(plan.sr_by_disk) - set(details.disk_keys)
    if unknown:
        problems.append(PlanProblem("storage", "sr_by_disk", f"the restore point has no disk {', '.join(sorted(unknown))}"))
    if plan.target_host is not None and plan.start_mode != StartMode.HALTED:
        for sr in needed:
            if not sr.shared and sr.pool_id == pool.pk and not sr.hosts.filter(pk=plan.target_host.pk).exists():
                problems.append(PlanProblem("target", "target_host", f"host {plan.target_host} cannot reach SR {sr} "
                                            "(local storage of another host): choose another host or SR"))
    return problems


def _check_networks(plan, details, pool):
    problems = []
    devices = {vif.device for vif in details.vifs}
    for device, network in plan.network_by_vif.items():
        if device not in devices:
            problems.append(PlanProblem("network", f"network_{device}", f"the VM had no network interface {device}"))
        elif network is not None and network.pool_id != pool.pk:
            problems.append(PlanProblem("network", f"network_{device}", (
                f"network {network} is not in the target pool {pool}: choose one of its networks "
                "or leave the interface out")))
    for vif in details.vifs:
        if vif.device not in plan.network_by_vif:
            problems.append(PlanProblem("network", f"network_{vif.device}", (
                f"choose a network for interface {vif.device} (was {vif.network_name or 'unnamed'}), "
                "or leave the interface out")))
    return problems


def _check_identity(plan, details, pool):
    problems = []
    if plan.identity not in (Identity.NEW, Identity.KEEP):
        return [PlanProblem("identity", "identity", f"identity must be 'new' or 'keep', not {plan.identity!r}")]
    original = VM.objects.filter(pool=pool, uuid=details.vm_uuid, removed_at__isnull=True, is_snapshot=False).first()
    if plan.replace_original and plan.identity != Identity.KEEP:
        problems.append(PlanProblem("identity", "replace_original",
                                    "replacing the original needs 'keep the original UUID and MAC addresses'"))
    if plan.identity == Identity.KEEP and original is not None:
        if not plan.replace_original:
            problems.append(PlanProblem("identity", "identity", (
                f"the original VM {original.name} ({original.uuid}) still exists in pool {pool}: two VMs "
                "cannot share a UUID. Choose new UUIDs and MACs, or replace the original")))
        elif original.power_state != PowerState.HALTED:
            problems.append(PlanProblem("identity", "replace_original", (
                f"the original VM {original.name} is {original.power_state.lower()}: shut it down first, "
                "then restore over it")))
    name = (plan.name or "").strip()
    if not name:
        problems.append(PlanProblem("identity", "name", "give the restored VM a name"))
    else:
        clash = VM.objects.filter(pool=pool, name=name, removed_at__isnull=True, is_snapshot=False)
        if plan.replace_original and original is not None:
            clash = clash.exclude(pk=original.pk)
        if clash.exists():
            problems.append(PlanProblem("identity", "name", f"a VM named {name!r} already exists in pool {pool}: "
                                        "choose another name"))
    return problems


XVA_IMPORT, PER_DISK = "xva-import", "per-disk"


def choose_path(plan: RestorePlan, details: PointDetails) -> tuple[str, str]:
    """(path, reason): PUT /import of a rebuilt XVA when it can express the plan (all disks on
    one SR; networks that xapi's importer finds by name), else VM.create and one
    /import_raw_vdi per disk. The reason says why the per-disk path is needed."""
    disks = details.restored_disks(plan.start_mode)
    srs = {plan.sr_by_disk[d.key].pk for d in disks if plan.sr_by_disk.get(d.key) is not None}
    if len(srs) > 1:
        return PER_DISK, "the disks go to different SRs"
    targets_by_source = {}
    for vif in details.vifs:
        network = plan.network_by_vif.get(vif.device)
        if network is not None:
            targets_by_source.setdefault(vif.network_name, set()).add(network.pk)
    if len({v.network_name for v in details.vifs}) < len({(v.network_name, v.network_uuid) for v in details.vifs}):
        return PER_DISK, "two of the VM's networks share a name"
    for name, targets in targets_by_source.items():
        if len(targets) > 1:
            return PER_DISK, f"interfaces on network {name!r} go to different networks"
    for network in {n for n in plan.network_by_vif.values() if n is not None}:
        if not network.name or Network.objects.filter(pool=network.pool_id, name=network.name).count() > 1:
            return PER_DISK, f"the target network {network.name!r} is not the only one with its name"
    return XVA_IMPORT, ""


def _check_path(plan, details):
    path, reason = choose_path(plan, details)
    if path == XVA_IMPORT:
        return []
    problems = []
    if plan.identity == Identity.KEEP:
        problems.append(PlanProblem("identity", "identity", (
            f"keeping the original UUID needs a restore through xapi's import, which cannot follow this plan "
            f"({reason}): put every disk on one SR, or choose new UUIDs and MACs")))
    if plan.start_mode in StartMode.WITH_MEMORY:
        problems.append(PlanProblem("start", "start_mode", (
            f"the memory image can only be restored through xapi's import, which cannot follow this plan "
            f"({reason}): put every disk on one SR, or restore halted / started")))
    return problems


def _check_start(plan, details):
    modes = {value for value, _ in StartMode.CHOICES}
    if plan.start_mode not in modes:
        return [PlanProblem("start", "start_mode", f"start mode must be one of {', '.join(sorted(modes))}")]
    if plan.start_mode in StartMode.WITH_MEMORY and not details.has_memory:
        return [PlanProblem("start", "start_mode", (
            "this restore point has no memory image (only live-memory backups do): restore halted or start the VM"))]
    return []


def _size(count):
    return human_bytes(max(0, count))


# -- requesting -------------------------------------------------------------------------------
def request_restore(plan: RestorePlan, user=None, *, trigger=Trigger.MANUAL, queue=True,
                    replication_policy=None) -> RestoreRun:
    """Validate, save (audited) and queue the restore; raises RestorePlanError with the problems."""
    details = None
    try:
        details = describe_point(plan.point) if plan.point is not None else None
    except (RepositoryError, XvaError, OSError):
        pass      # validate_plan reports it
    problems = validate_plan(plan, details)
    if problems:
        raise RestorePlanError(problems)
    point = plan.point
    with transaction.atomic():
        run = RestoreRun.objects.create(
            kind=RestoreKind.REPLICA if replication_policy else RestoreKind.VM, trigger=trigger,
            point=point, store=point.store, store_point_id=point.point_id, source_vm_uuid=point.vm_uuid,
            source_vm_name=details.vm_name, target_pool=plan.target_pool, target_host=plan.target_host,
            plan=plan.to_json(), replication_policy=replication_policy,
            requested_by=user if user is not None and user.is_authenticated else None,
            bytes_total=sum(d.virtual_size for d in details.restored_disks(plan.start_mode)),
        )
        record_event(AuditAction.RESTORE, target=run, actor=user, message=(
            f"restore of {details.vm_name} ({point.taken_at:%Y-%m-%d %H:%M}) to pool {plan.target_pool} "
            f"as {plan.name!r} requested (identity {plan.identity}"
            + (", replacing the original" if plan.replace_original else "") + f", {plan.start_mode})"))
    announce_queued(run)
    if queue:
        queue_restore(run)
    return run


def request_disk_restore(point: RestorePoint, disk_key: str, sr: StorageRepository, user=None, *,
                         name="", trigger=Trigger.MANUAL, queue=True) -> RestoreRun:
    """Restore one disk of a point as a new VDI on `sr` (no VM is created)."""
    details = describe_point(point)
    problems = []
    if point.verify_state == VerifyState.DAMAGED:
        problems.append(PlanProblem("point", "point", "the restore point is damaged: choose another one"))
    try:
        disk = details.disk(disk_key)
    except KeyError:
        raise RestorePlanError([PlanProblem("storage", "disk", f"the restore point has no disk {disk_key!r}; "
                                            f"it has {', '.join(details.disk_keys)}")]) from None
    if not _holds_disks(sr):
        problems.append(PlanProblem("storage", "sr", f"SR {sr} holds ISO images, not disks"))
    elif disk.virtual_size > sr.free_space:
        problems.append(PlanProblem("storage", "sr", f"SR {sr} has {_size(sr.free_space)} free; the disk needs "
                                    f"{_size(disk.virtual_size)}"))
    if problems:
        raise RestorePlanError(problems)
    name = name or f"{disk.name or disk_key} of {details.vm_name} (restored {timezone.localtime():%Y-%m-%d %H:%M})"
    with transaction.atomic():
        run = RestoreRun.objects.create(
            kind=RestoreKind.DISK, trigger=trigger, point=point, store=point.store, store_point_id=point.point_id,
            source_vm_uuid=point.vm_uuid, source_vm_name=details.vm_name, target_pool=sr.pool,
            plan={"disk": disk_key, "sr": sr.uuid, "name": name}, bytes_total=disk.virtual_size,
            requested_by=user if user is not None and user.is_authenticated else None,
        )
        record_event(AuditAction.RESTORE, target=run, actor=user,
                     message=f"restore of disk {disk_key} of {details.vm_name} to SR {sr} as {name!r} requested")
    announce_queued(run)
    if queue:
        queue_restore(run)
    return run


def announce_queued(run):
    event = {"type": "restore.queued", "restore": run.pk, "vm_name": run.source_vm_name}
    publish("runs", event)
    publish("dashboard", event)


def queue_restore(run: RestoreRun):
    """Hand the restore to the workers of its data store's cluster."""
    from django_q.tasks import async_task

    from ..devices.routing import DeviceServerRevoked, enqueue_for_store

    options = dict(task_name=f"restore {run.source_vm_name} #{run.pk}")
    if run.store is None:
        async_task("backups.restore.tasks.run_restore_task", run.pk, **options)
        return
    try:
        enqueue_for_store(run.store, "backups.restore.tasks.run_restore_task", run.pk,
                          pools=[run.target_pool] if run.target_pool_id else [], **options)
    except DeviceServerRevoked as exc:
        type(run).objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
            status=RunStatus.FAILED, finished_at=timezone.now(), error=str(exc))


def cancel_restore(run: RestoreRun, user=None):
    """A queued restore stops at once; a running one at its next step, removing what it created."""
    with transaction.atomic():
        queued = RestoreRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
            status=RunStatus.CANCELLED, finished_at=timezone.now(), error="cancelled before it started")
        if not queued:
            RestoreRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(cancel_requested=True)
        record_event(AuditAction.JOB_CANCEL, target=run, actor=user, message=f"{run} cancelled")
    run.refresh_from_db()
    return run


def run_restore(restore_run_id) -> RestoreRun:
    """The worker entry (also used by the CLI to restore in its own process)."""
    from .engine import run_restore as run_in_engine

    return run_in_engine(restore_run_id)


def find_point(text: str, store=None) -> RestorePoint:
    """A restore point by "<vm-uuid>/<timestamp>" (as list_backups prints it), "store:<id>",
    or its database id; `store` (a DataStore or its name) narrows the search."""
    text = (text or "").strip()
    points = RestorePoint.objects.select_related("store")
    if isinstance(store, str):
        points = points.filter(store__name=store)
    elif store is not None:
        points = points.filter(store=store)
    point_pk = parse_id(text)
    if point_pk is not None:
        matches = list(points.filter(pk=point_pk))
    else:
        if ":" in text:
            store_name, _, text = text.partition(":")
            points = points.filter(store__name=store_name)
        matches = list(points.filter(point_id=text))
    if not matches:
        raise RestorePlanError([PlanProblem("point", "point", f"no restore point {text!r}"
                                            + (f" on data store {store}" if store else "")
                                            + " (manage.py list_backups shows them)")])
    if len(matches) > 1:
        stores = ", ".join(p.store.name for p in matches)
        raise RestorePlanError([PlanProblem("point", "point", f"restore point {text!r} is on several data stores "
                                            f"({stores}): name the store")])
    return matches[0]
