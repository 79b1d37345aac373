"""What the next run of a job will do, per VM, before it runs: full or incremental and why,
and whether the pre-flight checks are expected to pass (from the inventory mirror: the same
estimates the worker applies to live numbers just before each snapshot)."""
from dataclasses import dataclass, field

from xenpools.models import VirtualDisk

from ..choices import BackupKind
from ..engine.preflight import (
    Estimate, SrNeed, expected_store_growth, snapshot_need, sr_problems, store_problem, takes_snapshot,
)
from ..models import RestorePoint
from ..stores import open_repository
from .runs import predict_kind
from .selection import select_vms


@dataclass
class VmPrediction:
    vm: object
    incremental: bool            # the backup will read changed blocks only (predict_kind)
    reason: str
    problems: list = field(default_factory=list)     # would be skipped
    warnings: list = field(default_factory=list)

    @property
    def full(self):
        return not self.incremental

    @property
    def kind_label(self):
        return "Full" if self.full else "Incremental"


def predict(job, *, schedule=None, now=None, limit=500, vms=None):
    """[VmPrediction] for the VMs the job selects now (at most `limit`), for a run of `schedule`
    at `now` (the next run)."""
    vms = list(select_vms(job)[:limit]) if vms is None else vms
    disks = (VirtualDisk.objects.filter(vm__in=vms, type="Disk", vdi__isnull=False)
             .select_related("vdi", "vdi__sr"))
    by_vm = {}
    for disk in disks:
        by_vm.setdefault(disk.vm_id, []).append(disk.vdi)
    points = {}
    for point in RestorePoint.objects.filter(store=job.store, vm_uuid__in=[vm.uuid for vm in vms]).order_by("-taken_at"):
        points.setdefault(point.vm_uuid, []).append(point)
    try:
        free = open_repository(job.store).backend.free_space()
        store_error = None
    except Exception as exc:  # noqa: BLE001 - shown on the page as the reason the run would fail
        free, store_error = None, f"data store {job.store} cannot be opened: {exc}"
    predictions = []
    for vm in vms:
        kind, reason = predict_kind(job, vm.uuid, schedule=schedule, now=now)
        incremental = kind == BackupKind.INCREMENTAL
        estimate = Estimate()
        for vdi in by_vm.get(vm.pk, []):
            sr = vdi.sr
            if sr is None:
                continue
            need = estimate.srs.setdefault(sr.uuid, SrNeed(sr_name=sr.name, sr_type=sr.type,
                                                            free=sr.physical_size - sr.physical_utilisation))
            need.needed += snapshot_need(sr.type, vdi.virtual_size, vdi.physical_utilisation)
            estimate.store_bytes += vdi.physical_utilisation
        prediction = VmPrediction(vm=vm, incremental=incremental, reason=reason)
        if store_error:
            prediction.problems.append(store_error)
        if takes_snapshot(job, vm.power_state):
            prediction.problems += sr_problems(estimate)
        expected, known = expected_store_growth(points.get(vm.uuid, []), estimate.store_bytes, incremental)
        text = store_problem(str(job.store), free, expected)
        if text:
            (prediction.problems if known else prediction.warnings).append(text)
        predictions.append(prediction)
    return predictions
